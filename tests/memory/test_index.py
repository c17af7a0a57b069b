"""The memory index: chunking, incremental reindex, hybrid search, decay, repair, crash safety."""

from __future__ import annotations

import itertools
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from localgpt.config import MemoryConfig
from localgpt.memory import scoring
from localgpt.memory.chunking import CharEstimate, Chunk, chunk_text, embedded_text
from localgpt.memory.embedder import Embedder
from localgpt.memory.index import MemoryIndex
from localgpt.memory.scoring import match_expression, query_terms
from localgpt.memory.search import SearchResult
from localgpt.memory.workspace import Workspace, split_lines

ROOT = Path(__file__).resolve().parent.parent.parent

NOTES = {
    "health.md": "# Health\n\nDentist appointment moved to Thursday 4pm.\n",
    "food.md": "# Recipes\n\nCarbonara: guanciale, pecorino, egg yolks, black pepper. No cream.\n",
    "work.md": "# Work\n\nThe billing service deploy needs the staging key from Priya.\n",
    "travel.md": "# Travel\n\nFlight to Lisbon on May 3, seat 14C, hotel near Alfama.\n",
    "garden.md": "# Garden\n\nPlant the tomato seedlings after the last frost in April.\n",
}


class CountingEmbedder(Embedder):
    """The real embedder, counting the texts it is asked to embed."""

    def __init__(self) -> None:
        super().__init__(threads=2)
        self.embedded = 0

    def embed(self, texts: list[str], batch_size: int = 32) -> npt.NDArray[np.float32]:
        self.embedded += len(texts)
        return super().embed(texts, batch_size)


class WordCounter:
    """One token per word: chunk boundaries that are easy to predict."""

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def split_tokens(self, text: str, limit: int) -> list[str]:
        words = text.split(" ")
        return [" ".join(words[i : i + limit]) + " " for i in range(0, len(words), limit)]


@pytest.fixture(scope="module")
def embedder() -> CountingEmbedder:
    return CountingEmbedder()


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    workspace = Workspace(tmp_path / "ws")
    (workspace.root / "memory").mkdir(parents=True)
    for name, text in NOTES.items():
        (workspace.root / name).write_text(text)
    return workspace


@pytest.fixture
def index(tmp_path: Path, ws: Workspace, embedder: Embedder) -> MemoryIndex:
    idx = MemoryIndex(tmp_path / "index.sqlite", ws, embedder)
    idx.reindex()
    return idx


def paths(results: list[SearchResult]) -> list[str]:
    return [r.path for r in results]


def assert_consistent(db: Path) -> None:
    """Every chunk belongs to an indexed file and the FTS index matches the chunks."""
    with sqlite3.connect(db) as conn:
        orphans = conn.execute(
            "SELECT count(*) FROM chunks WHERE path NOT IN (SELECT path FROM files)"
        ).fetchone()[0]
        chunks = conn.execute("SELECT count(*) FROM chunks").fetchone()[0]
        fts_rows = conn.execute("SELECT count(*) FROM chunks_fts_docsize").fetchone()[0]
        conn.execute("INSERT INTO chunks_fts(chunks_fts) VALUES ('integrity-check')")
    assert orphans == 0
    assert fts_rows == chunks


# --- chunking ------------------------------------------------------------------------------


def test_chunks_hold_whole_lines_and_overlap() -> None:
    text = "\n".join(" ".join(f"w{n}" for _ in range(10)) for n in range(1, 11)) + "\n"
    chunks = chunk_text(text, WordCounter(), size=30, overlap=10)
    assert [(c.start_line, c.end_line) for c in chunks] == [(1, 3), (3, 5), (5, 7), (7, 9), (9, 10)]
    assert chunks[0].text == "\n".join(split_lines(text)[0:3])


def test_overlap_zero_and_blank_lines_are_trimmed() -> None:
    text = "\n\na b c\n\nd e f\ng h i\n\n\n"
    chunks = chunk_text(text, WordCounter(), size=4, overlap=0)
    assert chunks == [Chunk(3, 3, "a b c"), Chunk(5, 5, "d e f"), Chunk(6, 6, "g h i")]
    assert chunk_text("\n \n\n", WordCounter(), size=4, overlap=0) == []


def test_a_long_line_is_split_and_nothing_is_lost() -> None:
    line = " ".join(f"w{i}" for i in range(95))
    chunks = chunk_text(f"first\n{line}\nlast\n", WordCounter(), size=20, overlap=0)
    assert len([c for c in chunks if c.start_line <= 2 <= c.end_line]) == 5
    words = " ".join(c.text for c in chunks).split()
    assert words == ["first", *line.split(), "last"]


def test_real_chunks_fit_the_model_window(embedder: Embedder) -> None:
    paragraphs = [
        f"## Meeting {i}\n\n"
        + " ".join(f"Discussed item {j} of the roadmap with team {i % 7}." for j in range(i % 9))
        for i in range(60)
    ]
    text = "\n\n".join(paragraphs) + "\n" + "averyveryverylongtoken" * 200 + "\n"
    chunks = chunk_text(text, embedder, size=240, overlap=40)
    assert len(chunks) > 5
    for chunk in chunks:
        assert embedder.count_tokens(chunk.text) <= 240
        assert embedder.count_tokens(chunk.text) + 2 <= Embedder.max_tokens
    covered = {n for c in chunks for n in range(c.start_line, c.end_line + 1)}
    content = {n for n, line in enumerate(split_lines(text), 1) if line.strip()}
    assert content <= covered
    starts = [c.start_line for c in chunks]
    assert starts == sorted(set(starts))


def test_real_overlap_is_about_the_requested_tokens(embedder: Embedder) -> None:
    text = "".join(f"Task {i}: water the plants on the balcony at {i} pm.\n" for i in range(80))
    chunks = chunk_text(text, embedder, size=120, overlap=40)
    assert len(chunks) > 5
    for before, after in itertools.pairwise(chunks):
        shared = range(after.start_line, before.end_line + 1)
        shared_tokens = sum(embedder.count_tokens(split_lines(text)[n - 1]) for n in shared)
        assert 20 <= shared_tokens <= 40


def test_list_items_are_chunks_of_their_own_with_their_headings() -> None:
    text = (
        "# Memory\n\nLasting facts.\n\n## People\n- Wife: Ingrid\n- Brother Tobias lives in\n"
        "  Lisbon\n\n## Health\n* allergic to penicillin\n1. first\n2) second\nafter\n"
    )
    chunks = chunk_text(text, WordCounter(), size=50, overlap=5)
    assert [(c.start_line, c.end_line, c.context) for c in chunks] == [
        (1, 5, ""),  # the prose before the first item, headings included
        (6, 6, "Memory > People"),
        (7, 8, "Memory > People"),  # an item goes on to its continuation line
        (10, 10, ""),
        (11, 11, "Memory > Health"),
        (12, 12, "Memory > Health"),
        (13, 14, "Memory > Health"),  # a line right after an item continues it
    ]
    assert chunks[2].text == "- Brother Tobias lives in\n  Lisbon"
    assert embedded_text(chunks[1]) == "Memory > People\n- Wife: Ingrid"
    assert embedded_text(chunks[0]) == chunks[0].text


def test_code_fences_hold_no_items_or_headings() -> None:
    text = "Run this:\n```sh\n# not a heading\n- not an item\n```\n- an item\n"
    chunks = chunk_text(text, WordCounter(), size=50, overlap=0)
    assert [(c.start_line, c.end_line) for c in chunks] == [(1, 5), (6, 6)]
    assert chunks[1].context == ""


def test_char_estimate_without_an_embedder() -> None:
    counter = CharEstimate()
    assert counter.count_tokens("abcdefgh") == 2 and counter.count_tokens("abcde") == 2
    text = ("lorem ipsum " * 300) + "x" * 500
    pieces = counter.split_tokens(text, 50)
    assert "".join(pieces) == text
    assert all(len(piece) <= 200 for piece in pieces)


# --- reindexing ----------------------------------------------------------------------------


def test_reindex_is_incremental(index: MemoryIndex, ws: Workspace) -> None:
    again = index.reindex()
    assert (again.files_indexed, again.files_unchanged, again.chunks_added) == (0, 5, 0)

    (ws.root / "food.md").write_text("# Recipes\n\nShakshuka: eggs poached in spiced tomato.\n")
    (ws.root / "memory" / "2025-01-02.md").write_text("# 2025-01-02\n\nCalled the plumber.\n")
    (ws.root / "travel.md").unlink()
    stats = index.reindex()
    assert (stats.files_indexed, stats.files_unchanged, stats.files_removed) == (2, 3, 1)
    assert stats.chunks_total == 5
    assert "food.md" in paths(index.search("shakshuka", mode="fts"))
    assert index.search("carbonara guanciale", mode="fts") == []
    assert "travel.md" not in paths(index.search("Lisbon flight", limit=5))
    assert_consistent(index.db_path)


def test_mtime_only_change_is_not_reindexed(index: MemoryIndex, ws: Workspace) -> None:
    path = ws.root / "work.md"
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    stats = index.reindex()
    assert (stats.files_indexed, stats.files_unchanged) == (0, 5)
    with sqlite3.connect(index.db_path) as conn:
        (mtime,) = conn.execute("SELECT mtime FROM files WHERE path = 'work.md'").fetchone()
    assert mtime == path.stat().st_mtime_ns


def test_an_edit_reembeds_only_changed_chunks(
    tmp_path: Path, ws: Workspace, embedder: CountingEmbedder
) -> None:
    lines = [f"Line {i}: notes about topic number {i} and its details." for i in range(120)]
    (ws.root / "long.md").write_text("\n".join(lines) + "\n")
    index = MemoryIndex(tmp_path / "index.sqlite", ws, embedder, chunk_size=100, chunk_overlap=0)
    index.reindex()
    chunks = index.stats()["chunks"]
    assert chunks > 8
    before = embedder.embedded
    (ws.root / "long.md").write_text("\n".join(lines) + "\nOne more line at the end.\n")
    assert index.reindex().files_indexed == 1
    assert embedder.embedded - before == 1


def test_force_reindexes_everything(index: MemoryIndex) -> None:
    stats = index.reindex(force=True)
    assert (stats.files_indexed, stats.files_unchanged) == (5, 0)
    assert stats.chunks_total == 5


def test_progress_reports_each_file(index: MemoryIndex) -> None:
    seen: list[tuple[int, int]] = []
    index.reindex(force=True, progress=lambda done, total: seen.append((done, total)))
    assert seen == [(i, 5) for i in range(1, 6)]


def test_index_file_and_remove_file(index: MemoryIndex, ws: Workspace) -> None:
    (ws.root / "memory" / "2025-02-01.md").write_text("# 2025-02-01\n\nBought a kayak.\n")
    assert index.index_file("memory/2025-02-01.md") is True
    assert index.index_file("memory/2025-02-01.md") is False  # unchanged
    assert paths(index.search("kayak", mode="fts")) == ["memory/2025-02-01.md"]
    assert index.remove_file("memory/2025-02-01.md") is True
    assert index.search("kayak", mode="fts") == []
    assert index.index_file("../outside.md") is False
    (ws.root / "garden.md").unlink()
    assert index.index_file("garden.md") is True  # gone: removed from the index
    assert index.stats()["files"] == 4
    assert_consistent(index.db_path)


def test_changed_settings_rebuild_the_index(
    tmp_path: Path, ws: Workspace, index: MemoryIndex
) -> None:
    index.close()
    reopened = MemoryIndex(tmp_path / "index.sqlite", ws, None, chunk_size=200)
    assert reopened.stats()["chunks"] == 0
    stats = reopened.reindex()
    assert stats.files_indexed == 5
    assert reopened.stats()["embedded_chunks"] == 0
    assert reopened.stats()["model"] == "none"


def test_settings_are_checked(tmp_path: Path, ws: Workspace, embedder: Embedder) -> None:
    with pytest.raises(ValueError, match="special tokens"):
        MemoryIndex(tmp_path / "x.sqlite", ws, embedder, chunk_size=400)
    index = MemoryIndex(tmp_path / "x.sqlite", ws, None, chunk_size=100, chunk_overlap=500)
    assert index.stats()["chunk_overlap"] == 50


def test_corrupt_database_is_rebuilt(tmp_path: Path, ws: Workspace) -> None:
    db = tmp_path / "index.sqlite"
    db.write_bytes(b"this is not a database" * 100)
    index = MemoryIndex(db, ws, None)
    assert index.reindex().files_indexed == 5
    assert paths(index.search("dentist", mode="fts")) == ["health.md"]


def test_damaged_pages_are_detected_and_rebuilt(
    tmp_path: Path, ws: Workspace, embedder: Embedder, index: MemoryIndex
) -> None:
    for i in range(40):
        (ws.root / f"extra{i}.md").write_text(f"# Extra {i}\n\n" + "filler text " * 20)
    index.reindex()
    index.close()
    db = tmp_path / "index.sqlite"
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    data = bytearray(db.read_bytes())
    assert len(data) > 20 * page_size
    for page in range(5, 20):  # b-tree pages of the chunks and their text
        data[page * page_size : page * page_size + 64] = b"\xff" * 64
    db.write_bytes(bytes(data))
    reopened = MemoryIndex(db, ws, embedder)  # same settings: nothing else would notice
    assert reopened.stats()["files"] == 0
    assert reopened.reindex().files_indexed == 45
    assert_consistent(db)


def test_other_schema_version_is_rebuilt(tmp_path: Path, ws: Workspace, index: MemoryIndex) -> None:
    index.close()
    with sqlite3.connect(tmp_path / "index.sqlite") as conn:
        conn.execute("UPDATE meta SET value = '0' WHERE key = 'schema'")
    reopened = MemoryIndex(tmp_path / "index.sqlite", ws, None)
    assert reopened.stats()["files"] == 0
    assert reopened.reindex().files_indexed == 5


# --- search --------------------------------------------------------------------------------


def test_paraphrase_is_found_by_hybrid_search(index: MemoryIndex) -> None:
    query = "when do I see the tooth doctor?"
    assert "health.md" not in paths(index.search(query, mode="fts"))  # no shared word
    results = index.search(query, limit=3)
    assert results[0].path == "health.md"
    assert (results[0].start_line, results[0].end_line) == (1, 3)
    assert "Dentist appointment" in results[0].snippet
    assert index.search("where am I staying in Portugal", limit=1)[0].path == "travel.md"


def test_keyword_matches_rank_first_in_fts(index: MemoryIndex) -> None:
    results = index.search("staging key", mode="fts")
    assert paths(results) == ["work.md"]
    assert results[0].score == pytest.approx(1.0)
    hybrid = index.search("staging key", limit=2)
    assert hybrid[0].path == "work.md"
    assert len(hybrid) == 2 and 1.0 >= hybrid[0].score > hybrid[1].score


def test_scores_are_absolute_and_a_threshold_drops_what_does_not_match(
    index: MemoryIndex, ws: Workspace
) -> None:
    """A score means the same for every query: what matches neither the meaning nor the
    words of a query scores low, however few chunks there are to rank. (The starter files,
    SOUL.md, MEMORY.md and HEARTBEAT.md, came back for "dentist" when scores were ranks.)"""
    ws.ensure()
    index.reindex()
    floor = MemoryConfig().search_min_score
    assert paths(index.search("tell me a joke", min_score=floor)) == []
    assert paths(index.search("what is kubernetes?", min_score=floor)) == []
    found = index.search("dentist", limit=5, min_score=floor)
    assert paths(found) == ["health.md"]
    unfiltered = index.search("dentist", limit=5)
    assert len(unfiltered) > 1 and all(r.score < floor for r in unfiltered[1:])


def test_exact_words_are_found_whatever_their_meaning_scores(index: MemoryIndex) -> None:
    floor = MemoryConfig().search_min_score
    found = index.search("Priya", min_score=floor)  # a name: little meaning to embed
    assert paths(found)[:1] == ["work.md"]


@pytest.mark.parametrize(
    "query",
    [
        '"unbalanced',
        "AND OR NOT",
        "NEAR(tomato, 2)",
        "text:tomato",
        "toma* ^first -minus +plus",
        "'; DROP TABLE chunks; --",
        "(((",
        "🙂 ünïcödé 東京",
        "___",
        "   ",
    ],
)
def test_hostile_queries_do_not_break_fts(index: MemoryIndex, query: str) -> None:
    for mode in ("fts", "hybrid", "vector"):
        assert isinstance(index.search(query, mode=mode), list)


def test_query_terms_are_plain_words() -> None:
    assert query_terms('the "Tomato" AND seedlings* tomato') == ["tomato", "seedlings"]
    assert query_terms("the and of") == ["the", "and", "of"]  # only stopwords: keep them
    assert query_terms("?! _ --") == []
    assert match_expression(["tomato", "4pm"]) == '"tomato" OR "4pm"'


def test_very_common_words_leave_the_fts_query(
    index: MemoryIndex, ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(scoring, "COMMON_TERM_CHUNKS", 2)
    for name in ("a.md", "b.md"):
        (ws.root / name).write_text("Weekly note.\n")
    (ws.root / "c.md").write_text("Weekly note about the lighthouse.\n")
    index.reindex()
    assert paths(index.search("weekly lighthouse", mode="fts")) == ["c.md"]
    assert sorted(paths(index.search("weekly", mode="fts"))) == ["a.md", "b.md", "c.md"]


def test_unknown_mode_is_refused(index: MemoryIndex) -> None:
    with pytest.raises(ValueError, match="unknown search mode"):
        index.search("x", mode="semantic")


def test_without_an_embedder_search_is_fts(tmp_path: Path, ws: Workspace) -> None:
    index = MemoryIndex(tmp_path / "fts.sqlite", ws, None)
    index.reindex()
    assert paths(index.search("Lisbon", mode="hybrid")) == ["travel.md"]
    assert index.search("tooth doctor") == []


def test_temporal_decay_prefers_recent_logs(
    tmp_path: Path, ws: Workspace, embedder: Embedder
) -> None:
    today = date.today()
    old, new = today - timedelta(days=400), today - timedelta(days=1)
    (ws.root / "memory" / f"{old}.md").write_text(
        f"# {old}\n\nStandup: the Postgres migration slipped; Postgres migration blocked.\n"
    )
    (ws.root / "memory" / f"{new}.md").write_text(f"# {new}\n\nStandup: Postgres migration.\n")
    plain = MemoryIndex(tmp_path / "plain.sqlite", ws, embedder)
    plain.reindex()
    ranked = paths(plain.search("postgres migration", limit=2, mode="fts"))
    assert ranked == [f"memory/{old}.md", f"memory/{new}.md"]
    decayed = MemoryIndex(tmp_path / "decay.sqlite", ws, embedder, decay_lambda=0.01)
    decayed.reindex()
    results = decayed.search("postgres migration", limit=2, mode="fts")
    assert paths(results) == [f"memory/{new}.md", f"memory/{old}.md"]
    assert results[1].score == pytest.approx(np.exp(-0.01 * 400))  # first by BM25, 400 days old


def test_durable_files_do_not_decay(tmp_path: Path, ws: Workspace) -> None:
    facts = ws.root / "MEMORY.md"
    facts.write_text("# Memory\n\nThe Postgres migration is owned by Ana.\n")
    year_ago = time.time() - 400 * 86400
    os.utime(facts, (year_ago, year_ago))
    plain = MemoryIndex(tmp_path / "plain.sqlite", ws, None)
    decayed = MemoryIndex(tmp_path / "decay.sqlite", ws, None, decay_lambda=0.01)
    scores = []
    for index in (plain, decayed):
        index.reindex()
        found = [
            r for r in index.search("postgres migration owner", mode="fts") if r.path == "MEMORY.md"
        ]
        scores.append(found[0].score)
    assert scores[0] == pytest.approx(scores[1])


def test_search_from_another_thread(index: MemoryIndex) -> None:
    with ThreadPoolExecutor(1) as pool:
        results = pool.submit(index.search, "tomato seedlings").result()
    assert results[0].path == "garden.md"


def test_vector_cache_follows_other_connections(
    tmp_path: Path, ws: Workspace, embedder: Embedder, index: MemoryIndex
) -> None:
    assert index.search("kayak trip", limit=1, mode="vector")[0].path != "boats.md"
    (ws.root / "boats.md").write_text("# Boats\n\nBought a sea kayak and a paddle.\n")
    other = MemoryIndex(tmp_path / "index.sqlite", ws, embedder)
    other.index_file("boats.md")
    other.close()
    assert index.search("kayak trip", limit=1, mode="vector")[0].path == "boats.md"


def test_stats(index: MemoryIndex) -> None:
    stats = index.stats()
    assert stats["files"] == 5 and stats["chunks"] == 5 and stats["embedded_chunks"] == 5
    assert stats["model"] == Embedder.model_id and stats["db_bytes"] > 0
    assert stats["last_reindex"] is not None


# --- crash safety --------------------------------------------------------------------------

CHILD = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from localgpt.memory.embedder import Embedder
    from localgpt.memory.index import MemoryIndex
    from localgpt.memory.workspace import Workspace

    index = MemoryIndex(Path(sys.argv[1]), Workspace(Path(sys.argv[2])), Embedder())
    index.reindex(progress=lambda done, total: print(done, total, flush=True))
    print("finished", flush=True)
    """
)


def test_killed_reindex_leaves_a_consistent_index(tmp_path: Path, embedder: Embedder) -> None:
    ws = Workspace(tmp_path / "big")
    (ws.root / "notes").mkdir(parents=True)
    for i in range(300):
        body = f"Remember to follow up on topic {i * 7} with the team."
        (ws.root / "notes" / f"n{i:03}.md").write_text(f"# Note {i}\n\n{body}\n")
    db = tmp_path / "big.sqlite"
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(db), str(ws.root)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    assert child.stdout is not None
    first = child.stdout.readline().split()  # the first file committed
    child.send_signal(signal.SIGKILL)
    child.wait(30)
    child.stdout.close()
    assert first and first[0] != "finished"
    assert child.returncode == -signal.SIGKILL

    assert_consistent(db)
    index = MemoryIndex(db, ws, embedder)
    done_before = index.stats()["files"]
    assert 0 < done_before < 300
    stats = index.reindex()
    assert stats.files_unchanged == done_before
    assert stats.files_indexed == 300 - done_before
    assert index.stats()["files"] == 300
    assert_consistent(db)
    assert index.search("topic 1400", limit=1, mode="fts")[0].path == "notes/n200.md"


def test_a_stopped_reindex_ends_early_and_the_next_run_does_the_rest(tmp_path: Path) -> None:
    ws = Workspace(tmp_path / "big")
    (ws.root / "notes").mkdir(parents=True)
    for i in range(300):
        (ws.root / "notes" / f"n{i:03}.md").write_text(f"# Note {i}\n\nTopic {i * 7}.\n")
    db = tmp_path / "big.sqlite"
    index = MemoryIndex(db, ws, None)

    def progress(done: int, total: int) -> None:
        if done == 70:
            index.stop()  # as the server's shutdown does, from another thread

    stats = index.reindex(progress=progress)
    assert stats.stopped
    done_before = index.stats()["files"]
    assert 70 <= done_before < 300 and stats.files_indexed == done_before
    assert index.stats()["last_reindex"] is None  # not a finished run
    assert_consistent(db)
    again = index.reindex()  # once stopped, an index does no more long work
    assert again.stopped and again.files_indexed == 0
    index.close()

    reopened = MemoryIndex(db, ws, None)
    stats = reopened.reindex()
    assert not stats.stopped
    assert stats.files_unchanged == done_before
    assert stats.files_indexed == 300 - done_before
    assert reopened.stats()["files"] == 300
    assert_consistent(db)


def test_a_stopped_reindex_leaves_edited_files_for_the_next_run(tmp_path: Path) -> None:
    """Files changed since the last run and not reached keep their old hash and mtime."""
    ws = Workspace(tmp_path / "big")
    (ws.root / "notes").mkdir(parents=True)
    for i in range(200):
        (ws.root / "notes" / f"n{i:03}.md").write_text(f"Old text {i}.\n")
    db = tmp_path / "big.sqlite"
    MemoryIndex(db, ws, None).reindex()
    for i in range(200):
        (ws.root / "notes" / f"n{i:03}.md").write_text(f"New wording number {i}.\n")
    index = MemoryIndex(db, ws, None)
    index.reindex(progress=lambda done, total: index.stop() if done == 10 else None)
    rewritten = index.stats()["files"]
    assert rewritten == 200 and len(index.search("wording", limit=200, mode="fts")) < 200
    index.close()
    reopened = MemoryIndex(db, ws, None)
    reopened.reindex()
    assert len(reopened.search("wording", limit=200, mode="fts")) == 200
    assert reopened.search("old", limit=200, mode="fts") == []
    assert_consistent(db)
