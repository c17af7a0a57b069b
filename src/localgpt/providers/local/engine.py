"""One loaded GGUF model, driven from asyncio: llama.cpp in-process through ``xllamacpp``.

llama.cpp's own HTTP listener, which the runtime always opens, is bound to a unix socket in a
private (0700) folder and needs a random key: nothing else on the machine can reach it. Each
generation runs in a worker thread; tokens reach the event loop through a queue, and a client
that disconnects stops its generation at the next token. ``parallel`` requests run at once,
the rest wait in asyncio, where cancelling them costs nothing.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import shutil
import tempfile
import threading
from collections.abc import AsyncGenerator, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from localgpt.config import ProviderConfig
from localgpt.providers.errors import ProviderError
from localgpt.providers.events import StreamEvent
from localgpt.providers.local.models import ModelError
from localgpt.providers.messages import ChatMessage
from localgpt.providers.openai_format import parse_chunk

log = logging.getLogger("localgpt.providers.local")
Chunks = AsyncGenerator[list[dict[str, Any]], None]


_DONE = object()


def _xllamacpp() -> Any:
    import xllamacpp

    return xllamacpp


class Engine:
    """One loaded model. Thread-safe calls into llama.cpp, driven from asyncio."""

    def __init__(self, name: str, path: Path, config: ProviderConfig) -> None:
        xlc = _xllamacpp()
        self.name = name
        self.parallel = config.parallel
        threads = config.threads or os.cpu_count() or 1
        self._socket_dir = tempfile.mkdtemp(prefix="localgpt-llama-")  # mode 0700
        params = xlc.CommonParams()
        params.model.path = str(path)
        params.n_ctx = config.context_size * config.parallel
        params.n_parallel = config.parallel
        params.cpuparams.n_threads = threads
        params.cpuparams_batch.n_threads = threads
        params.use_jinja = True
        params.verbosity = 1  # errors only: llama.cpp writes straight to stderr
        params.cache_ram_mib = 1024
        # The runtime always opens llama.cpp's HTTP server: keep it off the network.
        self._socket = os.path.join(self._socket_dir, "llama.sock")
        self._key = secrets.token_hex(16)
        params.hostnames = [self._socket]
        params.api_keys = [self._key]
        params.endpoint_slots = False
        try:
            self._server = xlc.Server(params)
        except RuntimeError as exc:
            shutil.rmtree(self._socket_dir, ignore_errors=True)
            raise ModelError(f"local model {name} could not be loaded from {path}: {exc}") from None
        self._executor = ThreadPoolExecutor(self.parallel, thread_name_prefix=f"llama-{name}")
        self.template_takes_tools: bool | None = None  # learnt on the first tool request
        self._slots: asyncio.Semaphore | None = None

    async def run(
        self, method: str, request: dict[str, Any]
    ) -> AsyncGenerator[list[dict[str, Any]], None]:
        """Stream the runtime's chunks for one request, in batches of what is ready."""
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.parallel)
        slots = self._slots
        await slots.acquire()
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()
        stop = threading.Event()
        handler: Callable[..., Any] = getattr(self._server, method)

        produced = 0

        def on_chunk(chunk: dict[str, Any]) -> bool:
            nonlocal produced
            if stop.is_set():
                return True  # tells llama.cpp to stop generating
            produced += 1
            loop.call_soon_threadsafe(queue.put_nowait, chunk)
            return False

        def work() -> None:
            try:
                handler(request, on_chunk)
            except (ValueError, RuntimeError) as exc:
                loop.call_soon_threadsafe(queue.put_nowait, exc)
            finally:
                loop.call_soon_threadsafe(queue.put_nowait, _DONE)

        future = loop.run_in_executor(self._executor, work)
        future.add_done_callback(lambda _f: slots.release())
        completed = False
        try:
            while True:
                item = await queue.get()
                batch: list[dict[str, Any]] = []
                while True:
                    if item is _DONE:
                        completed = True
                        if batch:
                            yield batch
                        return
                    if isinstance(item, Exception):
                        raise ProviderError(
                            f"local model {self.name} refused the request: {item}",
                            status=400,
                            type="invalid_request_error",
                            code="invalid_request",
                        )
                    batch.append(item)
                    if queue.empty():
                        break
                    item = queue.get_nowait()
                yield batch
        finally:
            if not completed:
                log.info(
                    "local model %s: generation stopped after %d chunks, its client left",
                    self.name,
                    produced,
                )
            stop.set()

    async def chat_template(self) -> str:
        """The model's jinja chat template, as llama.cpp loaded it."""
        async with self._socket_session() as session, session.get("http://llama/props") as resp:
            props = await resp.json()
        template = props.get("chat_template")
        return template if isinstance(template, str) else ""

    def _socket_session(self) -> Any:
        import aiohttp

        headers = {"Authorization": f"Bearer {self._key}"}
        return aiohttp.ClientSession(
            connector=aiohttp.UnixConnector(path=self._socket), headers=headers
        )

    async def count_tokens(self, messages: list[ChatMessage]) -> int:
        """The exact prompt length: the model's chat template, then its tokenizer.

        The runtime offers neither in-process; its private socket serves both.
        """
        async with self._socket_session() as session:
            async with session.post(
                "http://llama/apply-template", json={"messages": messages}
            ) as resp:
                prompt = (await resp.json())["prompt"]
            async with session.post("http://llama/tokenize", json={"content": prompt}) as resp:
                return len((await resp.json())["tokens"])

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
        del self._server
        shutil.rmtree(self._socket_dir, ignore_errors=True)


async def events(
    chunks: AsyncGenerator[list[dict[str, Any]], None],
    provider: str,
    parse: Callable[[dict[str, Any]], list[StreamEvent]] = parse_chunk,
) -> AsyncGenerator[list[StreamEvent], None]:
    try:
        async for batch in chunks:
            events: list[StreamEvent] = []
            for chunk in batch:
                if "error" in chunk:
                    raise _runtime_error(chunk["error"], provider)
                events += parse(chunk)
            if events:
                yield events
    finally:
        await chunks.aclose()


def _runtime_error(error: Any, provider: str) -> ProviderError:
    error = error if isinstance(error, dict) else {"message": str(error)}
    message = error.get("message") or "generation failed"
    if error.get("type") == "exceed_context_size_error":
        return ProviderError(
            f"This model's maximum context length is {error.get('n_ctx')} tokens. However, "
            f"your messages resulted in {error.get('n_prompt_tokens')} tokens. Please reduce "
            "the length of the messages.",
            status=400,
            type="invalid_request_error",
            code="context_length_exceeded",
            param="messages",
        )
    return ProviderError(
        f"local model failed: {message}", status=502, code="upstream_error", retryable=True
    )
