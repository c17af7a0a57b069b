"""Shared backends for more than one server process: ``hot`` (Redis: rate limits,
cooldowns, the tool stash, locks) and ``durable`` (PostgreSQL: sessions, stored responses).
Each is used only when configured (``[state] url``, ``[storage] url``); the embedded defaults
(state in the process, JSONL sessions, SQLite) stay as they are otherwise."""
