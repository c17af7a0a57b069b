"""Heartbeat evaluation: does a cycle on the default embedded model act when a task in
HEARTBEAT.md is due, and answer HEARTBEAT_OK when none is?

Each case of ``data/heartbeat_eval.json`` is one cycle in a fresh workspace, at a fixed local
time (Monday 30 November 2026, 09:30), run in-process on the embedded model with no other
configuration. A due case counts when the cycle called a tool (``memory_save`` or
``heartbeat_update``); a quiet one when it answered ``HEARTBEAT_OK`` and touched nothing.
Prints the score for all cases, the tuning part and the held-out part, and the median cycle
time. ``--only ID,ID`` runs some cases.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DATA = ROOT / "bench" / "data" / "heartbeat_eval.json"
NOW = datetime(2026, 11, 30, 9, 30).astimezone()


class FixedClock:
    def now(self) -> datetime:
        return NOW

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


async def evaluate(cases: list[dict[str, Any]]) -> list[dict[str, Any]]:
    from localgpt.agent.build import build
    from localgpt.agent.heartbeat import Autonomy
    from localgpt.agent.schedule import RunLog
    from localgpt.config import Config, Paths

    config = Config()
    made = build(config)
    assert made.memory is not None and made.conversations is not None
    made.memory.workspace.ensure()
    await made.memory.start(watch=False)
    await made.agent.warm_up()
    paths = Paths.from_env()
    autonomy = Autonomy(
        config,
        made.agent,
        made.conversations.store,
        RunLog(paths.state_dir / "runs.jsonl"),
        FixedClock(),
    )
    results = []
    workspace = made.memory.workspace.root
    try:
        for case in cases:
            for log in (workspace / "memory").glob("*.md"):
                log.unlink()
            (workspace / "MEMORY.md").write_text("# Memory\n")
            text = "# Heartbeat\n\n" + case["heartbeat"] + "\n"
            (workspace / "HEARTBEAT.md").write_text(text)
            started = time.perf_counter()
            run = await autonomy.heartbeat()
            seconds = time.perf_counter() - started
            changed = (workspace / "HEARTBEAT.md").read_text() != text
            acted = bool(run.tools) or changed
            ok = run.outcome == "ok" and not acted
            right = acted if case["expect"] == "act" else ok
            results.append(
                {
                    **case,
                    "outcome": run.outcome,
                    "tools": run.tools,
                    "reply": run.detail,
                    "right": right,
                    "seconds": round(seconds, 2),
                }
            )
            mark = "✓" if right else "✗"
            print(
                f"{mark} {case['id']:<20} {case['expect']:<4} -> {run.outcome:<6} "
                f"{','.join(run.tools) or '-':<30} {seconds:5.1f} s  {run.detail[:60]!r}",
                flush=True,
            )
    finally:
        await made.aclose()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", help="comma-separated case ids")
    args = parser.parse_args()
    cases = json.loads(DATA.read_text())["cases"]
    if args.only:
        wanted = set(args.only.split(","))
        cases = [c for c in cases if c["id"] in wanted]
    home = Path(tempfile.mkdtemp(prefix="hb-eval-"))
    models = Path.home() / ".cache" / "localgpt" / "models"
    os.environ.update(
        HOME=str(home),
        XDG_CONFIG_HOME=str(home / "config"),
        XDG_DATA_HOME=str(home / "data"),
        XDG_CACHE_HOME=str(home / "cache"),
        XDG_STATE_HOME=str(home / "state"),
    )
    if models.exists():  # the joined model, not joined again
        (home / "cache" / "localgpt").mkdir(parents=True)
        (home / "cache" / "localgpt" / "models").symlink_to(models)
    try:
        results = asyncio.run(evaluate(cases))
    finally:
        shutil.rmtree(home, ignore_errors=True)
    for split in ("all", "tune", "held", "held2"):
        part = [r for r in results if split == "all" or r["split"] == split]
        if part:
            right = sum(r["right"] for r in part)
            print(f"{split}: {right}/{len(part)} right ({100 * right / len(part):.0f}%)")
    act = [r for r in results if r["expect"] == "act"]
    quiet = [r for r in results if r["expect"] == "ok"]
    print(
        f"due tasks done: {sum(r['right'] for r in act)}/{len(act)}; "
        f"quiet cycles: {sum(r['right'] for r in quiet)}/{len(quiet)}; "
        f"median cycle {statistics.median(r['seconds'] for r in results):.1f} s"
    )


if __name__ == "__main__":
    main()
