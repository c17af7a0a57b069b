"""The embedded model: a GGUF file run in-process by llama.cpp through ``xllamacpp``.

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

from localgpt.config import ProviderConfig, local_model_name
from localgpt.providers import local_tools
from localgpt.providers.base import (
    ChatRequest,
    Completion,
    Finish,
    ModelInfo,
    ProviderError,
    StreamEvent,
    TextDelta,
    TextRequest,
    ToolCallDelta,
    UnsupportedParameter,
    Usage,
    check_params,
    collect,
    name_in_content,
)
from localgpt.providers.local_models import (
    PACKAGED,
    ModelError,
    PackagedModel,
    prepare,
    sha256_of,
)
from localgpt.providers.openai_format import parse_chunk, parse_text_chunk

log = logging.getLogger("localgpt.providers.local")

# Passed to llama.cpp as they are.
PASSTHROUGH = (
    "temperature",
    "top_p",
    "top_k",
    "min_p",
    "repeat_penalty",
    "presence_penalty",
    "frequency_penalty",
    "stop",
    "seed",
    "logprobs",
    "top_logprobs",
    "response_format",
    "logit_bias",
)
SUPPORTED = frozenset(
    (
        *PASSTHROUGH,
        "max_tokens",
        "max_completion_tokens",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "n",
    )
)
TEXT_SUPPORTED = (frozenset(PASSTHROUGH) - {"top_logprobs", "response_format"}) | {
    "suffix",
    "max_tokens",
    "n",
    "best_of",
    "echo",
}
# Fill-in-the-middle prompt formats, by model family.
FIM_TEMPLATES = {
    "qwen": "<|fim_prefix|>{prefix}<|fim_suffix|>{suffix}<|fim_middle|>",
    "starcoder": "<fim_prefix>{prefix}<fim_suffix>{suffix}<fim_middle>",
    "codellama": "<PRE> {prefix} <SUF>{suffix} <MID>",
    "deepseek": "<｜fim▁begin｜>{prefix}<｜fim▁hole｜>{suffix}<｜fim▁end｜>",
}
DECISION_TOKENS = 1024
NOT_FOR_DECISION = frozenset(
    {
        "response_format",
        "logprobs",
        "top_logprobs",
        "stop",
        "presence_penalty",
        "frequency_penalty",
        "repeat_penalty",
        "logit_bias",
    }
)
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

    async def count_tokens(self, messages: list[dict[str, Any]]) -> int:
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


class LocalProvider:
    def __init__(
        self,
        name: str,
        config: ProviderConfig,
        max_tokens: int = 4096,
        cache_dir: Path | None = None,
    ) -> None:
        from localgpt.config import Paths

        self.name = name
        self.config = config
        self.max_tokens = max_tokens
        self.cache_dir = cache_dir or Paths.from_env().cache_dir
        self._engines: dict[str, Engine] = {}
        self._loading: dict[str, asyncio.Task[Engine]] = {}
        self._configured = local_model_name(config.model_path) if config.model_path else None

    # --- models ---------------------------------------------------------------------

    def _packaged(self, model: str) -> PackagedModel | None:
        return PACKAGED.get(model)

    def available(self) -> list[str]:
        names = [self._configured] if self._configured else []
        return names + [m.name for m in PACKAGED.values() if m.installed()]

    def _load(self, model: str) -> Engine:
        """Prepare (join and checksum) and load a model; runs in a worker thread."""
        if model == self._configured and self.config.model_path:
            path = Path(self.config.model_path).expanduser()
            if not path.is_file():
                raise ModelError(f"local model {model}: no file at {path}")
            expected = self.config.model_sha256
            if expected:
                found = sha256_of(path)
                if found != expected.lower():
                    raise ModelError(
                        f"local model {model}: checksum mismatch for {path} (expected sha256 "
                        f"{expected}, found {found}); refusing to load it"
                    )
        else:
            packaged = self._packaged(model)
            if packaged is None:
                raise KeyError(model)
            log.info("preparing local model %s (join once, then checksum)", model)
            path = prepare(packaged, self.cache_dir)
        log.info("loading local model %s from %s", model, path)
        return Engine(model, path, self.config)

    async def engine(self, model: str) -> Engine:
        found = self._engines.get(model)
        if found is not None:
            return found
        task = self._loading.get(model)
        if task is None:
            task = asyncio.ensure_future(asyncio.to_thread(self._load, model))
            self._loading[model] = task
        try:
            engine = await asyncio.shield(task)
        except KeyError:
            raise ProviderError(
                f"The model 'local/{model}' does not exist; local models: "
                f"{', '.join(self.available()) or 'none installed'}.",
                status=404,
                type="invalid_request_error",
                code="model_not_found",
                param="model",
            ) from None
        except ModelError as exc:
            raise ProviderError(
                str(exc), status=503, type="server_error", code="model_unavailable", retryable=True
            ) from None
        finally:
            if task.done():
                self._loading.pop(model, None)
        self._engines[model] = engine
        return engine

    async def count_tokens(self, model: str, messages: list[dict[str, Any]]) -> int:
        engine = await self.engine(model)
        return await engine.count_tokens([name_in_content(m) for m in messages])

    async def warm_up(self, model: str) -> None:
        """Load a model ahead of its first request."""
        await self.engine(model)

    async def list_models(self) -> list[ModelInfo]:
        return [ModelInfo(m) for m in self.available()]

    async def aclose(self) -> None:
        for engine in self._engines.values():
            engine.close()
        self._engines.clear()

    # --- text completions -----------------------------------------------------------

    def _fim_template(self, model: str) -> str | None:
        if model == self._configured:
            family = self.config.fim
        else:
            family = "qwen" if model.startswith("qwen2.5-coder") else None
        return FIM_TEMPLATES.get(family) if family else None

    async def stream_text(self, request: TextRequest) -> AsyncGenerator[list[StreamEvent], None]:
        params = request.params
        check_params(params, TEXT_SUPPORTED, "local")
        for key, neutral in (("n", 1), ("best_of", 1), ("echo", False)):
            if params.get(key, neutral) != neutral:
                raise UnsupportedParameter(key, f"Local models do not support '{key}'.")
        prompt: Any = request.prompt
        suffix = params.get("suffix")
        if suffix:
            template = self._fim_template(request.model)
            if template is None:
                raise UnsupportedParameter(
                    "suffix",
                    f"The model local/{request.model} has no fill-in-the-middle "
                    'format; set fim = "qwen" (or starcoder, codellama, deepseek) in '
                    "[providers.local] if it has one.",
                )
            if not isinstance(prompt, str):
                raise UnsupportedParameter("prompt", "With a suffix, the prompt must be text.")
            prompt = template.format(prefix=prompt, suffix=suffix)
        body: dict[str, Any] = {k: params[k] for k in PASSTHROUGH if k in params}
        body.update(
            prompt=prompt,
            max_tokens=params.get("max_tokens", 16),
            stream=True,
            stream_options={"include_usage": True},
        )
        if "seed" in params:
            body["cache_prompt"] = False
        engine = await self.engine(request.model)
        offsets: dict[int, int] = {}  # characters generated so far, per choice
        async for batch in _events(
            engine.run("handle_completions", body), self.name, parse_text_chunk
        ):
            for event in batch:
                if isinstance(event, TextDelta):
                    start = offsets.get(event.choice, 0)
                    offsets[event.choice] = start + len(event.text)
                    if event.logprobs:
                        event.logprobs = legacy_logprobs(event.logprobs, start)
            yield batch

    # --- chat -----------------------------------------------------------------------

    def _body(self, request: ChatRequest) -> dict[str, Any]:
        params = request.params
        check_params(params, SUPPORTED, "local")
        if params.get("n", 1) != 1:
            raise UnsupportedParameter("n", "Local models return one choice; n must be 1.")
        # Chat templates have no place for a participant name: it goes into the text.
        messages = [name_in_content(message) for message in request.messages]
        for i, message in enumerate(messages):
            content = message.get("content")
            if isinstance(content, list):
                for j, part in enumerate(content):
                    if part.get("type") not in ("text", "refusal"):
                        raise UnsupportedParameter(
                            f"messages[{i}].content[{j}]",
                            f"This local model does not take '{part.get('type')}' content.",
                        )
        body: dict[str, Any] = {k: params[k] for k in PASSTHROUGH if k in params}
        body["messages"] = messages
        body["max_tokens"] = (
            params.get("max_completion_tokens") or params.get("max_tokens") or self.max_tokens
        )
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
        if "seed" in params:
            # The same seed gives the same answer only from the same cache state.
            body["cache_prompt"] = False
        return body

    async def complete(self, request: ChatRequest) -> Completion:
        # Streamed inside too: only a streamed generation can be stopped when a client leaves.
        return await collect(self.stream(request))

    async def stream(self, request: ChatRequest) -> AsyncGenerator[list[StreamEvent], None]:
        body = self._body(request)
        engine = await self.engine(request.model)
        tools = body.pop("tools", None) or request.params.get("tools")
        choice = request.params.get("tool_choice")
        if tools and choice != "none":
            if choice in (None, "auto") and await self._native_tools(engine, request.model):
                body["tools"] = tools
                body["tool_choice"] = "auto"
                if "parallel_tool_calls" in request.params:
                    body["parallel_tool_calls"] = request.params["parallel_tool_calls"]
                async for batch in _events(engine.run("handle_chat_completions", body), self.name):
                    yield batch
                return
            async for batch in self._stream_tools(engine, body, tools, choice, request):
                yield batch
            return
        if tools or any(m.get("tool_calls") or m.get("role") == "tool" for m in request.messages):
            # Tools withheld ("none", or the tool loop's last turn) from a conversation that
            # has them: the model may still write a call as its answer.
            async for batch in self._answer(engine, body, request):
                yield batch
            return
        async for batch in _events(engine.run("handle_chat_completions", body), self.name):
            yield batch

    def decides_tools_by_grammar(self, model: str) -> bool:
        """Whether this model's tool calls are decided under a grammar (see ``local_tools``):
        a small model that, offered a tool, calls it whether or not it helps."""
        mode = self.config.tool_calls
        if mode != "auto":
            return mode == "grammar"
        engine = self._engines.get(model)
        if model in PACKAGED or engine is None or engine.template_takes_tools is None:
            return model in PACKAGED or model != self._configured
        return not engine.template_takes_tools

    async def _native_tools(self, engine: Engine, model: str) -> bool:
        mode = self.config.tool_calls
        if mode != "auto":
            return mode == "native"
        if engine.template_takes_tools is None:
            template = await engine.chat_template()
            engine.template_takes_tools = model not in PACKAGED and "tools" in template
        return engine.template_takes_tools

    async def _stream_tools(
        self,
        engine: Engine,
        body: dict[str, Any],
        tools: list[dict[str, Any]],
        choice: Any,
        request: ChatRequest,
    ) -> AsyncGenerator[list[StreamEvent], None]:
        """Decide under a grammar whether to call tools; answer in text if not."""
        parallel = request.params.get("parallel_tool_calls", True) is not False
        body["messages"] = local_tools.with_listing(
            body["messages"], local_tools.tool_listing(tools)
        )
        # The decision is JSON under a grammar: the client's stop strings, penalties and
        # biases are for its answer, and could cut or bend the JSON.
        decide = {k: v for k, v in body.items() if k not in NOT_FOR_DECISION}
        decide["messages"] = [
            *body["messages"],
            {"role": "system", "content": local_tools.decision_rule(choice)},
        ]
        decide["temperature"] = 0.0
        # The decision has its own budget: the client's max_tokens is for the answer.
        decide["max_tokens"] = DECISION_TOKENS
        decide["response_format"] = {
            "type": "json_schema",
            "json_schema": {
                "name": "decision",
                "schema": local_tools.decision_schema(tools, choice, parallel),
            },
        }
        calls = local_tools.CallStream()
        usage = Usage(0, 0)
        ids: dict[int, str] = {}
        decision = _events(engine.run("handle_chat_completions", decide), self.name)
        try:
            first = await anext(decision)
        except ProviderError as exc:
            if exc.status != 400 or exc.code == "context_length_exceeded":
                raise
            # An argument schema llguidance cannot compile: keep the names, loosen arguments.
            decide["response_format"]["json_schema"]["schema"] = local_tools.decision_schema(
                tools, choice, parallel, loose=True
            )
            decision = _events(engine.run("handle_chat_completions", decide), self.name)
            first = await anext(decision)
        batch = _decision_events(first, calls, ids, usage)
        if batch:
            yield batch
        async for events in decision:
            batch = _decision_events(events, calls, ids, usage)
            if batch:
                yield batch
        try:
            decided = calls.calls()
        except ValueError:
            raise ProviderError(
                f"local model {engine.name} did not finish its tool decision within "
                f"{DECISION_TOKENS} tokens",
                status=502,
                code="upstream_error",
            ) from None
        if decided:
            yield [Finish("tool_calls"), usage]
            return
        # No tool fits: answer in text. The shared prefix is still in the prompt cache. The
        # decision's tokens are not the answer's: the client's max_tokens bounds the answer
        # alone, and the usage counts what the answer took.
        async for batch in self._answer(engine, body, request):
            yield batch

    async def _answer(
        self, engine: Engine, body: dict[str, Any], request: ChatRequest
    ) -> AsyncGenerator[list[StreamEvent], None]:
        """The text answer after a decision of none, never a tool call written out as text.

        Its start is held back while it could be one (an opening brace, bracket or backtick,
        a few dozen characters); a reply that is one is dropped unseen and written again,
        told to use plain words and held to them by a grammar that forbids such a start. An
        answer in JSON the client asked for is passed as it comes.
        """
        wanted = (request.params.get("response_format") or {}).get("type")
        stream = _events(engine.run("handle_chat_completions", body), self.name)
        if wanted in ("json_object", "json_schema"):
            async for batch in stream:
                yield batch
            return
        held: list[StreamEvent] | None = []
        text = ""
        written_out = False
        try:
            async for batch in stream:
                if held is None:
                    yield batch
                    continue
                held += batch
                text += "".join(e.text for e in batch if isinstance(e, TextDelta))
                done = any(isinstance(e, Finish) for e in batch)
                verdict = local_tools.call_written_out(text, done)
                if verdict:
                    written_out = True
                    break
                if verdict is False:
                    yield held
                    held = None
            if held and not written_out:
                yield held  # a short reply that ended while it still looked like a call
        finally:
            await stream.aclose()
        if not written_out:
            return
        log.info("local model %s wrote a tool call as its answer; writing it again", engine.name)
        plain = {
            **body,
            "messages": [*body["messages"], {"role": "system", "content": local_tools.PLAIN_RULE}],
            "grammar": local_tools.PLAIN_GRAMMAR,
        }
        async for batch in _events(engine.run("handle_chat_completions", plain), self.name):
            yield batch


def _decision_events(
    events: list[StreamEvent], calls: local_tools.CallStream, ids: dict[int, str], usage: Usage
) -> list[StreamEvent]:
    """Turn the decision's text into tool-call deltas as soon as each piece is known."""
    out: list[StreamEvent] = []
    for event in events:
        if isinstance(event, TextDelta):
            for index, name, args in calls.feed(event.text):
                if name is not None:
                    ids[index] = "call_" + secrets.token_hex(12)
                    out.append(ToolCallDelta(index, "", ids[index], name))
                if args:
                    out.append(ToolCallDelta(index, args))
        elif isinstance(event, Usage):
            usage.prompt_tokens += event.prompt_tokens
            usage.completion_tokens += event.completion_tokens
    return out


async def _events(
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


def legacy_logprobs(chat: Any, offset: int) -> dict[str, Any]:
    """llama.cpp reports logprobs in the chat shape; legacy completions use parallel lists."""
    tokens = chat.get("content") or [] if isinstance(chat, dict) else []
    offsets = []
    for token in tokens:
        offsets.append(offset)
        offset += len(token["token"])
    return {
        "tokens": [t["token"] for t in tokens],
        "token_logprobs": [t["logprob"] for t in tokens],
        "top_logprobs": [
            {top["token"]: top["logprob"] for top in t.get("top_logprobs") or ()} for t in tokens
        ],
        "text_offset": offsets,
    }


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
