"""The memory index on PostgreSQL with pgvector against the SQLite one, on the same notes and
the real embedder: the same results, kept up to date the same way."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from localgpt.memory.embedder import Embedder
from localgpt.memory.index import MemoryIndex
from localgpt.memory.pgindex import PgMemoryIndex
from localgpt.memory.workspace import Workspace
from tests.backends import PostgresServer

NOTES = {
    "MEMORY.md": "# Memory\n\n- The user's dentist is Dr. Okafor.\n- The user's bike lock code "
    "is 4417.\n- The user is allergic to penicillin.\n",
    "knowledge/travel/documents.md": "# Travel documents\n\nPassport expires on 3 March 2028."
    "\nThe visa for Japan was approved in May.\n",
    "knowledge/home/boiler.md": "# Boiler\n\nServiced every October by Heatwise, phone "
    "0161 555 0199. The pressure should stay between 1 and 1.5 bar.\n",
    "memory/2026-11-02.md": "# 2 November\n\nCalled the bank about the mortgage renewal.\n",
}
QUERIES = [
    "when does my passport run out?",
    "who is my dentist?",
    "boiler pressure",
    "what medicine must I avoid?",
    "mortgage",
    "4417",
]


@pytest.fixture
def indexes(
    tmp_path: Path,
    postgres_server: PostgresServer,
) -> Iterator[tuple[MemoryIndex, PgMemoryIndex, Workspace]]:
    workspace = Workspace(tmp_path / "ws")
    for relative, text in NOTES.items():
        path = workspace.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    embedder = Embedder()
    sqlite = MemoryIndex(tmp_path / "index.sqlite", workspace, embedder)
    dsn = postgres_server.create_database(f"idx{abs(hash(str(tmp_path))) % 10**8}")
    pg = PgMemoryIndex(dsn, workspace, embedder)
    yield sqlite, pg, workspace
    sqlite.close()
    pg.close()


def test_the_same_results_as_sqlite(indexes: tuple[MemoryIndex, PgMemoryIndex, Workspace]) -> None:
    sqlite, pg, _ = indexes
    a, b = sqlite.reindex(), pg.reindex()
    assert (a.files_indexed, a.chunks_total) == (b.files_indexed, b.chunks_total)
    for query in QUERIES:
        mine = [(r.path, r.start_line, round(r.score, 3)) for r in sqlite.search(query, 3)]
        theirs = [(r.path, r.start_line, round(r.score, 3)) for r in pg.search(query, 3)]
        assert theirs[:1] == mine[:1], query  # the same best note, with the same score
        assert {p for p, _, _ in theirs} == {p for p, _, _ in mine}, query


def test_changes_reach_the_index_and_a_second_reindex_waits_its_turn(
    indexes: tuple[MemoryIndex, PgMemoryIndex, Workspace],
    postgres_server: PostgresServer,
) -> None:
    _, pg, workspace = indexes
    pg.reindex()
    assert pg.reindex().files_unchanged == len(NOTES)
    (workspace.root / "MEMORY.md").write_text("# Memory\n\n- The user's dentist is Dr. Adeyemi.\n")
    assert pg.index_file("MEMORY.md")
    assert "Adeyemi" in pg.search("who is my dentist?", 1)[0].snippet
    (workspace.root / "knowledge/home/boiler.md").unlink()
    assert pg.remove_file("knowledge/home/boiler.md")
    assert all(r.path != "knowledge/home/boiler.md" for r in pg.search("boiler pressure", 5))
    import psycopg

    with psycopg.connect(pg.dsn, autocommit=True) as other:  # another replica reindexing
        other.execute("SELECT pg_advisory_lock(727275)")
        assert pg.reindex().stopped
        other.execute("SELECT pg_advisory_unlock(727275)")
    assert not pg.reindex().stopped
