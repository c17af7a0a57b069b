"""Configuration: LocalGPT's ``config.toml``, validated, with XDG paths and ``${ENV}`` expansion.

The keys and defaults follow upstream LocalGPT so that an existing config file keeps working.
Unknown keys are reported with the nearest known key (so a typo is visible) but do not stop
the server, because upstream files carry sections this implementation does not use. Numbers
and booleans are strict: `port = "31327"` is an error, not quietly a number, unless the
string came from `${VAR}` (an environment variable can only be text).
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

import tomli_w
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

PROVIDER_TYPES = ("openai", "anthropic", "ollama", "local")
ProviderType = Literal["openai", "anthropic", "ollama", "local"]
DEFAULT_LOCAL_MODEL = "qwen2.5-coder-1.5b-instruct"
EMBEDDING_MODEL = "local/all-minilm-l6-v2"  # /v1/embeddings; not a chat model


def local_model_name(model_path: str) -> str:
    """The id a configured GGUF file is served under: its file name without ``.gguf``."""
    return Path(model_path).name.removesuffix(".gguf")


class ConfigError(Exception):
    """A config problem, worded for the user: it names the file and the key."""


# --- XDG base directories -------------------------------------------------------------------


def _xdg(var: str, fallback: str) -> Path:
    value = os.environ.get(var)
    if value and os.path.isabs(value):
        return Path(value)
    return Path.home() / fallback


@dataclass(frozen=True)
class Paths:
    """Where an instance keeps its files; all follow ``HOME`` and the ``XDG_*`` variables."""

    config_dir: Path
    data_dir: Path
    cache_dir: Path
    state_dir: Path

    @classmethod
    def from_env(cls) -> Paths:
        return cls(
            config_dir=_xdg("XDG_CONFIG_HOME", ".config") / "localgpt",
            data_dir=_xdg("XDG_DATA_HOME", ".local/share") / "localgpt",
            cache_dir=_xdg("XDG_CACHE_HOME", ".cache") / "localgpt",
            state_dir=_xdg("XDG_STATE_HOME", ".local/state") / "localgpt",
        )

    @property
    def config_file(self) -> Path:
        return self.config_dir / "config.toml"

    @property
    def server_lock(self) -> Path:
        """Held by the server that uses this state folder (its pid and address inside)."""
        return self.state_dir / "server.lock"


def default_config_path() -> Path:
    env = os.environ.get("LOCALGPT_CONFIG")
    if env:
        return Path(env).expanduser()
    return Paths.from_env().config_file


# --- The model ------------------------------------------------------------------------------


class _FromEnv(str):
    """A string that ``${VAR}`` expansion produced."""


def _env_scalar(value: str, annotation: Any) -> Any:
    """``value`` as the number or boolean the field takes, if it reads as one."""
    kinds = set(get_args(annotation)) or {annotation}
    text = value.strip()
    if bool in kinds and text.lower() in ("true", "false"):
        return text.lower() == "true"
    if int in kinds and re.fullmatch(r"[+-]?[0-9]+", text):
        return int(text)
    if float in kinds:
        try:
            return float(text)
        except ValueError:
            pass
    return value


class _Section(BaseModel):
    # Each field's docstring is its description: `localgpt config reference` prints them.
    # Strict: a quoted number or boolean is a mistake to report, not to guess at.
    model_config = ConfigDict(
        extra="allow", frozen=True, use_attribute_docstrings=True, strict=True
    )

    @field_validator("*", mode="before")
    @classmethod
    def _numbers_from_env(cls, value: Any, info: ValidationInfo) -> Any:
        """``port = "${PORT}"`` works: an environment variable can only hold text."""
        if isinstance(value, _FromEnv) and info.field_name in cls.model_fields:
            return _env_scalar(value, cls.model_fields[info.field_name].annotation)
        return value


class AgentConfig(_Section):
    """The assistant: which model answers, how long a conversation may grow, its tools."""

    default_model: str | None = None
    """The model for requests that name none (`provider/model` or an alias). Unset: the
    embedded model ([providers.local] model_path, else the bundled Qwen2.5-Coder-1.5B)."""
    context_window: int = Field(128_000, gt=0)
    """Tokens a conversation may use; less for the embedded model, whose context is known."""
    reserve_tokens: int = Field(8_000, ge=0)
    """Room kept for the answer: sessions are compacted past `context_window -
    reserve_tokens`."""
    max_tokens: int = Field(4096, gt=0)
    """Output cap for providers that require one (Anthropic, the embedded model)."""
    fallback_models: list[str] = []
    """Tried in order after a 429, a 5xx, a timeout or a refused connection."""
    max_tool_repeats: int = Field(3, ge=1)
    """The same tool call with the same arguments runs at most this often per request."""
    max_tool_errors: int = Field(3, ge=1)
    """A tool that fails this many times in a row is blocked for the rest of the request."""
    max_tool_calls_per_turn: int = Field(8, ge=1)
    """Server tool calls run for one model turn; the model is told the rest were not run."""
    max_tool_calls: int = Field(32, ge=1)
    """Server tool calls run for one request, all turns together."""
    context_overflow: Literal["trim", "stop"] = "trim"
    """When tool results outgrow the model's context mid-request: `trim` replaces the
    oldest results by a note until the conversation fits (and stops if it cannot);
    `stop` ends the reply there, with `finish_reason: "length"`."""
    gateway_mode: bool = False
    """A pure proxy: no assistant prompt, memory, tools or sessions."""
    aliases: dict[str, str] = {}
    """Your own short model names, added to opus, sonnet, gpt and gpt-mini."""


class ProviderConfig(_Section):
    """A model provider, `[providers.NAME]`, routed as `NAME/model`."""

    type: ProviderType
    """openai (any OpenAI-compatible server), anthropic, ollama or local; defaults to the
    section name for those four names."""
    api_key: str | None = None
    """The provider's key (`${ENV_VAR}` is expanded)."""
    base_url: str | None = None
    """The server's address, e.g. `http://127.0.0.1:8000/v1` for vLLM; for `local`, a LocalGPT
    model host that holds the embedded model (as `serve --workers` starts one)."""
    endpoint: str | None = None
    """Ollama's address (upstream's key; `base_url` works too). Default
    `http://localhost:11434`."""
    model: str | None = None
    """Ollama: a model to list first."""
    models: list[str] = []
    """Models to list in /v1/models besides those the provider reports."""
    max_concurrency: int = Field(64, gt=0)
    """Requests in flight at once to this provider (the embedded model: `parallel`)."""
    max_queue: int = Field(256, ge=0)
    """Requests that may wait for a slot; more get a 503."""
    connect_timeout: float = Field(10.0, gt=0)
    """Seconds to connect."""
    read_timeout: float = Field(300.0, gt=0)
    """Seconds to the first byte of an answer, and between bytes of a stream."""
    timeout: float = Field(600.0, gt=0)
    """Seconds a whole request may take."""
    api_version: str | None = None
    """Anthropic: the API version. Since 2026-10-21 Anthropic refuses temperature, top_p and
    top_k; "2023-06-01" brings them back on models that still take them."""
    headers: dict[str, str] = {}
    """Extra HTTP headers for every request (e.g. OpenRouter's `HTTP-Referer`)."""
    send_max_tokens: bool | None = None
    """OpenAI-compatible: also send a client's `max_completion_tokens` as `max_tokens`, for
    servers that read only the older field (Ollama's /v1, llama-cpp-python). Unset: on for
    servers on this machine or the local network (loopback, private addresses, `.local` and
    dot-less names), off elsewhere, where OpenAI's reasoning models refuse `max_tokens`."""
    model_path: str | None = None
    """Local: any GGUF file, served as `local/<file name without .gguf>`."""
    model_sha256: str | None = None
    """Local: if set, the GGUF file must have this sha256 to be loaded."""
    fim: Literal["qwen", "starcoder", "codellama", "deepseek"] | None = None
    """Local: the fill-in-the-middle format of the configured GGUF, for `suffix`."""
    threads: int = Field(0, ge=0)
    """Local: CPU threads; 0 uses all cores."""
    context_size: int = Field(8192, gt=0)
    """Local: context length of each sequence, in tokens."""
    parallel: int = Field(1, gt=0)
    """Local: sequences generated at once."""
    tool_calls: Literal["auto", "grammar", "native"] = "auto"
    """Local: how the model calls tools when it may choose (`tool_choice` auto). `native`:
    the model writes calls in its chat template's own format and llama.cpp parses them
    (Llama 3.x, Hermes, Mistral, ...); `grammar`: the model decides under a JSON grammar.
    `auto`: grammar for the packaged models (measured: they write calls llama.cpp does not
    parse), native for any other GGUF whose chat template takes tools. `required` and a
    named function always use the grammar, which enforces them."""


class MemoryConfig(_Section):
    """The workspace of markdown files and its search index."""

    workspace: str | None = None
    """The workspace folder. Unset: `$XDG_DATA_HOME/localgpt/workspace`
    (`~/.local/share/localgpt/workspace`)."""
    embedding_provider: Literal["local", "none"] = "local"
    """`local`: hybrid keyword and meaning search with MiniLM; `none`: keywords only."""
    chunk_size: int = Field(240, gt=16, le=254)
    """Chunk size in embedder tokens. Upstream's 400 would leave every chunk's end past
    MiniLM's 256-token window, unembedded; 240 plus the special tokens fits it."""
    chunk_overlap: int = Field(40, ge=0)
    """Tokens shared by consecutive chunks (whole lines)."""
    temporal_decay_lambda: float = Field(0.0, ge=0)
    """Per-day decay of daily logs' search scores: `exp(-lambda * age_days)`; 0: off."""
    search_min_score: float = Field(0.28, ge=0, le=1)
    """Search results scoring below this are not returned (scores run from 0 to 1, the same
    scale for every query; calibrated with `bench/eval_memory.py --calibrate`)."""
    recall: bool = True
    """Before each answer, search the memory with the user's words and put the best notes
    into the model's context (off in gateway mode)."""
    recall_threshold: float = Field(0.35, ge=0, le=1)
    """Notes scoring below this are not recalled before an answer."""
    recall_limit: int = Field(3, ge=1, le=20)
    """Notes recalled before an answer, at most."""
    recall_budget: int = Field(300, ge=16)
    """Tokens the recalled notes may take, at most (about four characters a token)."""


class RateLimitConfig(_Section):
    """Per-client token buckets, keyed on the API key, else on the peer address."""

    enabled: bool = False
    """Off by default, unlike upstream: a single-user server on loopback has no one to
    throttle."""
    requests_per_minute: int = Field(60, gt=0)
    """Sustained rate per client."""
    burst: int = Field(10, gt=0)
    """Requests a client may make at once."""


Scope = Literal["gateway", "assistant", "full", "admin", "metrics"]


class KeyConfig(_Section):
    """An API key with what it may do.

    ``gateway``: the OpenAI-compatible API as a plain proxy (no assistant, no memory);
    ``assistant``: the assistant with read-only memory; ``full``: also memory writes and the
    native sessions; ``admin``: also the shell and file tools, where ``[tools]`` enables them,
    every key's sessions and /metrics; ``metrics``: /metrics (and /ready) only, for a scraper.
    """

    key: str = Field(min_length=8)
    """The key, sent as `Authorization: Bearer <key>`."""
    scope: Scope = "full"
    """gateway, assistant, full, admin or metrics."""
    name: str | None = None
    """A name for logs and rate limits."""
    mcp: list[str] | None = None
    """The MCP servers whose tools this key's assistant may use; unset: all of them for a
    full or admin key, none for an assistant key."""


class ServerConfig(_Section):
    """The HTTP server."""

    enabled: bool = True
    """Upstream's key; kept for compatibility."""
    port: int = Field(31327, ge=0, le=65535)
    """The port."""
    bind: str = "127.0.0.1"
    """The address. Anything but loopback needs `auth_token`."""
    auth_token: str | list[str | KeyConfig] | None = None
    """One key, or a list of keys and `{key, scope, name}` tables; a key without a scope is
    full. When set, every route but `/health`, the chat page and `/docs` needs a key."""
    cors_origins: list[str] = []
    """Browser origins allowed besides localhost ones (and the server's own pages); a
    request from any other web page is refused."""
    allowed_hosts: list[str] = []
    """Host names the server answers to besides its IP addresses and localhost (a reverse
    proxy's name, a LAN name); any other name in a request's Host header is refused, which
    stops DNS rebinding. `*` allows every name."""
    max_request_body: int = Field(10 * 1024 * 1024, gt=0)
    """Bytes; larger requests get a 413 before they are read."""
    rate_limit: RateLimitConfig = RateLimitConfig()
    """See [server.rate_limit]."""
    shutdown_grace: int = Field(10, ge=0)
    """Seconds in-flight requests get to finish after SIGTERM."""
    max_messages: int = Field(10_000, gt=0)
    """Messages one chat request may hold; more get a 400 before any work is done."""
    header_timeout: float = Field(10.0, gt=0)
    """Seconds a client may take to send a request's line and headers."""
    body_timeout: float = Field(60.0, gt=0)
    """Seconds a client may take to send a request's body once its headers are in."""
    max_buffered_bytes: int = Field(256 * 1024 * 1024, gt=0)
    """Upstream answers held in memory at once, all requests together; past it, 503."""
    keepalive_interval: float = Field(5.0, gt=0)
    """Seconds. A stream keeps its client's idle timer from firing: a keep-alive this often
    while a tool runs; and an Anthropic Messages or Responses stream whose model has not
    begun within this time (a long prompt on a CPU) starts anyway, then pings."""
    allow_shared_state: bool = False
    """Let a second server start on the same state folder. Off: `localgpt serve` holds
    `$XDG_STATE_HOME/localgpt/server.lock` while it runs and a second one is refused, because
    two servers would write the same sessions and memory index."""

    @property
    def url(self) -> str:
        """Where the server listens, as a client on this machine reaches it."""
        host = self.bind.strip("[]")
        if host in ("", "0.0.0.0"):
            host = "127.0.0.1"
        elif host == "::":
            host = "::1"
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    def api_keys(self) -> list[KeyConfig]:
        tokens = self.auth_token
        if tokens is None:
            return []
        if isinstance(tokens, str):
            tokens = [tokens]
        return [t if isinstance(t, KeyConfig) else KeyConfig(key=t) for t in tokens]


class ToolsConfig(_Section):
    """The assistant's own tools."""

    bash_timeout_ms: int = Field(30_000, gt=0)
    """How long a shell command may run."""
    web_fetch_max_bytes: int = Field(10_000, gt=0)
    """How much of a page web_fetch reads."""
    memory_save_max_bytes: int = Field(8 * 1024, gt=0)
    """Bytes one memory_save may add to a note."""
    max_result_bytes: int = Field(32 * 1024, gt=0)
    """Bytes of one server tool's result the model gets; more is cut, with a note."""
    max_results_bytes: int = Field(128 * 1024, gt=0)
    """Bytes of server tool results one request may send the model, all calls together."""
    web_fetch_allow: list[str] = []
    """`host:port` pairs web_fetch may reach although they are not public (an intranet
    wiki); everything else private is refused, redirects included."""
    shell: bool = False
    """The `bash` tool: for the local command line, and for admin keys."""
    file_write: bool = False
    """The `write_file` tool (inside the workspace): likewise."""


class ResponsesConfig(_Section):
    """The Responses API's stored responses (``GET /v1/responses/{id}``,
    ``previous_response_id``)."""

    store: bool = True
    """Keep responses as OpenAI does unless a request says ``"store": false``; false keeps
    none (then ``previous_response_id`` cannot continue anything)."""
    retention_days: float = Field(30.0, gt=0)
    """How long a stored response is kept."""


_CLOCK = re.compile(r"([01][0-9]|2[0-3]):[0-5][0-9]|24:00")
_DURATION = re.compile(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")


def parse_duration(text: str) -> float:
    """Seconds in ``"30m"``, ``"1h30m"``, ``"45s"``, ``"2d"`` (upstream's interval form)."""
    match = _DURATION.fullmatch(text.strip())
    if not text.strip() or match is None:
        raise ValueError(f"{text!r} is not a duration like 30m, 1h30m, 45s or 1d")
    days, hours, minutes, seconds = (int(g or 0) for g in match.groups())
    total = days * 86400 + hours * 3600 + minutes * 60 + seconds
    if total <= 0:
        raise ValueError(f"{text!r}: a duration must be longer than 0")
    return float(total)


def _check_duration(value: str | None) -> str | None:
    if value is not None:
        parse_duration(value)
    return value


def _check_zone(value: str | None) -> str | None:
    if value is not None:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
    return value


class ActiveHours(_Section):
    """When the heartbeat may run; a cycle due outside these hours is skipped."""

    start: str = "00:00"
    """`HH:MM`, local to `timezone`."""
    end: str = "24:00"
    """`HH:MM`; before `start` means the hours run past midnight (`22:00` to `06:00`)."""
    timezone: str | None = None
    """An IANA zone (`Europe/Paris`); the machine's local time when unset."""

    @field_validator("start", "end")
    @classmethod
    def _clock(cls, value: str) -> str:
        if not _CLOCK.fullmatch(value):
            raise ValueError(f"{value!r} is not a time of day like 09:00")
        return value

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        return _check_zone(value)


class HeartbeatConfig(_Section):
    """The heartbeat: the assistant wakes every `interval` to work through HEARTBEAT.md."""

    enabled: bool = False
    """Run it while the server runs."""
    interval: str = "30m"
    """How often: `30m`, `1h`, `45s`."""
    active_hours: ActiveHours | None = None
    """`{ start = "09:00", end = "22:00", timezone = "Europe/Paris" }`; always when unset."""
    timeout: str | None = None
    """How long one cycle may take; half the interval when unset."""
    model: str | None = None
    """The model it runs on; the default model when unset."""

    @field_validator("interval", "timeout")
    @classmethod
    def _duration(cls, value: str | None) -> str | None:
        return _check_duration(value)

    @property
    def seconds(self) -> float:
        return parse_duration(self.interval)

    @property
    def timeout_seconds(self) -> float:
        return parse_duration(self.timeout) if self.timeout else self.seconds / 2


class JobConfig(_Section):
    """A scheduled job: a prompt the assistant runs on a schedule, in a session of its own."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    """Its name, for `localgpt jobs run NAME` and the logs."""
    prompt: str = Field(min_length=1)
    """What the assistant is asked each time."""
    cron: str | None = None
    """A cron expression (`0 8 * * mon-fri`), in `timezone`; or use `every`."""
    every: str | None = None
    """An interval (`30m`, `6h`); or use `cron`."""
    timezone: str | None = None
    """The zone `cron` is read in; the machine's local time when unset."""
    model: str | None = None
    """The model; the default model when unset."""
    tools: list[str] | None = None
    """The server tools it may use (`memory_save`, `mcp_github_search`...); all when unset."""
    timeout: str = "10m"
    """How long one run may take."""
    enabled: bool = True
    """False keeps it listed but never run on its schedule."""

    @field_validator("every", "timeout")
    @classmethod
    def _duration(cls, value: str | None) -> str | None:
        return _check_duration(value)

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        return _check_zone(value)

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        if value is not None:
            from croniter import croniter

            if not croniter.is_valid(value):
                raise ValueError(f"{value!r} is not a cron expression like 0 8 * * mon-fri")
        return value

    @model_validator(mode="after")
    def _one_schedule(self) -> JobConfig:
        if (self.cron is None) == (self.every is None):
            raise ValueError(f"job {self.name}: give exactly one of cron or every")
        return self


class McpServerConfig(_Section):
    """An MCP server whose tools the assistant may use, as `mcp_NAME_TOOL`."""

    command: str | None = None
    """stdio: the program to start (its `PATH` is the server's)."""
    args: list[str] = []
    """stdio: its arguments."""
    env: dict[str, str] = {}
    """stdio: its environment, over a minimal one (HOME, PATH, USER...): the server's own
    environment is not passed on."""
    cwd: str | None = None
    """stdio: its working folder."""
    url: str | None = None
    """Streamable HTTP: the server's endpoint (`http://127.0.0.1:8931/mcp`)."""
    headers: dict[str, str] = {}
    """Streamable HTTP: headers on every request (`Authorization`)."""
    timeout: float = Field(60.0, gt=0)
    """Seconds one tool call may take."""
    enabled: bool = True
    """False: configured but not started."""

    @model_validator(mode="after")
    def _one_transport(self) -> McpServerConfig:
        if (self.command is None) == (self.url is None):
            raise ValueError("give exactly one of command (stdio) or url (streamable HTTP)")
        return self


class McpConfig(_Section):
    """The Model Context Protocol: MCP servers whose tools the assistant uses."""

    servers: dict[str, McpServerConfig] = {}
    """`[mcp.servers.NAME]` tables."""

    @field_validator("servers")
    @classmethod
    def _names(cls, value: dict[str, McpServerConfig]) -> dict[str, McpServerConfig]:
        for name in value:
            if not re.fullmatch(r"[A-Za-z0-9-]{1,32}", name):
                raise ValueError(f"mcp.servers.{name}: a name may use letters, digits and -")
        return value


class StateConfig(_Section):
    """Hot state shared by workers and replicas: rate-limit buckets, failover cooldowns, the
    tool stash, locks. Unset: kept in the process (one server)."""

    url: str | None = None
    """`redis://[:password@]host:port/db`."""

    @field_validator("url")
    @classmethod
    def _redis(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError(f"{value!r} is not a redis:// URL")
        return value


class StorageConfig(_Section):
    """Durable state shared by workers and replicas: sessions and stored responses. Unset:
    JSONL files and SQLite in the state folder (one server)."""

    url: str | None = None
    """`postgresql://user[:password]@host:port/database`."""
    pool_size: int = Field(10, ge=1, le=200)
    """Connections each server process keeps at most."""

    @field_validator("url")
    @classmethod
    def _postgres(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("postgresql://", "postgres://")):
            raise ValueError(f"{value!r} is not a postgresql:// URL")
        return value


class Config(_Section):
    agent: AgentConfig = AgentConfig()
    providers: dict[str, ProviderConfig] = {}
    memory: MemoryConfig = MemoryConfig()
    server: ServerConfig = ServerConfig()
    tools: ToolsConfig = ToolsConfig()
    responses: ResponsesConfig = ResponsesConfig()
    heartbeat: HeartbeatConfig = HeartbeatConfig()
    jobs: list[JobConfig] = []
    mcp: McpConfig = McpConfig()
    state: StateConfig = StateConfig()
    storage: StorageConfig = StorageConfig()

    @field_validator("providers", mode="before")
    @classmethod
    def _provider_types(cls, value: Any) -> Any:
        """Give built-in sections their type, so ``[providers.openai]`` needs no ``type``."""
        if not isinstance(value, Mapping):
            return value
        out: dict[str, Any] = {}
        for name, section in value.items():
            if isinstance(section, Mapping) and "type" not in section:
                if name not in PROVIDER_TYPES:
                    raise ValueError(
                        f"providers.{name}: 'type' is required for a provider not named "
                        f'{", ".join(PROVIDER_TYPES)} (for example type = "openai")'
                    )
                section = {**section, "type": name}
            out[name] = section
        return out

    @model_validator(mode="after")
    def _check(self) -> Config:
        names = [job.name for job in self.jobs]
        for name in names:
            if names.count(name) > 1:
                raise ValueError(f"jobs: two jobs are named {name}")
        for key in self.server.api_keys():
            for server in key.mcp or ():
                if server not in self.mcp.servers:
                    raise ValueError(f"server.auth_token: no MCP server named {server}")
        if self.memory.chunk_overlap >= self.memory.chunk_size:
            raise ValueError("memory.chunk_overlap: must be smaller than memory.chunk_size")
        for name in self.providers:
            if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
                raise ValueError(
                    f"providers.{name}: a provider name may use letters, digits, _ . -"
                )
        return self

    def provider(self, name: str) -> ProviderConfig | None:
        """The named provider's settings; ``local`` exists even when not configured."""
        found = self.providers.get(name)
        if found is None and name == "local":
            return ProviderConfig(type="local")
        return found

    @property
    def default_model(self) -> str:
        if self.agent.default_model:
            return self.agent.default_model
        local = self.providers.get("local")
        if local is not None and local.model_path:
            return f"local/{local_model_name(local.model_path)}"
        return f"local/{DEFAULT_LOCAL_MODEL}"

    @property
    def default_is_implicit_local(self) -> bool:
        """The embedded model is the default only by rule, next to configured providers:
        worth loading on first use, not at every start."""
        return (
            not self.agent.default_model and "local" not in self.providers and bool(self.providers)
        )

    @property
    def shared(self) -> bool:
        """Whether several server processes may serve this configuration together."""
        return self.state.url is not None and self.storage.url is not None

    @property
    def workspace(self) -> Path:
        if self.memory.workspace:
            return Path(os.path.expanduser(self.memory.workspace))
        return Paths.from_env().data_dir / "workspace"


# --- Loading --------------------------------------------------------------------------------

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def _expand(value: Any, where: str) -> Any:
    """Replace ``${VAR}`` and ``${VAR:-default}`` in every string of the parsed file."""
    if isinstance(value, str):

        def sub(match: re.Match[str]) -> str:
            var, default = match.group(1), match.group(2)
            found = os.environ.get(var)
            if found is not None:
                return found
            if default is not None:
                return default
            raise ConfigError(f"{where}: environment variable {var} is not set")

        expanded = _ENV_REF.sub(sub, value)
        return _FromEnv(expanded) if _ENV_REF.search(value) else value
    if isinstance(value, dict):
        return {k: _expand(v, f"{where}.{k}" if where else k) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v, f"{where}[{i}]") for i, v in enumerate(value)]
    return value


_UNION_TAG = re.compile(r"str|int|float|bool|.*\[.*\]|[A-Z]\w*Config")


def _format_loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in PROVIDER_TYPES and out.startswith("providers.") and out.count(".") == 1:
            # pydantic reports the discriminated member ("openai") after the name: skip it.
            continue
        elif _UNION_TAG.fullmatch(part):
            continue  # the branch of a union pydantic tried ("str", "list[...]", "KeyConfig")
        else:
            out += f".{part}" if out else str(part)
    return out


def _unknown_keys(model: BaseModel, prefix: str = "") -> list[str]:
    """A warning for each key the model does not know, naming the nearest known one."""
    found: list[str] = []
    known = list(type(model).model_fields)
    for key in model.model_extra or {}:
        near = difflib.get_close_matches(str(key), known, n=1)
        hint = f"; did you mean {prefix}{near[0]}?" if near else ""
        found.append(f"unknown config key {prefix}{key} (ignored){hint}")
    for name in type(model).model_fields:
        value = getattr(model, name)
        if isinstance(value, BaseModel):
            found += _unknown_keys(value, f"{prefix}{name}.")
        elif isinstance(value, dict):
            for k, v in value.items():
                if isinstance(v, BaseModel):
                    found += _unknown_keys(v, f"{prefix}{name}.{k}.")
    return found


_SCALAR_ERRORS = frozenset({"int_type", "float_type", "bool_type"})


def parse_config(data: Mapping[str, Any], source: str = "config") -> Config:
    """Validate parsed TOML; every problem is reported with its dotted key."""
    try:
        expanded = _expand(dict(data), "")
        return Config.model_validate(expanded)
    except ValidationError as exc:
        found: dict[str, str] = {}
        for err in exc.errors():
            message = err["msg"].removeprefix("Value error, ")
            given = err.get("input")
            if err["type"] in _SCALAR_ERRORS and isinstance(given, str):
                message += f", not the string {str(given)!r}"
                if not isinstance(given, _FromEnv):
                    message += " (write numbers, true and false without quotes)"
            found.setdefault(_format_loc(err["loc"]), message)
        # A union reports each branch it tried; the deepest key is the one to fix.
        deepest = [
            k for k in found if not any(o != k and o.startswith((f"{k}.", f"{k}[")) for o in found)
        ]
        problems = [
            f"{k}: {found[k]}" if k and not found[k].startswith(k) else found[k] for k in deepest
        ]
        raise ConfigError(f"invalid config in {source}: " + "; ".join(problems)) from None
    except ConfigError as exc:
        raise ConfigError(f"invalid config in {source}: {exc}") from None


def load_config(path: Path | str | None = None) -> tuple[Config, list[str]]:
    """Read the config file (defaults if the default file is absent); return it and warnings."""
    explicit = path is not None or bool(os.environ.get("LOCALGPT_CONFIG"))
    file = Path(path).expanduser() if path is not None else default_config_path()
    if not file.exists():
        if explicit:
            raise ConfigError(f"config file not found: {file}")
        return Config(), []
    try:
        data = tomllib.loads(file.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"invalid TOML in {file}: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {file}: {exc.strerror}") from None
    config = parse_config(data, str(file))
    return config, _unknown_keys(config)


SECRET_KEYS = frozenset({"api_key", "auth_token"})


def mask_secret(value: str) -> str:
    return "****" if len(value) < 12 else f"{value[:3]}****{value[-4:]}"


_URL_USERINFO = re.compile(r"^([a-z][a-z0-9+.-]*://)[^/@]*@", re.IGNORECASE)


def effective_dict(config: Config) -> dict[str, Any]:
    """The config as plain data with secrets masked, for ``localgpt config show``; the
    default model and the workspace are shown as they take effect, also when unset."""

    def clean(value: Any, key: str = "", secret: bool = False) -> Any:
        if isinstance(value, dict):
            # Every value of a headers table may carry a credential (Authorization, x-api-key),
            # and so does the key of a scoped auth_token entry.
            return {
                k: clean(v, k, secret or key == "headers" or (key == "auth_token" and k == "key"))
                for k, v in value.items()
                if v is not None
            }
        if isinstance(value, list):
            return [clean(v, key, secret) for v in value]
        if isinstance(value, str):
            if secret or key in SECRET_KEYS:
                return mask_secret(value)
            if "://" in value and "@" in value:
                return _URL_USERINFO.sub(r"\1****@", value)
        return value

    data: dict[str, Any] = clean(config.model_dump(mode="json"))
    # What an unset key means in effect: the model that answers, the folder that is read.
    data["agent"]["default_model"] = config.default_model
    data["memory"]["workspace"] = str(config.workspace)
    return data


# --- The reference ----------------------------------------------------------------------------

REFERENCE_SECTIONS: list[tuple[str, type[BaseModel]]] = [
    ("[agent]", AgentConfig),
    ("[providers.NAME]", ProviderConfig),
    ("[memory]", MemoryConfig),
    ("[server]", ServerConfig),
    ("[server.rate_limit]", RateLimitConfig),
    ("keys in [server] auth_token", KeyConfig),
    ("[tools]", ToolsConfig),
    ("[heartbeat]", HeartbeatConfig),
    ("[heartbeat.active_hours]", ActiveHours),
    ("[[jobs]]", JobConfig),
    ("[mcp.servers.NAME]", McpServerConfig),
    ("[state]", StateConfig),
    ("[storage]", StorageConfig),
]


def _type_name(annotation: Any) -> str:
    text = str(annotation).replace("typing.", "").replace("localgpt.config.", "")
    text = re.sub(r"<class '([\w.]+)'>", r"\1", text)
    return text.replace("NoneType", "None").replace("|", "\\|")


def _default(value: Any) -> str:
    if isinstance(value, BaseModel):
        return "(a table)"
    if value is None:
        return "unset"
    return (
        f"`{tomli_w.dumps({'x': value}).split(' = ', 1)[1].strip()}`"
        if not isinstance(value, dict)
        else f"`{value}`"
    )


def reference() -> str:
    """Markdown for every key, generated from the models: `localgpt config reference`."""
    lines = [
        "# Configuration reference",
        "",
        "Generated from the config model by `localgpt config reference`; keys and defaults "
        "follow upstream LocalGPT unless noted. The file is `$LOCALGPT_CONFIG`, or "
        "`$XDG_CONFIG_HOME/localgpt/config.toml`; `${VAR}` and `${VAR:-default}` in strings "
        "are replaced by environment variables. `localgpt config init` writes a commented "
        "template, `localgpt config show` prints the effective values with secrets masked.",
    ]
    for title, model in REFERENCE_SECTIONS:
        lines += ["", f"## {title}", ""]
        if model.__doc__:
            lines += [" ".join(model.__doc__.split()), ""]
        lines += ["| key | type | default | meaning |", "|---|---|---|---|"]
        for name, field in model.model_fields.items():
            default = "required" if field.is_required() else _default(field.default)
            meaning = " ".join((field.description or "").split()).replace("|", "\\|")
            lines.append(f"| `{name}` | {_type_name(field.annotation)} | {default} | {meaning} |")
    return "\n".join(lines) + "\n"
