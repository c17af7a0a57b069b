"""``make bench``: every benchmark section, printed as tables and saved to .bench/results.json."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import gateway, local, memory, shared

SECTIONS = ("gateway", "local", "memory", "shared")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", default=",".join(SECTIONS), help="comma-separated sections")
    parser.add_argument("--duration", type=float, default=4.0, help="seconds per scenario")
    parser.add_argument("--no-litellm", action="store_true", help="skip the LiteLLM comparison")
    parser.add_argument("--threads", type=int, default=0, help="local model threads (0: all)")
    args = parser.parse_args()
    results: dict[str, object] = {}
    for section in args.only.split(","):
        if section == "gateway":
            print(
                "== gateway: localgpt (gateway mode) vs. upstream direct vs. LiteLLM ==", flush=True
            )
            results["gateway"] = gateway.run(args.duration, not args.no_litellm)
            print(gateway.table(results["gateway"]), flush=True)  # type: ignore[arg-type]
        elif section == "local":
            print("\n== local model: localgpt API vs. the runtime called directly ==", flush=True)
            results["local"] = local.run(args.threads)
            print(local.table(results["local"]), flush=True)
        elif section == "memory":
            print("\n== memory: indexing, unchanged reindex, search latency ==", flush=True)
            results["memory"] = memory.run()
            print(memory.table(results["memory"]), flush=True)
        elif section == "shared":
            print(
                "\n== shared backends: workers on Redis + PostgreSQL; pgvector vs SQLite ==",
                flush=True,
            )
            results["shared"] = shared.run(args.duration)
            print(shared.table(results["shared"]), flush=True)
    out = gateway.WORK / "results.json"
    out.write_text(json.dumps(results, indent=2))
    print(f"\nsaved {out}")


if __name__ == "__main__":
    main()
