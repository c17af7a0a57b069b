"""Tool-use evaluation: does the model pick the right tool (or none), with valid arguments?

Runs every case of ``data/tool_eval.json`` through localgpt's own API with the official
``openai`` client, at temperature 0, and prints the share of correct tool choices and of
valid arguments (required keys present, types and enums as the schema says). By default it
starts a server on the default local model; ``--url`` points it at a running one.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import openai

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TYPES = {
    "string": str,
    "number": (int, float),
    "integer": int,
    "boolean": bool,
    "object": dict,
    "array": list,
}


def valid_arguments(raw: str, schema: dict[str, Any]) -> bool:
    try:
        args = json.loads(raw)
    except json.JSONDecodeError:
        return False
    if not isinstance(args, dict):
        return False
    props = schema.get("properties", {})
    if any(key not in args for key in schema.get("required", [])):
        return False
    for key, value in args.items():
        spec = props.get(key)
        if spec is None:
            return False
        if "type" in spec and not isinstance(value, TYPES[spec["type"]]):
            return False
        if "enum" in spec and value not in spec["enum"]:
            return False
    return True


def evaluate(client: openai.OpenAI, model: str, data: dict[str, Any]) -> dict[str, Any]:
    tools = data["tools"]
    schemas = {t["function"]["name"]: t["function"]["parameters"] for t in tools}
    rows = []
    for case in data["cases"]:
        start = time.perf_counter()
        resp = client.chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": case["prompt"]}],
            tools=tools,
            temperature=0,
            max_tokens=64,
        )
        calls = resp.choices[0].message.tool_calls or []
        chosen = calls[0].function.name if calls else None
        valid = all(valid_arguments(c.function.arguments, schemas[c.function.name]) for c in calls)
        matches = (
            bool(calls)
            and all(
                expected in str(json.loads(calls[0].function.arguments).get(key, "")).lower()
                for key, expected in case.get("expect", {}).items()
            )
            if valid
            else False
        )
        rows.append(
            {
                "prompt": case["prompt"],
                "expected": case["tool"],
                "chosen": chosen,
                "correct": chosen == case["tool"],
                "valid": valid,
                "arguments": calls[0].function.arguments if calls else None,
                "values_match": matches if case["tool"] else None,
                "seconds": time.perf_counter() - start,
            }
        )
        mark = "ok " if chosen == case["tool"] else "BAD"
        print(
            f"  {mark} {rows[-1]['seconds']:5.1f}s  {case['prompt'][:60]:<60} -> {chosen}",
            flush=True,
        )
    tool_rows = [r for r in rows if r["expected"]]
    called = [r for r in rows if r["chosen"]]
    return {
        "model": model,
        "cases": len(rows),
        "correct_choice": sum(r["correct"] for r in rows) / len(rows),
        "valid_arguments": sum(r["valid"] for r in called) / max(len(called), 1),
        "values_match": sum(bool(r["values_match"]) for r in tool_rows) / max(len(tool_rows), 1),
        "rows": rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", help="a running server (default: start one)")
    parser.add_argument("--model", default="local/qwen2.5-coder-1.5b-instruct")
    parser.add_argument("--threads", type=int, default=0, help="local threads (0: all cores)")
    args = parser.parse_args()
    data = json.loads((ROOT / "bench" / "data" / "tool_eval.json").read_text())
    server = None
    url = args.url
    if url is None:
        import tempfile

        from tests.conftest import start_server

        home = Path(tempfile.mkdtemp(prefix="localgpt-eval-"))
        config = f'[agent]\ndefault_model = "{args.model}"\n[providers.local]\n'
        if args.threads:
            config += f"threads = {args.threads}\n"
        server = start_server(config, home)
        url = server.url
    try:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0, timeout=600)
        print(
            f"tool-use evaluation: {len(data['cases'])} cases, {len(data['tools'])} tools, "
            f"{args.model}"
        )
        result = evaluate(client, args.model, data)
    finally:
        if server is not None:
            server.stop()
    print(
        f"correct tool choices: {result['correct_choice']:.0%} "
        f"({round(result['correct_choice'] * result['cases'])}/{result['cases']})"
    )
    print(f"valid arguments:      {result['valid_arguments']:.0%}")
    print(f"expected values:      {result['values_match']:.0%} of tool cases")
    out = ROOT / ".bench" / "eval_tools.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
