"""The SQLite response store on its own: durability, retention, item lookup, concurrency."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

from localgpt.api.responses.store import SQLiteResponseStore, StoredResponse


def record(rid: str, created: float | None = None, text: str = "hi") -> StoredResponse:
    return StoredResponse(
        rid,
        time.time() if created is None else created,
        {
            "id": rid,
            "previous_response_id": None,
            "output": [{"id": f"msg_{rid}", "type": "message", "content": [{"text": text}]}],
        },
        [{"id": f"in_{rid}", "type": "message", "role": "user", "content": text}],
        owner=None,
    )


def test_a_put_is_on_disk_when_it_returns(tmp_path: Path) -> None:
    async def main() -> None:
        store = SQLiteResponseStore(tmp_path / "r.sqlite3", retention_days=30)
        await store.put(record("resp_1"))
        # Another connection (another process, after a crash) sees it at once.
        with sqlite3.connect(tmp_path / "r.sqlite3") as other:
            assert other.execute("SELECT id FROM responses").fetchall() == [("resp_1",)]
        await store.aclose()

    asyncio.run(main())


def test_puts_made_together_share_commits_and_all_land(tmp_path: Path) -> None:
    async def main() -> None:
        store = SQLiteResponseStore(tmp_path / "r.sqlite3", retention_days=30)
        await asyncio.gather(*(store.put(record(f"resp_{i}")) for i in range(200)))
        found = await asyncio.gather(*(store.get(f"resp_{i}") for i in range(200)))
        assert all(f is not None and f.id == f"resp_{i}" for i, f in enumerate(found))
        await store.aclose()

    asyncio.run(main())


def test_retention_sweeps_old_responses_and_their_items(tmp_path: Path) -> None:
    async def main() -> None:
        path = tmp_path / "r.sqlite3"
        store = SQLiteResponseStore(path, retention_days=1)
        await store.put(record("resp_old", created=time.time() - 2 * 86400, text="old"))
        await store.put(record("resp_new", text="new"))
        await store.aclose()
        again = SQLiteResponseStore(path, retention_days=1)
        await again.open()  # start-up sweeps
        assert await again.get("resp_old") is None
        assert await again.get("resp_new") is not None
        assert await again.find_items(["msg_resp_old", "in_resp_new"]) == {
            "in_resp_new": {
                "id": "in_resp_new",
                "type": "message",
                "role": "user",
                "content": "new",
            }
        }
        await again.aclose()

    asyncio.run(main())


def test_delete_and_the_latest_item_of_an_id(tmp_path: Path) -> None:
    async def main() -> None:
        store = SQLiteResponseStore(tmp_path / "r.sqlite3", retention_days=30)
        first, second = record("resp_a", text="first"), record("resp_b", text="second")
        second.input_items = [{"id": "shared", "v": 2}]
        first.input_items = [{"id": "shared", "v": 1}]
        first.created_at -= 10
        await store.put(first)
        await store.put(second)
        assert await store.find_items(["shared"]) == {"shared": {"id": "shared", "v": 2}}
        assert await store.delete("resp_b") is True
        assert await store.delete("resp_b") is False
        assert await store.find_items(["shared"]) == {"shared": {"id": "shared", "v": 1}}
        await store.aclose()

    asyncio.run(main())
