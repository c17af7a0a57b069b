"""End-to-end assistant evaluation: is a fact told in one chat, or written in a note, recalled
in the next chat, on the default model, with no configuration?

A fresh HOME, a workspace holding the hand-written notes of ``data/assistant_eval.json``
among 170 generated distractor notes (``eval_memory.generated_notes``), and a server started
with no config file: the embedded default model, the assistant layer on. Every turn is a new
conversation through the OpenAI API with the official client:

1. each ``told`` fact is said in a conversation of its own;
2. each question (about a told fact or a note) is asked in a new one, and counts as recalled
   when the answer holds one of its expected strings;
3. a few ``chat`` turns with no memory behind them (some with a small ``max_tokens``).

Every answer is checked for leaked internal text (tool-decision JSON, tool-call markup). It
prints facts recalled out of asked (all, tuning part, held-out part), leaks and the median
turn time. ``--url`` evaluates a running server instead (its memory must hold the notes).
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import openai

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DATA = ROOT / "bench" / "data" / "assistant_eval.json"
WORK = ROOT / ".bench"

# Internal text that must never reach a user: the local tool decision's JSON, tool-call
# markup of chat templates, and calls written out as text.
LEAK = re.compile(
    r"""\{\s*"(tool|name|function)"\s*:"""  # {"tool": ...}, {"name": ...}
    r"""|"arguments"\s*:"""
    r"""|</?tool_(call|response)>"""
    r"""|\b(memory_search|memory_get|memory_save|web_fetch)\s*\(""",
    re.IGNORECASE,
)


def leaked(text: str) -> bool:
    return LEAK.search(text) is not None


def normalise(text: str) -> str:
    text = text.lower().replace("*", "").replace("_", " ").replace("`", "")
    text = re.sub(r"(\d+)(st|nd|rd|th)\b", r"\1", text)
    return " ".join(text.split())


def recalled(answer: str, expect: list[str]) -> bool:
    found = normalise(answer)
    return any(normalise(e) in found for e in expect)


def write_workspace(root: Path, notes: list[dict[str, Any]]) -> None:
    """The hand-written notes among generated distractors."""
    from bench.eval_memory import SEED, generated_notes

    files = generated_notes(SEED, {n["path"] for n in notes})
    for note in notes:
        if note.get("daily"):
            day = Path(note["path"]).stem
            files[note["path"]] = f"# {day}\n\n- Rain in the morning.\n{note['text']}\n"
        else:
            files[note["path"]] = note["text"]
    for relative, text in files.items():
        target = root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)


class Turns:
    def __init__(self, client: openai.OpenAI, model: str) -> None:
        self.client = client
        self.model = model
        self.rows: list[dict[str, Any]] = []

    def say(self, kind: str, text: str, **extra: Any) -> str:
        """One new conversation of one user message; the answer's text."""
        started = time.perf_counter()
        error = None
        try:
            resp = self.client.chat.completions.create(
                model=self.model, messages=[{"role": "user", "content": text}], **extra
            )
            answer = resp.choices[0].message.content or ""
            usage = resp.usage.model_dump() if resp.usage else None
            finish = resp.choices[0].finish_reason
        except openai.APIError as exc:
            answer, usage, finish, error = "", None, None, str(exc)
        seconds = time.perf_counter() - started
        row = {
            "kind": kind,
            "say": text,
            "answer": answer,
            "finish_reason": finish,
            "usage": usage,
            "seconds": round(seconds, 2),
            "leaked": leaked(answer),
            "error": error,
            **{k: v for k, v in extra.items() if k == "max_tokens"},
        }
        self.rows.append(row)
        mark = "LEAK " if row["leaked"] else ("ERR  " if error else "")
        shown = " ".join(answer.split())[:90]
        print(f"  {seconds:5.1f}s {mark}{kind:<5} {text[:50]!r:<52} -> {shown}", flush=True)
        return answer


def evaluate(client: openai.OpenAI, model: str, data: dict[str, Any]) -> dict[str, Any]:
    turns = Turns(client, model)
    for fact in data["told"]:
        turns.say("tell", fact["say"])
    questions = []
    for item in [*data["told"], *data["notes"]]:
        kind = "told" if "say" in item else "note"
        answer = turns.say(kind, item["ask"])
        questions.append(
            {
                "kind": kind,
                "ask": item["ask"],
                "holdout": bool(item.get("holdout")),
                "recalled": recalled(answer, item["expect"]),
            }
        )
    for chat in data["chat"]:
        extra = {"max_tokens": chat["max_tokens"]} if "max_tokens" in chat else {}
        turns.say("chat", chat["say"], **extra)

    def share(rows: list[dict[str, Any]]) -> dict[str, Any]:
        return {"recalled": sum(r["recalled"] for r in rows), "asked": len(rows)}

    return {
        "model": model,
        "all": share(questions),
        "tune": share([q for q in questions if not q["holdout"]]),
        "holdout": share([q for q in questions if q["holdout"]]),
        "told": share([q for q in questions if q["kind"] == "told"]),
        "notes": share([q for q in questions if q["kind"] == "note"]),
        "leaks": sum(r["leaked"] for r in turns.rows),
        "errors": sum(r["error"] is not None for r in turns.rows),
        "turns": len(turns.rows),
        "median_turn_s": statistics.median(r["seconds"] for r in turns.rows),
        "questions": questions,
        "rows": turns.rows,
    }


def start(home: Path, notes: list[dict[str, Any]], threads: int) -> Any:
    """A server with no config file in a fresh HOME (``threads``: 0 keeps the default)."""
    import subprocess

    from tests.conftest import free_port, isolated_env

    env = isolated_env(home)
    # The packaged model is joined once per cache folder: share the user's copy, if any.
    models = Path.home() / ".cache" / "localgpt" / "models"
    if models.is_dir():
        (home / "cache" / "localgpt").mkdir(parents=True)
        (home / "cache" / "localgpt" / "models").symlink_to(models)
    write_workspace(home / "data" / "localgpt" / "workspace", notes)
    args = [sys.executable, "-m", "localgpt", "serve", "--port", str(free_port())]
    if threads:
        config = home / "config.toml"
        config.write_text(f"[providers.local]\nthreads = {threads}\n")
        args += ["--config", str(config)]
    log = (home / "server.log").open("wb")
    process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=home)
    url = f"http://127.0.0.1:{args[args.index('--port') + 1]}"
    started = time.monotonic()
    while True:
        if process.poll() is not None:
            raise SystemExit(f"server exited:\n{(home / 'server.log').read_text()}")
        try:
            if httpx.get(f"{url}/ready", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if time.monotonic() - started > 900:
            process.kill()
            raise SystemExit("server not ready after 900 s")
        time.sleep(0.5)
    # The notes must be in the index before the first question.
    httpx.post(f"{url}/api/memory/reindex", json={}, timeout=600).raise_for_status()
    print(f"server ready after {time.monotonic() - started:.1f} s", flush=True)
    return process, url


def summary(result: dict[str, Any]) -> str:
    def pct(part: dict[str, Any]) -> str:
        return f"{part['recalled']}/{part['asked']} ({part['recalled'] / part['asked']:.0%})"

    return "\n".join(
        [
            f"recalled:     {pct(result['all'])}",
            f"  told facts: {pct(result['told'])}   notes: {pct(result['notes'])}",
            f"  tuning:     {pct(result['tune'])}   held out: {pct(result['holdout'])}",
            f"leaks:        {result['leaks']} of {result['turns']} answers",
            f"errors:       {result['errors']}",
            f"median turn:  {result['median_turn_s']:.1f} s",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", help="a running server (default: start one, fresh)")
    parser.add_argument("--model", default="local/qwen2.5-coder-1.5b-instruct")
    parser.add_argument("--threads", type=int, default=0, help="local threads (0: default)")
    parser.add_argument("--out", default=str(WORK / "eval_assistant.json"))
    args = parser.parse_args()
    data = json.loads(DATA.read_text())
    process = None
    url = args.url
    with tempfile.TemporaryDirectory(prefix="localgpt-eval-assistant-") as tmp:
        if url is None:
            process, url = start(Path(tmp), data["notes"], args.threads)
        try:
            client = openai.OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0, timeout=900)
            print(
                f"assistant evaluation: {len(data['told'])} told facts, {len(data['notes'])} "
                f"notes, {len(data['chat'])} chat turns, {args.model}",
                flush=True,
            )
            result = evaluate(client, args.model, data)
        finally:
            if process is not None:
                process.terminate()
                process.wait(30)
                log = Path(tmp) / "server.log"
                Path(args.out).with_suffix(".server.log").write_bytes(log.read_bytes())
    print(summary(result))
    out = Path(args.out)
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"saved {out}")


if __name__ == "__main__":
    main()
