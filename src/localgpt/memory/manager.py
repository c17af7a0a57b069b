"""The assistant's memory as the rest of the server uses it: async, and kept up to date.

The workspace's markdown files are the truth; the index in the cache folder is derived from
them and can always be rebuilt. Index work runs on one dedicated thread (SQLite connections
are not shared across threads, and it keeps the event loop free); a file watcher reindexes
what changes while the server runs.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from localgpt.config import Config, Paths

if TYPE_CHECKING:
    from localgpt.memory.embedder import Embedder
    from localgpt.memory.index import Index, ReindexStats
    from localgpt.memory.search import SearchResult
    from localgpt.memory.workspace import Workspace

log = logging.getLogger("localgpt.memory")
T = TypeVar("T")


@dataclass(frozen=True)
class Remembered:
    """What ``Memory.remember`` did: "add", "update" (of ``previous``) or "exists"."""

    action: str
    path: str
    fact: str
    previous: str | None = None


class Memory:
    def __init__(self, config: Config, paths: Paths | None = None) -> None:
        from localgpt.memory.workspace import Workspace

        self.config = config
        self.paths = paths or Paths.from_env()
        self.workspace: Workspace = Workspace(config.workspace)
        self.db_path = self.paths.cache_dir / "memory" / "index.sqlite"
        # Writes (reindexing, saving) run on one thread, reads (search, stats) on another:
        # a long first index never makes a search wait for more than one file's write.
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="memory-write")
        self._reader = ThreadPoolExecutor(1, thread_name_prefix="memory-read")
        self._index: Index | None = None
        self._opening: asyncio.Future[Index] | None = None
        self._embedder: Embedder | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()
        self._closing = threading.Event()  # read on the writer thread, see _open
        self.ready = asyncio.Event()

    # --- lifetime ---------------------------------------------------------------------

    def _open(self) -> Index:
        embedder = self.embedder() if self.config.memory.embedding_provider == "local" else None
        index = open_index(self.config, self.workspace, self.db_path, embedder)
        if self._closing.is_set():
            index.stop()  # opened while shutting down: do no long work on it
        return index

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def _read(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._reader, fn, *args)

    async def index(self) -> Index:
        """The index, opened once however many callers ask at the same moment."""
        if self._index is None:
            if self._opening is None:
                self._opening = asyncio.ensure_future(self._run(self._open))
            try:
                self._index = await asyncio.shield(self._opening)
            except Exception:
                self._opening = None  # a shared index that was down: try again next time
                raise
        return self._index

    async def start(self, watch: bool = True) -> None:
        """Follow the workspace for changes, open the index and bring it up to date.

        The watcher starts first: a file written while the first reindex runs is then seen
        by one or the other (or both, which is harmless), never by neither.
        """
        if watch and self._watcher is None:
            self._watcher = asyncio.create_task(self._watch())
            await asyncio.sleep(0)  # let the watcher begin watching
        index = await self.index()
        stats = await self._run(index.reindex)
        if stats.stopped:
            log.info("memory reindex stopped for shutdown; the next start resumes it: %s", stats)
            return
        log.info("memory index ready: %s", stats)
        self.ready.set()

    async def _watch(self) -> None:
        import watchfiles

        root = self.workspace.root
        async for changes in watchfiles.awatch(
            root, stop_event=self._stop, debounce=300, recursive=True
        ):
            paths = {Path(p) for _, p in changes if p.endswith(".md")}
            if not paths:
                continue
            index = await self.index()
            for path in sorted(paths):
                relative = path.relative_to(root).as_posix()
                try:
                    if path.exists():
                        await self._run(index.index_file, relative)
                    else:
                        await self._run(index.remove_file, relative)
                except Exception:
                    log.exception("could not reindex %s", relative)

    async def aclose(self) -> None:
        """Stop watching and close the index. A running reindex is told to stop first:
        closing waits on the writer thread behind it, and a long first index would
        otherwise hold up the exit for minutes. What it leaves undone is done next start."""
        self._stop.set()
        self._closing.set()
        if self._watcher is not None:
            self._watcher.cancel()
        if self._index is not None:
            self._index.stop()
            await self._run(self._index.close)
        self._executor.shutdown(wait=False)
        self._reader.shutdown(wait=False)

    # --- operations -------------------------------------------------------------------

    async def search(
        self, query: str, limit: int = 5, min_score: float | None = None
    ) -> list[SearchResult]:
        """The best ``limit`` chunks scoring at least ``min_score`` ([memory]
        search_min_score unless given)."""
        index = await self.index()
        floor = self.config.memory.search_min_score if min_score is None else min_score
        return await self._read(index.search, query, limit, "hybrid", floor)

    async def read(self, path: str, start: int | None = None, end: int | None = None) -> str:
        return await self._read(self.workspace.read, path, start, end)

    async def save(self, content: str, target: str = "daily") -> str:
        """Append to today's log or MEMORY.md, atomically, and index it at once."""
        index = await self.index()
        path = await self._run(self.workspace.append, target, content, date.today())
        relative = path.relative_to(self.workspace.root).as_posix()
        await self._run(index.index_file, relative)
        return relative

    async def remember(self, fact: str, target: str = "memory") -> Remembered:
        """Save one fact as a list item: to today's log, or to MEMORY.md, where it replaces
        an older fact about the same thing and is not added twice (``memory.facts``)."""
        from localgpt.memory import facts

        if target != "memory":
            relative = await self.save(f"- {fact}", target)
            return Remembered("add", relative, fact)
        index = await self.index()
        embedder = self.embedder() if self.config.memory.embedding_provider == "local" else None
        done: list[facts.Decision] = []

        def change(text: str) -> str | None:
            lines = facts.items(text)
            subject = facts.subject_of(fact)
            alike = [line for line in lines if subject and facts.subject_of(line.text) == subject]
            if embedder is not None and alike:
                vectors = embedder.embed([fact, *(line.text for line in alike)])
                scored = {
                    line.number: float(vectors[0] @ vector)
                    for line, vector in zip(alike, vectors[1:], strict=True)
                }
                lines = [
                    facts.Line(line.number, line.text, scored.get(line.number)) for line in lines
                ]
            decision = facts.decide(fact, lines)
            done.append(decision)
            rows = text.split("\n")
            if decision.action == "update" and decision.line is not None:
                rows[decision.line.number - 1] = f"- {fact}"
                return "\n".join(rows)
            if decision.action == "add":
                body = text if text.endswith("\n") or not text else text + "\n"
                return f"{body}- {fact}\n"
            return None

        def write() -> bool:
            changed = self.workspace.update("MEMORY.md", "# Memory\n\n", change)
            if changed:
                index.index_file("MEMORY.md")
            return changed

        await self._run(write)
        decision = done[-1]
        return Remembered(
            decision.action,
            "MEMORY.md",
            fact,
            decision.line.text if decision.line is not None else None,
        )

    async def reindex(self, force: bool = False) -> ReindexStats:
        index = await self.index()
        return await self._run(index.reindex, force)

    async def stats(self) -> dict[str, Any]:
        index = await self.index()
        return await self._read(index.stats)

    def embedder(self) -> Embedder:
        """The index's embedder (loaded on first use), also serving /v1/embeddings."""
        if self._embedder is None:
            from localgpt.memory.embedder import Embedder

            self._embedder = Embedder()
        return self._embedder

    def context(self) -> str:
        context: str = self.workspace.context(date.today())
        return context


def open_index(
    config: Config, workspace: Workspace, db_path: Path, embedder: Embedder | None
) -> Index:
    """Create the workspace if needed and open its index (also used by the CLI): SQLite in
    the cache folder, or PostgreSQL with pgvector when ``[storage] url`` is set."""
    from localgpt.memory.index import MemoryIndex

    workspace.ensure()
    if config.storage.url is not None:
        from localgpt.memory.pgindex import PgMemoryIndex

        return PgMemoryIndex(
            config.storage.url,
            workspace,
            embedder,
            chunk_size=config.memory.chunk_size,
            chunk_overlap=config.memory.chunk_overlap,
            decay_lambda=config.memory.temporal_decay_lambda,
        )
    db_path.parent.mkdir(parents=True, exist_ok=True)
    memory = config.memory
    return MemoryIndex(
        db_path,
        workspace,
        embedder,
        chunk_size=memory.chunk_size,
        chunk_overlap=memory.chunk_overlap,
        decay_lambda=memory.temporal_decay_lambda,
    )
