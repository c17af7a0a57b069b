"""Routing rules and failover order (pure logic; the network paths are tested via the API)."""

from __future__ import annotations

import pytest

from localgpt.config import parse_config
from localgpt.providers.errors import ProviderError
from localgpt.providers.router import Route, Router


def router(**providers: dict[str, object]) -> Router:
    return Router(parse_config({"providers": providers}))


def test_aliases_and_provider_prefix() -> None:
    r = router(openai={}, anthropic={})
    assert r.resolve("gpt") == Route("openai", "gpt-4o")
    assert r.resolve("opus") == Route("anthropic", "claude-opus-4-6")
    assert r.resolve("openai/meta-llama/Llama-3-8B") == Route("openai", "meta-llama/Llama-3-8B")


@pytest.mark.parametrize(
    ("model", "route"),
    [
        ("gpt-4o-mini", Route("openai", "gpt-4o-mini")),
        ("o1-preview", Route("openai", "o1-preview")),
        ("claude-sonnet-4-6", Route("anthropic", "claude-sonnet-4-6")),
        ("llama3", Route("ollama", "llama3")),
        ("qwen2.5-coder-1.5b-instruct", Route("local", "qwen2.5-coder-1.5b-instruct")),
    ],
)
def test_bare_names(model: str, route: Route) -> None:
    assert router(openai={}, anthropic={}, ollama={}).resolve(model) == route


def test_bare_name_without_ollama_is_an_error_naming_it() -> None:
    with pytest.raises(ProviderError) as err:
        router(openai={}).resolve("mistral")
    assert err.value.status == 404 and "mistral" in err.value.message


def test_unconfigured_provider_is_named() -> None:
    with pytest.raises(ProviderError, match=r"add \[providers\.anthropic\]"):
        router(openai={}).resolve("claude-3")


def test_custom_provider_and_user_aliases() -> None:
    r = Router(
        parse_config(
            {
                "agent": {"aliases": {"fast": "vllm/qwen"}},
                "providers": {"vllm": {"type": "openai", "base_url": "http://x/v1"}},
            }
        )
    )
    assert r.resolve("fast") == Route("vllm", "qwen")
    assert r.resolve("vllm/qwen") == Route("vllm", "qwen")


def test_failover_order_and_cooldown() -> None:
    now = [1000.0]
    r = Router(
        parse_config(
            {
                "agent": {"fallback_models": ["openai/b", "openai/a", "openai/c"]},
                "providers": {"openai": {}},
            }
        ),
        clock=lambda: now[0],
    )
    ids = [x.id for x in r.candidates("openai/a")]
    assert ids == ["openai/a", "openai/b", "openai/c"]  # no duplicates
    r._failed(Route("openai", "a"), ProviderError("x", retryable=True), failover=True)
    assert [x.id for x in r.candidates("openai/a")] == ["openai/b", "openai/c", "openai/a"]
    now[0] += 61
    assert r.candidates("openai/a")[0].id == "openai/a"


def test_non_retryable_failures_do_not_cool_down() -> None:
    r = Router(
        parse_config({"agent": {"fallback_models": ["openai/b"]}, "providers": {"openai": {}}})
    )
    r._failed(Route("openai", "a"), ProviderError("x", status=400), failover=True)
    assert r.candidates("openai/a")[0].id == "openai/a"
