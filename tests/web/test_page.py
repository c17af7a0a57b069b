"""The chat page, end to end: Playwright drives Debian's Chromium against the real server on
the fake upstream. Screenshots go to artifacts/web/."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.conftest import ROOT, Server, gateway_config
from tests.fakes import FakeCall, Script, wait_for
from tests.fakes.openai_fake import FakeOpenAI

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = ROOT / "artifacts" / "web"
KEY = "page-key-0123456789"
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    assert Path(CHROMIUM).exists(), "Debian's chromium is missing: `make test` installs it"
    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        yield launched
        launched.close()


@pytest.fixture
def server(servers: Callable[[str], Server], openai_upstream: FakeOpenAI) -> Server:
    return servers(
        gateway_config(
            openai_upstream.url,
            gateway=False,
            extra=f"""
[server]
auth_token = "{KEY}"
""",
        )
    )


@pytest.fixture
def page(browser: Browser, server: Server, request: pytest.FixtureRequest) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.goto(f"{server.url}/")
    # The key is asked for once, then kept in the browser.
    page.wait_for_selector("#token-dialog[open]")
    page.fill("#token", KEY)
    page.click("#token-form button")
    expect(page.locator("#model option").first).to_have_text("openai/fake-model")
    yield page
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{request.node.name}.png"))
    context.close()


def send(page: Page, text: str) -> None:
    page.fill("#input", text)
    page.keyboard.press("Enter")


def test_a_message_gets_a_streamed_markdown_answer(page: Page, openai_upstream: FakeOpenAI) -> None:
    openai_upstream.script(
        "fake-model",
        Script(
            text=[
                "Here ",
                "is **bold** ",
                "and code:\n\n",
                "```python\n",
                "def f():\n",
                "    return 1\n",
                "```\n",
            ],
            delay=0.3,
        ),
    )
    send(page, "Show me some code")
    answer = page.locator(".message.assistant").last
    expect(answer).to_contain_text("Here is", timeout=10_000)
    assert "return 1" not in answer.inner_text()  # the rest is still on its way: streamed
    expect(answer.locator("pre code .tok-kw").first).to_have_text("def", timeout=10_000)
    expect(answer.locator("strong")).to_have_text("bold")
    expect(page.locator("#status")).to_contain_text("tokens in")


def test_tool_activity_is_shown_as_it_happens(page: Page, openai_upstream: FakeOpenAI) -> None:
    openai_upstream.script(
        "fake-model",
        Script(tool_calls=[FakeCall("memory_search", ['{"query": "birthday"}'])]),
        Script(text=["Found it."]),
    )
    send(page, "When is my birthday?")
    tool = page.locator(".tool").last
    expect(tool).to_contain_text("memory_search ✓", timeout=10_000)
    expect(tool.locator(".args")).to_contain_text('"birthday"')
    expect(page.locator(".message.assistant").last).to_have_text("Found it.")


def test_reload_finds_the_session(page: Page, openai_upstream: FakeOpenAI) -> None:
    send(page, "remember the blue door")
    expect(page.locator(".message.assistant").last).to_contain_text("You said: remember")
    page.reload()
    expect(page.locator(".session.active .title")).to_have_text("remember the blue door")
    expect(page.locator(".message.user").first).to_have_text("remember the blue door")
    page.click("#new-chat")
    expect(page.locator(".message")).to_have_count(0)
    expect(page.locator(".session")).not_to_have_count(0)


def test_search_memory_and_open_a_hit(page: Page, server: Server) -> None:
    notes = server.home / "data" / "localgpt" / "workspace" / "knowledge"
    notes.mkdir(parents=True, exist_ok=True)
    (notes / "bike.md").write_text(
        "# Bike\n\nBought in 2021.\nThe lock code is in the red notebook.\nTyres: 28 mm.\n"
    )
    page.click("#memory-toggle")

    def found() -> bool:
        page.fill("#memory-query", "where is the bicycle lock code written down")
        page.click("#memory-search button")
        page.wait_for_timeout(300)
        return "knowledge/bike.md" in page.locator("#memory-results").inner_text()

    assert wait_for(found, 20)
    page.locator(".hit", has_text="knowledge/bike.md").first.click()
    expect(page.locator("#memory-file-name")).to_contain_text("knowledge/bike.md")
    expect(page.locator(".hit-line").first).to_contain_text("# Bike")


def test_stop_cancels_the_generation(page: Page, openai_upstream: FakeOpenAI) -> None:
    openai_upstream.script("fake-model", Script(text=[f"word{i} " for i in range(60)], delay=0.2))
    send(page, "talk for a long time")
    expect(page.locator(".message.assistant").last).to_contain_text("word1", timeout=10_000)
    page.click("#stop")
    expect(page.locator("#status")).to_have_text("stopped")
    expect(page.locator("#send")).to_be_visible()
    assert wait_for(lambda: bool(openai_upstream.disconnects), 5)  # the upstream was closed


def test_a_provider_error_is_visible(page: Page, openai_upstream: FakeOpenAI) -> None:
    openai_upstream.script("fake-model", Script(status=500))
    send(page, "this will fail")
    expect(page.locator(".message.error")).to_contain_text("HTTP 500", timeout=10_000)
