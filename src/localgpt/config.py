"""Configuration: LocalGPT's ``config.toml``, validated, with XDG paths and ``${ENV}`` expansion.

The keys and defaults follow upstream LocalGPT so that an existing config file keeps working.
Unknown keys are reported (so a typo is visible) but do not stop the server, because upstream
files carry sections this implementation does not use.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

PROVIDER_TYPES = ("openai", "anthropic", "ollama", "local")
ProviderType = Literal["openai", "anthropic", "ollama", "local"]
DEFAULT_LOCAL_MODEL = "qwen2.5-coder-1.5b-instruct"


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


def default_config_path() -> Path:
    env = os.environ.get("LOCALGPT_CONFIG")
    if env:
        return Path(env).expanduser()
    return Paths.from_env().config_file


# --- The model ------------------------------------------------------------------------------


class _Section(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)


class AgentConfig(_Section):
    # None: the embedded model ([providers.local] model_path, else the bundled Qwen).
    default_model: str | None = None
    context_window: int = Field(128_000, gt=0)
    reserve_tokens: int = Field(8_000, ge=0)
    max_tokens: int = Field(4096, gt=0)
    fallback_models: list[str] = []
    max_tool_repeats: int = Field(3, ge=1)
    max_tool_errors: int = Field(3, ge=1)
    gateway_mode: bool = False
    aliases: dict[str, str] = {}


class ProviderConfig(_Section):
    """One model provider. ``type`` defaults to the section name for the built-in names."""

    type: ProviderType
    api_key: str | None = None
    base_url: str | None = None
    # Ollama's native API address (upstream's key); ``base_url`` is accepted as a synonym.
    endpoint: str | None = None
    # Ollama: the model upstream routes bare names to and lists first.
    model: str | None = None
    # Models to list in /v1/models besides what the provider reports itself.
    models: list[str] = []
    # Requests in flight at once to this provider, and how many more may wait (then 503).
    max_concurrency: int = Field(64, gt=0)
    max_queue: int = Field(256, ge=0)
    connect_timeout: float = Field(10.0, gt=0)
    # Longest wait for the first byte of an answer, and between bytes of a stream.
    read_timeout: float = Field(300.0, gt=0)
    # Longest a whole request may take.
    timeout: float = Field(600.0, gt=0)
    # anthropic: the API version to ask for. Since 2026-10-21 Anthropic refuses temperature,
    # top_p and top_k; "2023-06-01" brings them back on models that still support them.
    api_version: str | None = None
    # Extra HTTP headers sent with every request (e.g. OpenRouter's ``HTTP-Referer``).
    headers: dict[str, str] = {}
    # local: a GGUF file and the runtime's knobs.
    model_path: str | None = None
    model_sha256: str | None = None  # if set, a configured GGUF must match it to be loaded
    # The fill-in-the-middle format of a configured GGUF: qwen, starcoder, codellama, deepseek.
    fim: Literal["qwen", "starcoder", "codellama", "deepseek"] | None = None
    threads: int = Field(0, ge=0)  # 0: the machine's cores
    context_size: int = Field(8192, gt=0)
    parallel: int = Field(1, gt=0)


class MemoryConfig(_Section):
    # None: $XDG_DATA_HOME/localgpt/workspace (upstream's ~/.local/share/localgpt/workspace).
    workspace: str | None = None
    embedding_provider: Literal["local", "none"] = "local"
    # In embedder tokens. Upstream's 400 would leave every chunk's end past MiniLM's 256-token
    # window, unembedded; 240 plus the special tokens fits it.
    chunk_size: int = Field(240, gt=16, le=254)
    chunk_overlap: int = Field(40, ge=0)
    temporal_decay_lambda: float = Field(0.0, ge=0)


class RateLimitConfig(_Section):
    # Off by default: a single-user server on loopback has no one to throttle.
    enabled: bool = False
    requests_per_minute: int = Field(60, gt=0)
    burst: int = Field(10, gt=0)


Scope = Literal["gateway", "assistant", "full", "admin"]


class KeyConfig(_Section):
    """An API key with what it may do.

    ``gateway``: the OpenAI-compatible API as a plain proxy (no assistant, no memory);
    ``assistant``: the assistant with read-only memory; ``full``: also memory writes and the
    native sessions; ``admin``: also the shell and file tools, where ``[tools]`` enables them.
    """

    key: str = Field(min_length=8)
    scope: Scope = "full"
    name: str | None = None


class ServerConfig(_Section):
    enabled: bool = True
    port: int = Field(31327, ge=0, le=65535)
    bind: str = "127.0.0.1"
    # One key, or several; a key without a scope is full.
    auth_token: str | list[str | KeyConfig] | None = None
    cors_origins: list[str] = []
    max_request_body: int = Field(10 * 1024 * 1024, gt=0)
    rate_limit: RateLimitConfig = RateLimitConfig()
    # Seconds in-flight requests get to finish after SIGTERM.
    shutdown_grace: int = Field(10, ge=0)
    # All upstream answers held in memory at once (non-stream bodies, stream lines).
    max_buffered_bytes: int = Field(256 * 1024 * 1024, gt=0)

    def api_keys(self) -> list[KeyConfig]:
        tokens = self.auth_token
        if tokens is None:
            return []
        if isinstance(tokens, str):
            tokens = [tokens]
        return [t if isinstance(t, KeyConfig) else KeyConfig(key=t) for t in tokens]


class ToolsConfig(_Section):
    bash_timeout_ms: int = Field(30_000, gt=0)
    web_fetch_max_bytes: int = Field(10_000, gt=0)
    # host:port pairs web_fetch may reach although they are not public (an intranet wiki).
    web_fetch_allow: list[str] = []
    shell: bool = False
    file_write: bool = False


class ActiveHours(_Section):
    start: str = "00:00"
    end: str = "24:00"


class HeartbeatConfig(_Section):
    enabled: bool = False
    interval: str = "30m"
    active_hours: ActiveHours | None = None


class Config(_Section):
    agent: AgentConfig = AgentConfig()
    providers: dict[str, ProviderConfig] = {}
    memory: MemoryConfig = MemoryConfig()
    server: ServerConfig = ServerConfig()
    tools: ToolsConfig = ToolsConfig()
    heartbeat: HeartbeatConfig = HeartbeatConfig()

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

        return _ENV_REF.sub(sub, value)
    if isinstance(value, dict):
        return {k: _expand(v, f"{where}.{k}" if where else k) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v, f"{where}[{i}]") for i, v in enumerate(value)]
    return value


def _format_loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in PROVIDER_TYPES and out.startswith("providers.") and out.count(".") == 1:
            # pydantic reports the discriminated member ("openai") after the name: skip it.
            continue
        else:
            out += f".{part}" if out else str(part)
    return out


def _unknown_keys(model: BaseModel, prefix: str = "") -> list[str]:
    found: list[str] = []
    for key in model.model_extra or {}:
        found.append(f"{prefix}{key}")
    for name in type(model).model_fields:
        value = getattr(model, name)
        if isinstance(value, BaseModel):
            found += _unknown_keys(value, f"{prefix}{name}.")
        elif isinstance(value, dict):
            for k, v in value.items():
                if isinstance(v, BaseModel):
                    found += _unknown_keys(v, f"{prefix}{name}.{k}.")
    return found


def parse_config(data: Mapping[str, Any], source: str = "config") -> Config:
    """Validate parsed TOML; every problem is reported with its dotted key."""
    try:
        expanded = _expand(dict(data), "")
        return Config.model_validate(expanded)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            key = _format_loc(err["loc"])
            msg = err["msg"].removeprefix("Value error, ")
            problems.append(f"{key}: {msg}" if key and not msg.startswith(key) else msg)
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
    warnings = [f"unknown config key {key} (ignored)" for key in _unknown_keys(config)]
    return config, warnings


SECRET_KEYS = frozenset({"api_key", "auth_token"})


def mask_secret(value: str) -> str:
    return "****" if len(value) < 12 else f"{value[:3]}****{value[-4:]}"


def effective_dict(config: Config) -> dict[str, Any]:
    """The config as plain data with secrets masked, for ``localgpt config show``."""

    def clean(value: Any, key: str = "") -> Any:
        if isinstance(value, dict):
            return {k: clean(v, k) for k, v in value.items() if v is not None}
        if isinstance(value, list):
            return [clean(v, key) for v in value]
        if key in SECRET_KEYS and isinstance(value, str):
            return mask_secret(value)
        return value

    data: dict[str, Any] = clean(config.model_dump(mode="json"))
    return data
