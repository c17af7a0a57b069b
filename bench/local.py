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

from bench.gateway import WORK, free_port, running, serve_command

ROOT = Path(__file__).resolve().parent.parent
MODEL = "qwen2.5-coder-1.5b-instruct"
PROMPT = "Write a Python function that checks whether a number is prime, with comments."
MAX_TOKENS = 96
RUNS = 5
TTFT_PAIRS = 25


def model_path() -> Path:
    from localgpt.config import Paths
    from localgpt.providers.local.models import PACKAGED, prepare

    return prepare(PACKAGED[MODEL], Paths.from_env().cache_dir)


class Direct:
    """The runtime itself, streaming through a callback, as the server drives it."""

    def __init__(self, path: Path, threads: int) -> None:
        import xllamacpp as xlc

        params = xlc.CommonParams()
        params.model.path = str(path)
        params.n_ctx = 8192
        params.cpuparams.n_threads = threads
        params.cpuparams_batch.n_threads = threads
        params.verbosity = 1
        self._dir = tempfile.mkdtemp()
        params.hostnames = [os.path.join(self._dir, "s.sock")]
        self.server = xlc.Server(params)

    def run(self, max_tokens: int = MAX_TOKENS) -> dict[str, float]:
        request = {
            "messages": [{"role": "user", "content": PROMPT}],
            "max_tokens": max_tokens,
            "temperature": 0,
            "stream": True,
        }
        stamps: list[float] = []

        def on_chunk(chunk: dict[str, Any]) -> bool:
            choices = chunk.get("choices") or [{}]
            if (choices[0].get("delta") or {}).get("content"):
                stamps.append(time.perf_counter())
            return False

        start = time.perf_counter()
        self.server.handle_chat_completions(request, on_chunk)
        return _rates(start, stamps)


def through_api(
    client: httpx.Client, url: str, model: str, prompt: str = PROMPT, max_tokens: int = MAX_TOKENS
) -> dict[str, float]:
    """One streamed request. The client is reused: building one loads CA certificates,
    which alone costs about 20 ms and would be counted as the server's."""
    body = {
        "model": model,
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": max_tokens,
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


def _serve(
    home: Path, path: Path, threads: int, gateway: bool
) -> tuple[list[str], str, dict[str, str]]:
    mode = "gateway" if gateway else "assistant"
    config = home / f"{mode}.toml"
    config.write_text(
        f'[agent]\ndefault_model = "local/{MODEL}"\ngateway_mode = {str(gateway).lower()}\n'
        f"[providers.local]\nthreads = {threads}\ncontext_size = 8192\n"
    )
    port = free_port()
    cmd = serve_command(config, port)
    env = {
        **os.environ,
        "XDG_CACHE_HOME": str(path.parent.parent.parent),
        "XDG_DATA_HOME": str(home / mode / "data"),
        "XDG_STATE_HOME": str(home / mode),
    }
    return cmd, f"http://127.0.0.1:{port}", env


def run(threads: int = 0) -> dict[str, Any]:
    """Direct and API runs alternate, so both see the same machine: a shared 2-core box
    drifts by tens of percent from minute to minute."""
    threads = threads or os.cpu_count() or 1
    WORK.mkdir(exist_ok=True)
    path = model_path()
    print(f"local model {MODEL}, {threads} threads, {MAX_TOKENS} tokens, greedy", flush=True)
    results: dict[str, Any] = {"threads": threads, "model": MODEL, "direct": [], "api": []}
    home = Path(tempfile.mkdtemp(prefix="localgpt-bench-"))
    model = f"local/{MODEL}"
    direct = Direct(path, threads)
    cmd, url, env = _serve(home, path, threads, gateway=True)
    with running(cmd, f"{url}/health", env=env, cpu=None), httpx.Client(timeout=600) as client:
        direct.run()
        through_api(client, url, model)  # both prompt caches warm
        for _ in range(RUNS):
            time.sleep(0.5)  # let the other runtime's spinning threads settle
            results["direct"].append(direct.run())
            time.sleep(0.5)
            results["api"].append(through_api(client, url, model))
        # Time to first token is tens of milliseconds with a spread of tens more from run to
        # run on a shared machine: many short pairs measure the difference, not the noise.
        results["ttft_pairs"] = []
        for _ in range(TTFT_PAIRS):
            time.sleep(0.2)
            d = direct.run(max_tokens=1)["ttft_ms"]
            time.sleep(0.2)
            a = through_api(client, url, model, max_tokens=1)["ttft_ms"]
            results["ttft_pairs"].append((d, a))
    del direct
    cmd, url, env = _serve(home, path, threads, gateway=False)
    with running(cmd, f"{url}/health", env=env, cpu=None), httpx.Client(timeout=600) as client:
        started = time.perf_counter()
        while client.get(f"{url}/ready").status_code != 200:
            time.sleep(0.1)
        results["assistant_ready_s"] = time.perf_counter() - started
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
    pairs = results["ttft_pairs"]
    added = statistics.median(api - direct for direct, api in pairs)
    lines = [
        f"{'path':<22}{'tokens/s':>10}{'TTFT ms':>10}{'tokens':>8}",
        f"{'runtime direct':<22}{d_rate:>10.2f}{d_ttft:>10.1f}{_median(d, 'tokens'):>8.0f}",
        f"{'localgpt API':<22}{a_rate:>10.2f}{a_ttft:>10.1f}{_median(a, 'tokens'):>8.0f}",
        f"ratio of tokens/s: {a_rate / d_rate:.3f}; added TTFT: {a_ttft - d_ttft:+.1f} ms",
        f"added TTFT over {len(pairs)} one-token pairs: median {added:+.1f} ms "
        f"(direct median {statistics.median(p[0] for p in pairs):.1f} ms)",
        f"assistant layer on: ready (model loaded, prompt warm) {results['assistant_ready_s']:.1f}"
        f" s after /health; first request TTFT {results['assistant']['first_ttft_ms']:.0f} ms,"
        f" a second request sharing the system-prompt prefix "
        f"{results['assistant']['shared_prefix_ttft_ms']:.0f} ms",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    out = run(int(sys.argv[1]) if len(sys.argv) > 1 else 0)
    print(table(out))
    (WORK / "local.json").write_text(json.dumps(out, indent=2))
