"""web_fetch refuses the machine's own network, also after redirects, against real servers."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from aiohttp import web

from localgpt.agent.fetch import FetchError, _public, fetch
from tests.fakes import FakeServer


class Site(FakeServer):
    """A small web site on loopback: pages, redirects, a big page and a slow one."""

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/page", self.page)
        app.router.add_get("/redirect", self.redirect)
        app.router.add_get("/big", self.big)
        app.router.add_get("/slow", self.slow)

    async def page(self, request: web.Request) -> web.Response:
        return web.Response(
            text="<html><body><h1>Hello</h1><script>x()</script><p>World"
            " &amp; more</p></body></html>",
            content_type="text/html",
        )

    async def redirect(self, request: web.Request) -> web.Response:
        raise web.HTTPFound(request.query["to"])

    async def big(self, request: web.Request) -> web.Response:
        return web.Response(text="a" * 50_000)

    async def slow(self, request: web.Request) -> web.Response:
        await asyncio.sleep(5)
        return web.Response(text="late")


@pytest.fixture(scope="module")
def sites() -> Iterator[tuple[Site, Site]]:
    trusted, other = Site().start(), Site().start()
    yield trusted, other
    trusted.stop()
    other.stop()


def run(
    url: str, allow: tuple[str, ...] = (), max_bytes: int = 10_000, timeout: float = 10
) -> dict[str, object]:
    return asyncio.run(fetch(url, max_bytes=max_bytes, allow=allow, timeout=timeout))


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9/",
        "http://localhost:9/",
        "http://10.1.2.3/",
        "http://192.168.0.1/",
        "http://172.16.5.4/",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]:9/",
        "http://[::ffff:127.0.0.1]:9/",
        "http://0.0.0.0:9/",
        "http://100.64.0.1/",
        "file:///etc/passwd",
        "ftp://example.com/",
    ],
)
def test_non_public_targets_are_refused_before_connecting(url: str) -> None:
    with pytest.raises(FetchError, match="refused"):
        run(url)


@pytest.mark.parametrize(
    "address",
    [
        "::127.0.0.1",  # IPv4-compatible
        "::10.0.0.1",
        "::ffff:169.254.169.254",  # IPv4-mapped
        "64:ff9b::127.0.0.1",  # NAT64, well-known prefix
        "64:ff9b::c0a8:1",  # 192.168.0.1
        "64:ff9b:1::a00:1",  # NAT64, local-use prefix
        "64:ff9b:1:a00:1::",
        "2002:7f00:1::1",  # 6to4 of 127.0.0.1
        "2002:a9fe:a9fe::",  # 6to4 of 169.254.169.254
        "2002:6440:1::",  # 6to4 of 100.64.0.1
    ],
)
def test_ipv6_forms_of_a_private_ipv4_address_are_refused(address: str) -> None:
    assert not _public(address)
    with pytest.raises(FetchError, match="refused"):
        run(f"http://[{address}]:9/")


@pytest.mark.parametrize(
    "address",
    ["8.8.8.8", "2606:4700::1111", "::ffff:8.8.8.8", "64:ff9b::808:808", "2002:808:808::1"],
)
def test_ipv6_forms_of_a_public_ipv4_address_stay_public(address: str) -> None:
    assert _public(address)


def test_loopback_site_is_refused_unless_allowed(sites: tuple[Site, Site]) -> None:
    trusted, _ = sites
    with pytest.raises(FetchError, match="refused"):
        run(f"{trusted.url}/page")
    page = run(f"{trusted.url}/page", allow=(f"127.0.0.1:{trusted.port}",))
    assert page["status"] == 200
    assert page["text"] == "Hello\nWorld & more"  # markup and scripts removed


@pytest.mark.parametrize(
    "target",
    [
        "http://127.0.0.1:{other}/page",
        "http://10.0.0.5/x",
        "http://169.254.169.254/",
        "http://localhost:{other}/page",
    ],
)
def test_a_redirect_to_a_private_address_is_refused(sites: tuple[Site, Site], target: str) -> None:
    trusted, other = sites
    to = target.format(other=other.port)
    with pytest.raises(FetchError, match="refused"):
        run(f"{trusted.url}/redirect?to={to}", allow=(f"127.0.0.1:{trusted.port}",))
    assert not [r for r in other.requests if r.path == "/page"]


def test_size_and_time_are_capped(sites: tuple[Site, Site]) -> None:
    trusted, _ = sites
    allow = (f"127.0.0.1:{trusted.port}",)
    big = run(f"{trusted.url}/big", allow=allow, max_bytes=1000)
    assert big["truncated"] is True and len(str(big["text"])) == 1000
    with pytest.raises(FetchError, match="timed out"):
        run(f"{trusted.url}/slow", allow=allow, timeout=0.5)
