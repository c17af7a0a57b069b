"""Gateway overhead: localgpt in gateway mode vs. the fake upstream called directly vs. LiteLLM.

Each server under test runs pinned to CPU 0; the fake upstream and the load generator share
CPU 1, so the server's CPU time per request is its own. Scenarios: non-stream and 20-chunk
stream at concurrency 1 and 32. The same localgpt process also serves the Responses API
(stored, the default, and ``store: false``) and Anthropic Messages over the same upstream, so
each API's added latency reads against the same upstream call.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from bench import loadgen

Body = Callable[[str, bool], bytes]

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / ".bench"
LITELLM_VERSION = "1.108.7"
LITELLM_KEY = "sk-bench-0123456789abcdef0123456789abcdef"
SERVER_CPU = 0
CLIENT_CPU = 1


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve_command(config: Path, port: int) -> list[str]:
    """The installed CLI, as a user runs it, quiet so logging costs nothing measurable."""
    return [
        str(ROOT / ".venv" / "bin" / "localgpt"),
        "serve",
        "--config",
        str(config),
        "--port",
        str(port),
        "--log-level",
        "warning",
    ]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int, key: str = "VmRSS") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def wait_healthy(url: str, process: subprocess.Popen[bytes], timeout: float = 60) -> float:
    start = time.perf_counter()
    while time.perf_counter() - start < timeout:
        if process.poll() is not None:
            raise RuntimeError(f"{url}: process exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:
                if resp.status == 200:
                    return time.perf_counter() - start
        except OSError:
            time.sleep(0.005)
    raise RuntimeError(f"{url} not healthy after {timeout}s")


@contextmanager
def running(
    cmd: list[str], health: str, env: dict[str, str] | None = None, cpu: int | None = SERVER_CPU
) -> Iterator[tuple[subprocess.Popen[bytes], float]]:
    log = (WORK / f"{Path(cmd[0]).name}-{int(time.time() * 1000)}.log").open("wb")
    if cpu is not None:
        cmd = ["taskset", "-c", str(cpu), *cmd]
    start = time.perf_counter()
    process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        wait_healthy(health, process)
        startup = time.perf_counter() - start
        yield process, startup
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


@dataclass
class Row:
    target: str
    scenario: str
    concurrency: int
    rps: float
    p50_ms: float
    p99_ms: float
    first_chunk_p50_ms: float
    cpu_ms: float | None
    errors: int


def body(model: str, stream: bool) -> bytes:
    data: dict[str, object] = {
        "model": model,
        "messages": [{"role": "user", "content": "Say hello."}],
        "max_tokens": 32,
    }
    if stream:
        data["stream"] = True
    return json.dumps(data).encode()


def responses_body(store: bool) -> Body:
    def make(model: str, stream: bool) -> bytes:
        data: dict[str, object] = {
            "model": model,
            "input": "Say hello.",
            "max_output_tokens": 32,
            "store": store,
        }
        if stream:
            data["stream"] = True
        return json.dumps(data).encode()

    return make


def messages_body(model: str, stream: bool) -> bytes:
    return body(model, stream)  # the same fields: model, messages, max_tokens, stream


# Each API, as its clients call it, over the same upstream: (target, path, body, headers).
APIS: tuple[tuple[str, str, Body, dict[str, str]], ...] = (
    ("responses", "/v1/responses", responses_body(True), {}),
    ("responses nostore", "/v1/responses", responses_body(False), {}),
    ("messages", "/v1/messages", messages_body, {"anthropic-version": "2023-06-01"}),
)


def measure(
    target: str,
    port: int,
    model: str,
    pid: int | None,
    duration: float,
    headers: dict[str, str] | None = None,
    levels: tuple[int, ...] = (1, 32),
    path: str = "/v1/chat/completions",
    make_body: Body = body,
) -> list[Row]:
    rows = []
    for stream in (False, True):
        for concurrency in levels:
            payload = loadgen.build_request(path, make_body(model, stream), headers or {})
            before = cpu_seconds(pid) if pid else 0.0
            result = asyncio.run(loadgen.run(port, payload, concurrency, duration))
            used = cpu_seconds(pid) - before if pid else None
            n = max(result.count, 1)
            rows.append(
                Row(
                    target,
                    "stream" if stream else "non-stream",
                    concurrency,
                    result.count / result.elapsed,
                    loadgen.percentile(result.latencies, 50) * 1e3,
                    loadgen.percentile(result.latencies, 99) * 1e3,
                    loadgen.percentile(result.first_chunk, 50) * 1e3 if stream else float("nan"),
                    used / n * 1e3 if used is not None else None,
                    result.errors,
                )
            )
    return rows


def litellm_python() -> Path | None:
    """The LiteLLM proxy in its own venv under .bench/, installed on first use."""
    venv = WORK / "litellm-venv"
    python = venv / "bin" / "python"
    litellm = venv / "bin" / "litellm"
    if litellm.exists():
        return litellm
    print(f"installing litellm[proxy]=={LITELLM_VERSION} into {venv} (once)...", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    uv = shutil.which("uv") or str(Path(sys.executable).parent / "uv")
    done = subprocess.run(
        [
            uv,
            "pip",
            "install",
            "--python",
            str(python),
            "--quiet",
            f"litellm[proxy]=={LITELLM_VERSION}",
        ],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0 or not litellm.exists():
        print(f"LiteLLM could not be installed: {done.stderr[-500:]}")
        return None
    return litellm


def run(duration: float = 4.0, with_litellm: bool = True) -> dict[str, object]:
    WORK.mkdir(exist_ok=True)
    os.sched_setaffinity(0, {CLIENT_CPU})
    upstream_port = free_port()
    rows: list[Row] = []
    info: dict[str, object] = {}
    fake_cmd = [
        sys.executable,
        str(ROOT / "bench" / "fake_upstream.py"),
        "--port",
        str(upstream_port),
        "--chunks",
        "20",
    ]
    with running(fake_cmd, f"http://127.0.0.1:{upstream_port}/v1/models", cpu=CLIENT_CPU):
        rows += measure("upstream direct", upstream_port, "bench-model", None, duration)

        config = WORK / "gateway.toml"
        config.write_text(
            f'[agent]\ngateway_mode = true\ndefault_model = "openai/bench-model"\n'
            f'[providers.openai]\napi_key = "x"\nbase_url = "http://127.0.0.1:{upstream_port}/v1"\n'
        )
        port = free_port()
        cmd = serve_command(config, port)
        with running(cmd, f"http://127.0.0.1:{port}/health") as (proc, startup):
            time.sleep(1.0)
            info["localgpt"] = {"startup_s": startup, "idle_rss_mb": rss_mb(proc.pid)}
            rows += measure("localgpt", port, "openai/bench-model", proc.pid, duration)
            for target, path, make_body, headers in APIS:
                rows += measure(
                    target,
                    port,
                    "openai/bench-model",
                    proc.pid,
                    duration,
                    headers,
                    (1, 32),
                    path,
                    make_body,
                )
            info["localgpt"]["peak_rss_mb"] = rss_mb(proc.pid, "VmHWM")  # type: ignore[index]

        # The same requests with the assistant layer on: system prompt with the workspace
        # context, the assistant's tools offered, the tool loop (one model call here).
        assistant = WORK / "assistant.toml"
        assistant.write_text(
            config.read_text().replace("gateway_mode = true", "gateway_mode = false")
        )
        home = WORK / "assistant-home"
        shutil.rmtree(home, ignore_errors=True)
        env = {
            **os.environ,
            "HOME": str(home),
            "XDG_DATA_HOME": str(home / "data"),
            "XDG_CACHE_HOME": str(home / "cache"),
            "XDG_STATE_HOME": str(home / "state"),
        }
        port = free_port()
        cmd = serve_command(assistant, port)
        with running(cmd, f"http://127.0.0.1:{port}/health", env=env) as (proc, _):
            time.sleep(3.0)  # the memory index opens in the background
            rows += measure(
                "localgpt+assist", port, "openai/bench-model", proc.pid, duration, levels=(1,)
            )

        litellm = litellm_python() if with_litellm else None
        if litellm is not None:
            lconfig = WORK / "litellm.yaml"
            lconfig.write_text(
                "model_list:\n  - model_name: bench\n    litellm_params:\n"
                f"      model: openai/bench-model\n      api_base: http://127.0.0.1:{upstream_port}/v1\n"
                "      api_key: x\nlitellm_settings:\n  telemetry: false\n  drop_params: true\n"
            )
            env = {
                **os.environ,
                "LITELLM_LOCAL_MODEL_COST_MAP": "True",
                "LITELLM_LOCAL_ANTHROPIC_BETA_HEADERS": "True",
                "LITELLM_LOCAL_AUTOROUTER_PRESETS": "True",
                "LITELLM_LOCAL_BLOG_POSTS": "True",
                "LITELLM_TELEMETRY_DISABLED": "true",
                "LITELLM_LOG": "ERROR",
                "LITELLM_MASTER_KEY": LITELLM_KEY,
            }
            env.pop("DATABASE_URL", None)
            port = free_port()
            cmd = [
                str(litellm),
                "--config",
                str(lconfig),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--num_workers",
                "1",
            ]
            with running(cmd, f"http://127.0.0.1:{port}/health/liveliness", env=env) as (
                proc,
                startup,
            ):
                time.sleep(1.0)
                info["litellm"] = {"startup_s": startup, "idle_rss_mb": rss_mb(proc.pid)}
                rows += measure(
                    "litellm",
                    port,
                    "bench",
                    proc.pid,
                    duration,
                    {"Authorization": f"Bearer {LITELLM_KEY}"},
                )
    return {"rows": [r.__dict__ for r in rows], "servers": info}


def table(results: dict[str, object]) -> str:
    rows = [Row(**r) for r in results["rows"]]  # type: ignore[union-attr]
    direct = {(r.scenario, r.concurrency): r for r in rows if r.target == "upstream direct"}
    lines = [
        f"{'target':<16}{'scenario':<12}{'c':>3}{'req/s':>9}{'p50 ms':>9}{'+p50 ms':>9}"
        f"{'p99 ms':>9}{'1st chunk':>10}{'+1st':>7}{'cpu ms/req':>11}{'err':>5}"
    ]
    for r in rows:
        base = direct[(r.scenario, r.concurrency)]
        added = r.p50_ms - base.p50_ms if r.target != "upstream direct" else float("nan")
        added_first = (
            r.first_chunk_p50_ms - base.first_chunk_p50_ms
            if r.target != "upstream direct"
            else float("nan")
        )
        cpu = f"{r.cpu_ms:.3f}" if r.cpu_ms is not None else "-"
        lines.append(
            f"{r.target:<16}{r.scenario:<12}{r.concurrency:>3}{r.rps:>9.0f}{r.p50_ms:>9.2f}"
            f"{added:>9.2f}{r.p99_ms:>9.2f}{r.first_chunk_p50_ms:>10.2f}{added_first:>7.2f}"
            f"{cpu:>11}{r.errors:>5}"
        )
    for name, server in results["servers"].items():  # type: ignore[union-attr]
        details = ", ".join(f"{k} {v:.2f}" for k, v in server.items())
        lines.append(f"{name}: {details}")
    return "\n".join(lines)
