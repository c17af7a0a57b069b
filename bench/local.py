"""The embedded model: localgpt's API against the runtime called directly, in one run.

Same model, same threads, same prompt (gateway mode, so no assistant prompt is added), greedy
decoding so both produce the same tokens. Then, with the assistant layer on, the time to
first token of a request that shares the (cached) system-prompt prefix of an earlier one.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench.gateway import WORK, free_port, running

ROOT = Path(__file__).resolve().parent.parent
MODEL = "qwen2.5-coder-1.5b-instruct"
PROMPT = "Write a Python function that checks whether a number is prime, with comments."
MAX_TOKENS = 96
RUNS = 3


def model_path() -> Path:
    from localgpt.config import Paths
    from localgpt.providers.local_models import PACKAGED, prepare

    return prepare(PACKAGED[MODEL], Paths.from_env().cache_dir)


def direct(path: Path, threads: int) -> list[dict[str, float]]:
    """The runtime itself, streaming through a callback, as the server uses it."""
    import xllamacpp as xlc

    params = xlc.CommonParams()
    params.model.path = str(path)
    params.n_ctx = 8192
    params.cpuparams.n_threads = threads
    params.cpuparams_batch.n_threads = threads
    params.verbosity = 1
    socket_dir = tempfile.mkdtemp()
    params.hostnames = [os.path.join(socket_dir, "s.sock")]
    server = xlc.Server(params)
    request = {
        "messages": [{"role": "user", "content": PROMPT}],
        "max_tokens": MAX_TOKENS,
        "temperature": 0,
        "stream": True,
    }
    results = []
    for i in range(RUNS + 1):
        stamps: list[float] = []
        start = time.perf_counter()

        def on_chunk(chunk: dict[str, Any], stamps: list[float] = stamps) -> bool:
            choices = chunk.get("choices") or [{}]
            if (choices[0].get("delta") or {}).get("content"):
                stamps.append(time.perf_counter())
            return False

        server.handle_chat_completions(request, on_chunk)
        if i:  # the first run warms the prompt cache, as the API's first request would
            results.append(_rates(start, stamps))
    del server
    return results


def through_api(
    client: httpx.Client, url: str, model: str, prompt: str = PROMPT
) -> dict[str, float]:
    """One streamed request. The client is reused: building one loads CA certificates,
    which alone costs about 20 ms and would be counted as the server's."""
    body = {
        "model": model,
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": MAX_TOKENS,
        "temperature": 0,
        "stream": True,
    }
    stamps = []
    start = time.perf_counter()
    with client.stream("POST", f"{url}/v1/chat/completions", json=body) as resp:
        for line in resp.iter_lines():
            if line.startswith("data: {") and '"content":"' in line and '"content":""' not in line:
                stamps.append(time.perf_counter())
    return _rates(start, stamps)


def _rates(start: float, stamps: list[float]) -> dict[str, float]:
    tokens = len(stamps)
    span = stamps[-1] - stamps[0] if tokens > 1 else float("nan")
    return {
        "ttft_ms": (stamps[0] - start) * 1e3,
        "tokens": tokens,
        "tokens_per_s": (tokens - 1) / span if tokens > 1 else float("nan"),
    }


def _median(rows: list[dict[str, float]], key: str) -> float:
    return statistics.median(r[key] for r in rows)


def run(threads: int = 0) -> dict[str, Any]:
    threads = threads or os.cpu_count() or 1
    WORK.mkdir(exist_ok=True)
    path = model_path()
    print(f"local model {MODEL}, {threads} threads, {MAX_TOKENS} tokens, greedy", flush=True)
    results: dict[str, Any] = {"threads": threads, "model": MODEL}
    direct_rows = direct(path, threads)
    results["direct"] = direct_rows

    home = Path(tempfile.mkdtemp(prefix="localgpt-bench-"))
    for mode, gateway in (("gateway", True), ("assistant", False)):
        config = home / f"{mode}.toml"
        config.write_text(
            f'[agent]\ndefault_model = "local/{MODEL}"\ngateway_mode = {str(gateway).lower()}\n'
            f"[providers.local]\nthreads = {threads}\ncontext_size = 8192\n"
        )
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        cmd = [
            str(ROOT / ".venv" / "bin" / "localgpt"),
            "serve",
            "--config",
            str(config),
            "--port",
            str(port),
            "--log-level",
            "warning",
        ]
        env = {**os.environ, "XDG_CACHE_HOME": str(path.parent.parent.parent)}
        with running(cmd, f"{url}/health", env=env, cpu=None), httpx.Client(timeout=600) as client:
            model = f"local/{MODEL}"
            if gateway:
                through_api(client, url, model)  # load and warm the cache, as direct did
                results["api"] = [through_api(client, url, model) for _ in range(RUNS)]
            else:
                first = through_api(client, url, model, "Say hello.")
                second = through_api(client, url, model, "What is a closure in Python?")
                results["assistant"] = {
                    "first_ttft_ms": first["ttft_ms"],
                    "shared_prefix_ttft_ms": second["ttft_ms"],
                }
    return results


def table(results: dict[str, Any]) -> str:
    d, a = results["direct"], results["api"]
    d_rate, a_rate = _median(d, "tokens_per_s"), _median(a, "tokens_per_s")
    d_ttft, a_ttft = _median(d, "ttft_ms"), _median(a, "ttft_ms")
    lines = [
        f"{'path':<22}{'tokens/s':>10}{'TTFT ms':>10}{'tokens':>8}",
        f"{'runtime direct':<22}{d_rate:>10.2f}{d_ttft:>10.1f}{_median(d, 'tokens'):>8.0f}",
        f"{'localgpt API':<22}{a_rate:>10.2f}{a_ttft:>10.1f}{_median(a, 'tokens'):>8.0f}",
        f"ratio of tokens/s: {a_rate / d_rate:.3f}; added TTFT: {a_ttft - d_ttft:+.1f} ms",
        f"assistant layer on: first request TTFT {results['assistant']['first_ttft_ms']:.0f} ms,"
        f" a second request sharing the system-prompt prefix "
        f"{results['assistant']['shared_prefix_ttft_ms']:.0f} ms",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    out = run(int(sys.argv[1]) if len(sys.argv) > 1 else 0)
    print(table(out))
    (WORK / "local.json").write_text(json.dumps(out, indent=2))
