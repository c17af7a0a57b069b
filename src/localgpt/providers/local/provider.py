"""The embedded model as a provider: which GGUF files it serves, chat with tools, and legacy
text completions.

Models are loaded on first use (or at start, by ``warm_up``) from a packaged model, joined
and checksummed once (``local.models``), or from ``[providers.local] model_path``. Chat runs
on the engine (``local.engine``); tool calls are decided under a grammar for the models
whose own call format llama.cpp does not parse (``local.decisions``), natively otherwise.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any, cast

from localgpt.config import ProviderConfig, local_model_name
from localgpt.providers.base import ChatRequest, ModelInfo, TextRequest, check_params, collect
from localgpt.providers.errors import ProviderError, UnsupportedParameter
from localgpt.providers.events import Completion, StreamEvent, TextDelta
from localgpt.providers.local import decisions
from localgpt.providers.local.engine import Engine, events
from localgpt.providers.local.fim import FIM_TEMPLATES, legacy_logprobs
from localgpt.providers.local.models import (
    PACKAGED,
    ModelError,
    PackagedModel,
    prepare,
    sha256_of,
)
from localgpt.providers.messages import ChatMessage, name_in_content
from localgpt.providers.openai_format import parse_text_chunk

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

    async def count_tokens(self, model: str, messages: list[ChatMessage]) -> int:
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
        wire = cast(dict[str, Any], params)  # the client's fields, as llama.cpp names them too
        body: dict[str, Any] = {k: wire[k] for k in PASSTHROUGH if k in wire}
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
        async for batch in events(
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
        wire = cast(dict[str, Any], params)  # the client's fields, as llama.cpp names them too
        body: dict[str, Any] = {k: wire[k] for k in PASSTHROUGH if k in wire}
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
                async for batch in events(engine.run("handle_chat_completions", body), self.name):
                    yield batch
                return
            async for batch in decisions.decide(engine, self.name, body, tools, choice, request):
                yield batch
            return
        if tools or any(m.get("tool_calls") or m.get("role") == "tool" for m in request.messages):
            # Tools withheld ("none", or the tool loop's last turn) from a conversation that
            # has them: the model may still write a call as its answer.
            async for batch in decisions.answer(engine, self.name, body, request):
                yield batch
            return
        async for batch in events(engine.run("handle_chat_completions", body), self.name):
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
