"""The MiniLM embedder: vectors, token counting and splitting, lazy loading, thread safety."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from localgpt.memory import embedder as embedder_module
from localgpt.memory.embedder import Embedder, EmbedderUnavailable


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return Embedder(threads=2)


def test_vectors_are_unit_rows_in_input_order(embedder: Embedder) -> None:
    texts = [
        "A much longer sentence about planting tomatoes in the back garden this spring.",
        "Dentist on Thursday.",
        "The deploy script lives in ops/deploy.sh and needs the staging key.",
    ]
    batch = embedder.embed(texts)
    assert batch.shape == (3, Embedder.dims) and batch.dtype == np.float32
    assert np.allclose(np.linalg.norm(batch, axis=1), 1.0, atol=1e-5)
    for text, row in zip(texts, batch, strict=True):
        # Batching sorts by length; each row must still belong to its own text.
        assert float(row @ embedder.embed([text])[0]) > 0.99


def test_similar_meanings_are_closer(embedder: Embedder) -> None:
    note, paraphrase, unrelated = embedder.embed(
        [
            "Dentist appointment moved to Thursday 4pm",
            "when do I see the tooth doctor?",
            "Recipe: slow-cooked beef ragu with red wine",
        ]
    )
    assert float(note @ paraphrase) > float(note @ unrelated) + 0.2


def test_empty_input(embedder: Embedder) -> None:
    assert embedder.embed([]).shape == (0, Embedder.dims)


def test_count_tokens_is_untruncated_without_special_tokens(embedder: Embedder) -> None:
    assert embedder.count_tokens("hello world") == 2
    assert embedder.count_tokens("") == 0
    assert embedder.count_tokens("word " * 1000) == 1000  # well past the 256-token window


def test_split_tokens_cuts_at_whitespace_and_loses_nothing(embedder: Embedder) -> None:
    text = " ".join(f"item{i} costs {i}.50 dollars" for i in range(200))
    pieces = embedder.split_tokens(text, 50)
    assert "".join(pieces) == text
    assert len(pieces) > 5
    assert all(embedder.count_tokens(piece) <= 50 for piece in pieces)
    assert all(piece.endswith(" ") for piece in pieces[:-1])


def test_split_tokens_cuts_inside_a_word_only_when_it_must(embedder: Embedder) -> None:
    blob = "".join(f"{i:x}q" for i in range(30))  # one "word" of many word pieces
    assert embedder.count_tokens(blob) > 10
    pieces = embedder.split_tokens(blob, 10)
    assert "".join(pieces) == blob and len(pieces) > 1
    assert all(embedder.count_tokens(piece) <= 10 for piece in pieces)
    assert embedder.split_tokens("short text", 10) == ["short text"]


def test_concurrent_use_gives_the_same_vectors(embedder: Embedder) -> None:
    texts = [f"note number {i} about the garden and the weather" for i in range(40)]
    expected = embedder.embed(texts)
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda i: embedder.embed(texts[i : i + 10]), range(0, 40, 10)))
    assert np.allclose(np.concatenate(results), expected, atol=2e-2)


def test_missing_model_is_reported_on_first_use(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(embedder_module, "MODEL_PACKAGE", "no_such_minilm_package")
    lazy = Embedder()  # nothing is loaded yet, so nothing fails yet
    assert lazy.count_tokens("the tokenizer is another package") > 0
    with pytest.raises(EmbedderUnavailable, match="no-such-minilm-package' is not installed"):
        lazy.embed(["hello"])
