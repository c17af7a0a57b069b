"""``make load``: many concurrent streaming clients for a minute (not part of CI).

1. 500 streaming clients against the fake upstream, through localgpt in gateway mode.
2. 50 streaming clients on the embedded model, its queue configured to hold them all.

Each prints completed requests, errors, p50/p99 time to first chunk and the server's peak
resident memory; the second also the time requests waited for a model slot (from /metrics).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import loadgen
from bench.gateway import WORK, free_port, rss_mb, running, serve_command

ROOT = Path(__file__).resolve().parent.parent


def serve(config: str, home: Path) -> tuple[list[str], str, dict[str, str]]:
    home.mkdir(parents=True, exist_ok=True)
    path = home / "config.toml"
    path.write_text(config)
    port = free_port()
    cmd = serve_command(path, port)
    env = {**os.environ, "XDG_DATA_HOME": str(home / "data"), "XDG_STATE_HOME": str(home)}
    return cmd, f"http://127.0.0.1:{port}", env


def wait_ready(url: str, timeout: float = 600) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            with urllib.request.urlopen(f"{url}/ready", timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError("server not ready")


def scenario(
    url: str, pid: int, model: str, clients: int, duration: float, max_tokens: int
) -> dict[str, Any]:
    body = json.dumps(
        {
            "model": model,
            "stream": True,
            "max_tokens": max_tokens,
            "messages": [{"role": "user", "content": "Say hello."}],
        }
    ).encode()
    payload = loadgen.build_request("/v1/chat/completions", body, {})
    port = int(url.rsplit(":", 1)[1])
    result = asyncio.run(loadgen.run(port, payload, clients, duration, warmup=0.0))
    return {
        "clients": clients,
        "seconds": round(result.elapsed, 1),
        "completed": result.count,
        "errors": result.errors,
        "req_per_s": round(result.count / result.elapsed, 1),
        "first_chunk_p50_ms": round(loadgen.percentile(result.first_chunk, 50) * 1e3, 1),
        "first_chunk_p99_ms": round(loadgen.percentile(result.first_chunk, 99) * 1e3, 1),
        "peak_rss_mb": round(rss_mb(pid, "VmHWM"), 1),
    }


def queue_wait(url: str) -> dict[str, float]:
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    found = {
        m[0]: float(m[1])
        for m in re.findall(
            r'localgpt_queue_wait_seconds_(sum|count)\{provider="local"\} (\S+)', text
        )
    }
    count = found.get("count", 0.0)
    return {
        "waits": count,
        "mean_wait_s": round(found.get("sum", 0.0) / count, 2) if count else 0.0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=float, default=60)
    parser.add_argument("--gateway-clients", type=int, default=500)
    parser.add_argument("--local-clients", type=int, default=50)
    parser.add_argument("--local-model", default="local/qwen2.5-coder-1.5b-instruct")
    args = parser.parse_args()
    WORK.mkdir(exist_ok=True)
    results: dict[str, Any] = {}
    home = Path(tempfile.mkdtemp(prefix="localgpt-load-"))

    upstream = free_port()
    fake = [sys.executable, str(ROOT / "bench" / "fake_upstream.py"), "--port", str(upstream)]
    with running(fake, f"http://127.0.0.1:{upstream}/v1/models", cpu=None):
        cmd, url, env = serve(
            f'[agent]\ngateway_mode = true\ndefault_model = "openai/bench-model"\n'
            f'[providers.openai]\nbase_url = "http://127.0.0.1:{upstream}/v1"\napi_key = "x"\n'
            f"max_concurrency = {args.gateway_clients}\nmax_queue = {args.gateway_clients}\n",
            home / "gateway",
        )
        with running(cmd, f"{url}/health", env=env, cpu=None) as (proc, _):
            print(
                f"{args.gateway_clients} streaming clients, fake upstream, "
                f"{args.duration:.0f} s...",
                flush=True,
            )
            results["gateway"] = scenario(
                url, proc.pid, "openai/bench-model", args.gateway_clients, args.duration, 32
            )
            print(json.dumps(results["gateway"]), flush=True)

    cmd, url, env = serve(
        f'[agent]\ngateway_mode = true\ndefault_model = "{args.local_model}"\n'
        f"[providers.local]\nparallel = 2\nmax_queue = {args.local_clients}\n",
        home / "local",
    )
    with running(cmd, f"{url}/health", env=env, cpu=None) as (proc, _):
        wait_ready(url)
        print(
            f"{args.local_clients} streaming clients, {args.local_model}, {args.duration:.0f} s...",
            flush=True,
        )
        results["local"] = scenario(
            url, proc.pid, args.local_model, args.local_clients, args.duration, 8
        )
        results["local"].update(queue_wait(url))
        print(json.dumps(results["local"]), flush=True)
    (WORK / "load.json").write_text(json.dumps(results, indent=2))
    print(f"saved {WORK / 'load.json'}")


if __name__ == "__main__":
    main()
