"""The chat page, end to end: Playwright drives Debian's Chromium against the real server on
the fake upstream. Screenshots go to artifacts/web/."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Dialog, Locator, Page, expect, sync_playwright

from tests.conftest import ROOT, Server, gateway_config
from tests.fakes import FakeCall, Script, wait_for
from tests.fakes.openai_fake import FakeOpenAI

# Each turn now searches the memory first (an embedder run and, on the first one, loading
# it): on a busy 2-core machine the default 5 s per expectation is too tight.
expect.set_options(timeout=15_000)

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = ROOT / "artifacts" / "web"
KEY = "page-key-0123456789"
SECOND_MODEL = "second-model"  # listed as openai/second-model besides the default
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
            extra=f"""models = ["{SECOND_MODEL}"]

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


def answered(page: Page, text: str) -> None:
    """Send ``text`` and wait for the fake's echo and the end of the turn."""
    send(page, text)
    expect(page.locator(".message.assistant").last).to_have_text(f"You said: {text}")
    expect(page.locator("#send")).to_be_visible()


def session(page: Page, title: str) -> Locator:
    return page.locator(".session", has_text=title)


def shown(page: Page) -> list[str]:
    return page.locator("#messages .message").all_inner_texts()


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
    # As in any chat app, the question and the words shown so far stay in the session.
    shown = page.locator(".message.assistant").last.inner_text()
    page.reload()
    expect(page.locator(".message.user").last).to_have_text("talk for a long time")
    kept = page.locator(".message.assistant").last
    expect(kept).to_contain_text("word1")
    assert "word59" not in kept.inner_text() and len(kept.inner_text()) <= len(shown) + 20


def test_a_provider_error_is_visible(page: Page, openai_upstream: FakeOpenAI) -> None:
    openai_upstream.script("fake-model", Script(status=500))
    send(page, "this will fail")
    expect(page.locator(".message.error")).to_contain_text("HTTP 500", timeout=10_000)


def test_switching_sessions_shows_each_history(page: Page) -> None:
    answered(page, "apples are red")
    page.click("#new-chat")
    expect(page.locator(".message")).to_have_count(0)
    answered(page, "bananas are yellow")
    apples, bananas = session(page, "apples are red"), session(page, "bananas are yellow")

    apples.click()
    expect(page.locator(".message.assistant")).to_have_text(["You said: apples are red"])
    expect(apples).to_have_class("session active")
    bananas.click()
    expect(page.locator(".message.assistant")).to_have_text(["You said: bananas are yellow"])

    # Fast clicks: the first session's history arrives last and must not be added to the view.
    slow = apples.get_attribute("data-id")
    page.evaluate(
        """(id) => {
          const fetch = window.fetch;
          window.fetch = async (url, options) => {
            const response = await fetch(url, options);
            if (String(url).endsWith(`/api/sessions/${id}`)) {
              await new Promise((resolve) => setTimeout(resolve, 700));
              window.slowArrived = true;
            }
            return response;
          };
        }""",
        slow,
    )
    apples.click()
    bananas.click()
    page.wait_for_function("() => window.slowArrived === true")
    page.wait_for_timeout(300)
    assert shown(page) == ["bananas are yellow", "You said: bananas are yellow"]
    expect(bananas).to_have_class("session active")


def test_switching_while_a_reply_streams_stops_it(page: Page, openai_upstream: FakeOpenAI) -> None:
    answered(page, "quiet chat")
    page.click("#new-chat")
    openai_upstream.script("fake-model", Script(text=[f"chunk{i} " for i in range(60)], delay=0.2))
    send(page, "noisy chat")
    expect(page.locator(".message.assistant").last).to_contain_text("chunk1", timeout=10_000)
    noisy = session(page, "noisy chat")
    expect(noisy).to_have_class("session active")  # listed as soon as the server made it
    expect(noisy.locator(".delete")).to_be_disabled()  # the server would refuse: 409
    noisy = page.locator(f'.session[data-id="{noisy.get_attribute("data-id")}"]')

    session(page, "quiet chat").click()
    expect(page.locator("#send")).to_be_visible()
    expect(page.locator("#stop")).to_be_hidden()
    assert wait_for(lambda: bool(openai_upstream.disconnects), 5)  # the reply was stopped
    page.wait_for_timeout(500)  # what the old stream would have painted by now
    assert shown(page) == ["quiet chat", "You said: quiet chat"]
    expect(session(page, "quiet chat")).to_have_class("session active")

    # The page is usable at once: a message goes to this session.
    openai_upstream.script("fake-model", Script())
    answered(page, "quiet again")
    assert shown(page)[-2:] == ["quiet again", "You said: quiet again"]
    expect(noisy.locator(".delete")).to_be_enabled()


def test_deleting_a_session_removes_it_for_good(page: Page) -> None:
    answered(page, "keep this chat")
    page.click("#new-chat")
    answered(page, "throw this chat away")
    doomed = session(page, "throw this chat away")
    expect(doomed).to_have_class("session active")
    doomed.hover()
    doomed.locator(".delete").click()
    expect(doomed).to_have_count(0)
    expect(page.locator(".message")).to_have_count(0)
    expect(session(page, "keep this chat")).to_have_count(1)
    page.reload()
    kept = session(page, "keep this chat")
    expect(kept).to_have_count(1)
    expect(doomed).to_have_count(0)
    expect(page.locator(".message.error")).to_have_count(0)

    # A refusal (the server answers 409 while a session is answering) is shown, not swallowed.
    busy = '{"error": {"message": "Session is answering", "code": "session_busy"}}'
    page.route(
        "**/api/sessions/*",
        lambda route: (
            route.fulfill(status=409, content_type="application/json", body=busy)
            if route.request.method == "DELETE"
            else route.continue_()
        ),
    )
    kept.hover()
    kept.locator(".delete").click()
    expect(page.locator(".message.error")).to_have_text("Error: HTTP 409: Session is answering")
    expect(kept).to_have_count(1)


def test_the_picked_model_is_the_one_asked(
    page: Page, server: Server, openai_upstream: FakeOpenAI
) -> None:
    answered(page, "which model first")
    assert openai_upstream.last_body()["model"] == "fake-model"
    page.select_option("#model", f"openai/{SECOND_MODEL}")
    answered(page, "which model now")
    assert openai_upstream.last_body()["model"] == SECOND_MODEL
    page.reload()
    expect(page.locator("#model")).to_have_value(f"openai/{SECOND_MODEL}")  # the session keeps it

    # A session made elsewhere, without a model, gets the server's default (listed first).
    made = page.request.post(
        f"{server.url}/api/sessions", headers={"Authorization": f"Bearer {KEY}"}
    )
    assert made.ok and made.json()["model"] is None
    page.reload()
    expect(page.locator("#model")).to_have_value(f"openai/{SECOND_MODEL}")
    page.locator(f'.session[data-id="{made.json()["id"]}"]').click()
    expect(page.locator("#model")).to_have_value("openai/fake-model")
    answered(page, "which model here")
    assert openai_upstream.last_body()["model"] == "fake-model"


def test_html_from_the_model_is_shown_as_text(page: Page, openai_upstream: FakeOpenAI) -> None:
    dialogs: list[str] = []

    def on_dialog(dialog: Dialog) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", on_dialog)
    evil = "<img src=x onerror=alert(1)> and <script>window.pwned = 1</script> *end*"
    openai_upstream.script("fake-model", Script(text=[evil[:12], evil[12:]]))
    send(page, "say something nasty")
    expect(page.locator("#send")).to_be_visible()
    page.wait_for_timeout(300)  # time for an onerror to fire
    for origin in ("streamed", "history"):
        answer = page.locator(".message.assistant").last
        expect(answer).to_have_text(
            "<img src=x onerror=alert(1)> and <script>window.pwned = 1</script> end"
        )
        expect(answer.locator("em")).to_have_text("end")  # markdown still applies
        assert answer.locator("img, script").count() == 0, origin
        assert page.evaluate("() => window.pwned") is None, origin
        assert dialogs == [], origin
        page.reload()
        expect(page.locator(".message.user").last).to_have_text("say something nasty")
        page.wait_for_timeout(300)


def test_markdown_links_are_cut_out_before_emphasis(page: Page) -> None:
    html = page.evaluate(
        """() => [
          Markdown.render("[a](https://x*y) b*"),
          Markdown.render("see [docs](javascript:alert(1)) and `<b>`"),
        ]"""
    )
    assert html[0] == (
        '<p><a href="https://x*y" target="_blank" rel="noopener noreferrer">a</a> b*</p>'
    )
    assert html[1] == "<p>see [docs](javascript:alert(1)) and <code>&lt;b&gt;</code></p>"


def test_a_failed_request_shows_its_status_and_message(page: Page) -> None:
    page.route(
        "**/api/chat/stream",
        lambda route: route.fulfill(
            status=503,
            content_type="application/json",
            body='{"error": {"message": "the queue is full", "type": "server_error"}}',
        ),
    )
    send(page, "anyone there?")
    expect(page.locator(".message.error")).to_have_text("Error: HTTP 503: the queue is full")
    expect(page.locator("#send")).to_be_visible()
    page.unroute("**/api/chat/stream")
    page.route(
        "**/api/chat/stream",
        lambda route: route.fulfill(
            status=200,
            content_type="text/event-stream",
            body='event: content\ndata: {"type": "content", "delta": "half"}\n\n',
        ),
    )
    send(page, "and now?")
    expect(page.locator(".message.error").last).to_contain_text("ended before it finished")


def test_the_heartbeats_last_run_is_shown(page: Page, server: Server) -> None:
    expect(page.locator("#heartbeat")).to_be_hidden()  # off, and never run
    ran = httpx.post(
        f"{server.url}/api/heartbeat/run", headers={"Authorization": f"Bearer {KEY}"}, timeout=30
    )
    assert ran.json()["outcome"] == "ok"  # no tasks in HEARTBEAT.md: no model needed
    page.reload()
    expect(page.locator("#heartbeat")).to_contain_text("Heartbeat: off")
    expect(page.locator("#heartbeat")).to_contain_text("last: ok at")
