"""Configuration: upstream-compatible keys, ${ENV} expansion, XDG paths, clear errors."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from localgpt.config import (
    Config,
    ConfigError,
    Paths,
    default_config_path,
    effective_dict,
    load_config,
    parse_config,
)
from tests.conftest import isolated_env


def test_defaults_match_upstream() -> None:
    config = Config()
    assert config.agent.context_window == 128000 and config.agent.reserve_tokens == 8000
    assert config.agent.max_tokens == 4096 and config.agent.max_tool_repeats == 3
    assert config.server.port == 31327 and config.server.bind == "127.0.0.1"
    assert config.server.max_request_body == 10 * 1024 * 1024
    assert config.memory.chunk_size == 240 and config.memory.chunk_overlap == 40
    assert config.tools.web_fetch_max_bytes == 10000 and config.tools.shell is False
    assert config.server.rate_limit.enabled is False  # unlike upstream: one local user


def test_env_expansion(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_KEY", "sk-123")
    config = parse_config(
        {"providers": {"openai": {"api_key": "${MY_KEY}", "base_url": "${MY_BASE:-http://x/v1}"}}}
    )
    provider = config.providers["openai"]
    assert provider.api_key == "sk-123" and provider.base_url == "http://x/v1"
    assert provider.type == "openai"


def test_missing_env_var_names_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOPE_KEY", raising=False)
    with pytest.raises(ConfigError, match=r"providers\.openai\.api_key: .*NOPE_KEY"):
        parse_config({"providers": {"openai": {"api_key": "${NOPE_KEY}"}}})


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({"server": {"port": "eighty"}}, "server.port"),
        ({"server": {"port": 70000}}, "server.port"),
        ({"agent": {"fallback_models": "gpt"}}, "agent.fallback_models"),
        ({"providers": {"mine": {"base_url": "http://x"}}}, "providers.mine"),
        ({"providers": {"mine": {"type": "grpc"}}}, "providers.mine.type"),
        ({"providers": {"openai": {"timeout": -1}}}, "providers.openai.timeout"),
        ({"memory": {"embedding_provider": "cloud"}}, "memory.embedding_provider"),
    ],
)
def test_invalid_values_name_the_key(data: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(data)
    assert key in str(err.value)
    assert "\n" not in str(err.value)


def test_unknown_keys_warn(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[server]\nprot = 1\n[channels]\nx = 1\n[providers.openai]\napi_kye = 'a'\n")
    _, warnings = load_config(path)
    joined = " ".join(warnings)
    assert "server.prot" in joined and "channels" in joined
    assert "providers.openai.api_kye" in joined


def test_unknown_keys_suggest_the_nearest_known_key(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(
        "[agent]\ndefualt_model = 'x'\n[server]\nprot = 1\n[channels]\nx = 1\n"
        "[providers.openai]\napi_kye = 'a'\n[server.rate_limit]\nrequests_per_min = 5\n"
    )
    _, warnings = load_config(path)
    assert sorted(warnings) == [
        "unknown config key agent.defualt_model (ignored); did you mean agent.default_model?",
        "unknown config key channels (ignored)",  # nothing near it
        "unknown config key providers.openai.api_kye (ignored); did you mean "
        "providers.openai.api_key?",
        "unknown config key server.prot (ignored); did you mean server.port?",
        "unknown config key server.rate_limit.requests_per_min (ignored); did you mean "
        "server.rate_limit.requests_per_minute?",
    ]


@pytest.mark.parametrize(
    ("toml", "key", "given"),
    [
        ('[server]\nport = "31327"\n', "server.port", "'31327'"),
        ('[providers.openai]\ntimeout = "30"\n', "providers.openai.timeout", "'30'"),
        ('[agent]\ngateway_mode = "true"\n', "agent.gateway_mode", "'true'"),
        ('[server.rate_limit]\nburst = "5"\n', "server.rate_limit.burst", "'5'"),
        ("[server]\nport = 8080.0\n", "server.port", None),
        ("[tools]\nshell = 1\n", "tools.shell", None),
    ],
)
def test_a_number_or_boolean_of_the_wrong_type_is_an_error(
    tmp_path: Path, toml: str, key: str, given: str | None
) -> None:
    path = tmp_path / "c.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    message = str(err.value)
    assert f"{key}: Input should be a valid" in message and "\n" not in message
    if given:
        assert f"not the string {given} (write numbers, true and false without quotes)" in message


def test_numbers_may_come_from_the_environment_and_ints_fill_floats(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PORT", "8080")
    monkeypatch.setenv("KEY", "12345678")
    config = parse_config(
        {
            "server": {"port": "${PORT}", "rate_limit": {"enabled": "${LIMITS:-true}"}},
            "providers": {"openai": {"timeout": 10, "api_key": "${KEY}"}},
        }
    )
    assert config.server.port == 8080 and config.server.rate_limit.enabled is True
    openai = config.providers["openai"]
    assert openai.timeout == 10.0 and openai.api_key == "12345678"  # a string field stays text
    assert type(openai.api_key) is str
    monkeypatch.setenv("PORT", "eighty")
    with pytest.raises(ConfigError) as err:
        parse_config({"server": {"port": "${PORT}"}})
    assert str(err.value).endswith(
        "server.port: Input should be a valid integer, not the string 'eighty'"
    )


def test_custom_provider_names(tmp_path: Path) -> None:
    config = parse_config(
        {
            "providers": {
                "vllm": {"type": "openai", "base_url": "http://a/v1"},
                "lmstudio": {"type": "openai", "base_url": "http://b/v1"},
            }
        }
    )
    assert {p.type for p in config.providers.values()} == {"openai"}


def test_xdg_paths_follow_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for var in (
        "XDG_CONFIG_HOME",
        "XDG_DATA_HOME",
        "XDG_CACHE_HOME",
        "XDG_STATE_HOME",
        "LOCALGPT_CONFIG",
    ):
        monkeypatch.delenv(var, raising=False)
    paths = Paths.from_env()
    assert paths.config_file == tmp_path / "home/.config/localgpt/config.toml"
    assert paths.cache_dir == tmp_path / "home/.cache/localgpt"
    assert paths.state_dir == tmp_path / "home/.local/state/localgpt"
    assert paths.data_dir == tmp_path / "home/.local/share/localgpt"
    assert parse_config({}).workspace == tmp_path / "home/.local/share/localgpt/workspace"
    for var, folder in (
        ("XDG_CACHE_HOME", "cache_dir"),
        ("XDG_DATA_HOME", "data_dir"),
        ("XDG_STATE_HOME", "state_dir"),
        ("XDG_CONFIG_HOME", "config_dir"),
    ):
        monkeypatch.setenv(var, str(tmp_path / var))
        assert getattr(Paths.from_env(), folder) == tmp_path / var / "localgpt", var
    assert parse_config({}).workspace == tmp_path / "XDG_DATA_HOME/localgpt/workspace"
    monkeypatch.setenv("LOCALGPT_CONFIG", str(tmp_path / "elsewhere.toml"))
    assert default_config_path() == tmp_path / "elsewhere.toml"
    with pytest.raises(ConfigError, match="not found"):
        load_config()  # an explicitly named file must exist


def test_secrets_are_masked() -> None:
    config = parse_config(
        {
            "providers": {"openai": {"api_key": "sk-abcdefghijklmnop"}},
            "server": {"auth_token": "tok-1234567890abc"},
        }
    )
    shown = effective_dict(config)
    assert shown["providers"]["openai"]["api_key"] == "sk-****mnop"
    assert shown["server"]["auth_token"] == "tok****0abc"


def test_every_kind_of_secret_is_masked() -> None:
    config = parse_config(
        {
            "providers": {
                "vllm": {
                    "type": "openai",
                    "base_url": "https://user:hunter2secret@gpu.example/v1",
                    "headers": {"Authorization": "Bearer sk-headersecret123456"},
                }
            },
            "server": {"auth_token": ["plain-key-0123456789", {"key": "scoped-key-0123456789"}]},
        }
    )
    shown = json.dumps(effective_dict(config))
    for secret in ("hunter2secret", "sk-headersecret123456", "plain-key-0123456789", "scoped"):
        assert secret not in shown, secret
    assert "https://****@gpu.example/v1" in shown


def run_cli(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "localgpt", *args],
        capture_output=True,
        text=True,
        env=isolated_env(home),
        timeout=60,
    )


def test_cli_config_init_then_show(tmp_path: Path) -> None:
    done = run_cli("config", "init", home=tmp_path)
    assert done.returncode == 0, done.stderr
    written = tmp_path / "config/localgpt/config.toml"
    assert written.stat().st_mode & 0o777 == 0o600
    # The commented template parses to exactly the defaults.
    assert parse_config(tomllib.loads(written.read_text())) == Config()
    assert run_cli("config", "init", home=tmp_path).returncode != 0  # no silent overwrite
    written.write_text('[providers.openai]\napi_key = "sk-secret-value-123"\n')
    shown = run_cli("config", "show", home=tmp_path)
    assert shown.returncode == 0 and "sk-secret-value-123" not in shown.stdout
    data = tomllib.loads(shown.stdout)
    assert data["providers"]["openai"]["api_key"] == "sk-****-123"
    # What unset keys mean in effect is shown too.
    assert data["agent"]["default_model"] == "local/qwen2.5-coder-1.5b-instruct"
    assert data["memory"]["workspace"] == str(tmp_path / "data/localgpt/workspace")
    written.write_text('[providers.local]\nmodel_path = "/models/Mine-7B.Q4.gguf"\n')
    shown = run_cli("config", "show", "--json", home=tmp_path)
    assert json.loads(shown.stdout)["agent"]["default_model"] == "local/Mine-7B.Q4"


def test_cli_invalid_config_is_one_clear_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[server]\nport = 'x'\n")
    done = run_cli("serve", "--config", str(bad), home=tmp_path)
    assert done.returncode == 2
    assert "server.port" in done.stderr and "Traceback" not in done.stderr
    bad.write_text("[server\n")
    done = run_cli("config", "show", "--config", str(bad), home=tmp_path)
    assert done.returncode == 2 and "invalid TOML" in done.stderr


def test_the_committed_reference_is_current() -> None:
    """docs/configuration.md is `localgpt config reference`: regenerate it when keys change."""
    from localgpt.config import reference

    committed = (Path(__file__).parent.parent / "docs" / "configuration.md").read_text()
    assert committed == reference()
    for key in ("default_model", "fallback_models", "auth_token", "web_fetch_allow", "scope"):
        assert f"`{key}`" in committed


def test_an_error_inside_a_union_names_the_key_once_without_pydantic_branches() -> None:
    with pytest.raises(ConfigError) as err:
        parse_config({"server": {"auth_token": [{"key": 5, "scope": "full"}]}})
    message = str(err.value)
    assert message.endswith("server.auth_token[0].key: Input should be a valid string")
    assert "KeyConfig" not in message and "union" not in message and ";" not in message
