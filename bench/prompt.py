"""What the assistant's prompt costs on the default model: its parts in tokens, the first
answer after start, and the median short turn.

Tokens are counted by the model's own template and tokenizer, on a fresh workspace (its
starter files only), for the prompt of "Hello." with the assistant's tools offered: the
system message (identity, safety, workspace context), the tool listing, the decision rule
and the user's turn. Times are measured through the API on a fresh server: the first
answer once ``/ready`` says the model is loaded, then the median of ``--turns`` short turns,
each a new conversation.

``PYTHONPATH=<other checkout>/src`` measures another version of the code the same way.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
MODEL = "local/qwen2.5-coder-1.5b-instruct"
QUESTIONS = [
    "Hello.",
    "How are you?",
    "What is 2 + 2?",
    "Name a colour.",
    "Thanks!",
    "What day comes after Monday?",
    "Say something nice.",
    "Is water wet?",
    "Give me one word.",
    "Good night.",
]


async def prompt_parts(home: Path) -> dict[str, int]:
    """The prompt of "Hello." in tokens, part by part (cumulative counts, differenced)."""
    import os

    os.environ.update(
        HOME=str(home),
        XDG_DATA_HOME=str(home / "data"),
        XDG_CACHE_HOME=str(home / "cache"),
        XDG_STATE_HOME=str(home / "state"),
        XDG_CONFIG_HOME=str(home / "config"),
    )
    from localgpt.agent.agent import Agent
    from localgpt.agent.tools import Permissions
    from localgpt.config import Config
    from localgpt.memory.manager import Memory
    from localgpt.providers.local import decisions as local_tools
    from localgpt.providers.router import Router

    config = Config()
    router = Router(config)
    memory = Memory(config)
    memory.workspace.ensure()
    agent = Agent(config, router, memory)
    route = router.resolve(MODEL)
    provider: Any = router.provider(route.provider)
    user = [{"role": "user", "content": "Hello."}]
    toolbox = agent.toolbox(Permissions(), {})
    withheld = getattr(agent, "_withheld", None)  # the tools this turn is not offered
    if toolbox is not None and withheld is not None:
        from localgpt.agent.recall import MemoryTurn

        toolbox = toolbox.only(set(toolbox.handlers) - withheld(MODEL, MemoryTurn(), user))
    system = agent.prepare([], toolbox)
    count = provider.count_tokens
    parts = {"system message": await count(route.model, system)}
    if toolbox is not None and toolbox.definitions:
        listing = local_tools.with_listing(
            [*system, *user], local_tools.tool_listing(toolbox.definitions)
        )
        rule = [*listing, {"role": "system", "content": local_tools.decision_rule(None)}]
        answer = await count(route.model, listing)
        parts["tool listing"] = await count(route.model, listing[:-1]) - parts["system message"]
        parts["user turn"] = answer - parts["system message"] - parts["tool listing"]
        parts["decision rule"] = await count(route.model, rule) - answer
        parts["decision prompt"] = answer + parts["decision rule"]
    else:  # no tools offered: no listing, no decision
        answer = await count(route.model, [*system, *user])
        parts.update({"tool listing": 0, "user turn": answer - parts["system message"]})
        parts.update({"decision rule": 0, "decision prompt": 0})
    parts["answer prompt"] = answer
    await memory.aclose()
    await router.aclose()
    return parts


def timings(home: Path, turns: int) -> dict[str, Any]:
    from tests.conftest import free_port, isolated_env

    port = free_port()
    models = Path.home() / ".cache" / "localgpt" / "models"
    if models.is_dir():
        (home / "cache" / "localgpt").mkdir(parents=True, exist_ok=True)
        link = home / "cache" / "localgpt" / "models"
        if not link.exists():
            link.symlink_to(models)
    log = (home / "server.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "localgpt", "serve", "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=isolated_env(home),
        cwd=home,
    )
    url = f"http://127.0.0.1:{port}"
    started = time.monotonic()
    try:
        while True:
            if process.poll() is not None:
                raise SystemExit((home / "server.log").read_text())
            try:
                if httpx.get(f"{url}/ready", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        ready = time.monotonic() - started
        seconds = []
        for question in QUESTIONS[: turns + 1]:
            t = time.perf_counter()
            resp = httpx.post(
                f"{url}/v1/chat/completions",
                json={"model": MODEL, "messages": [{"role": "user", "content": question}]},
                timeout=600,
            )
            resp.raise_for_status()
            seconds.append(time.perf_counter() - t)
    finally:
        process.terminate()
        process.wait(30)
    return {
        "ready_s": round(ready, 1),
        "first_answer_s": round(seconds[0], 2),
        "median_turn_s": round(statistics.median(seconds[1:]), 2),
        "turns": seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--turns", type=int, default=9, help="short turns after the first")
    parser.add_argument("--out", default=str(ROOT / ".bench" / "prompt.json"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="localgpt-prompt-") as tmp:
        parts = asyncio.run(prompt_parts(Path(tmp) / "count"))
    for name, tokens in parts.items():
        print(f"{name:<18}{tokens:>6} tokens", flush=True)
    with tempfile.TemporaryDirectory(prefix="localgpt-prompt-") as tmp:
        times = timings(Path(tmp), args.turns)
    print(
        f"ready {times['ready_s']} s after start; first answer {times['first_answer_s']} s; "
        f"median short turn {times['median_turn_s']} s"
    )
    out = Path(args.out)
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"tokens": parts, **times}, indent=2))


if __name__ == "__main__":
    main()
