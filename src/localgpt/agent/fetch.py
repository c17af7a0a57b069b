"""``web_fetch``: read a public web page, with no way to reach the machine's own network.

Every hop, redirects included, is checked before it is made: the host must resolve only to
public addresses (no loopback, private, link-local, shared or reserved ranges, also not
inside an IPv6 address that embeds one: mapped, compatible, NAT64 or 6to4), and the
connection then goes to exactly the addresses that were checked, so DNS cannot change its
answer in between. Size and time are capped. ``allow`` names ``host:port`` pairs the user
trusts anyway (an intranet wiki, a local docs server); a redirect from one is checked afresh.
"""

from __future__ import annotations

import asyncio
import html
import ipaddress
import re
import socket
from collections.abc import Iterable
from typing import Any
from urllib.parse import urljoin, urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

MAX_REDIRECTS = 5


class FetchError(Exception):
    """A refused or failed fetch, worded for the model."""


# IPv6 forms that carry an IPv4 address in their low 32 bits and reach it: IPv4-compatible
# (::a.b.c.d, deprecated but still routed by some stacks) and NAT64's well-known prefix.
_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
# The local-use NAT64 prefix (RFC 8215) is never public, and where the IPv4 address sits in it
# depends on the prefix length the operator chose, so the whole block is refused.
_LOCAL_NAT64 = ipaddress.IPv6Network("64:ff9b:1::/48")


def _public(address: str) -> bool:
    """Whether ``address`` is on the public internet, judging an IPv4 address embedded in an
    IPv6 one (mapped, compatible, NAT64, 6to4) by itself: ``::ffff:127.0.0.1``,
    ``::127.0.0.1``, ``64:ff9b::7f00:1`` and ``2002:7f00:1::`` all reach loopback."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        if ip in _LOCAL_NAT64:
            return False
        if ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        elif ip.sixtofour is not None:
            ip = ip.sixtofour
        elif ip in _IPV4_COMPATIBLE or ip in _NAT64:
            ip = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip.is_global and not ip.is_multicast


class _PinnedResolver(AbstractResolver):
    """Answers only with the addresses that were already checked for this hop."""

    def __init__(self, host: str, infos: list[tuple[int, str]]) -> None:
        self._host = host
        self._infos = infos

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        if host != self._host:
            raise OSError(f"unexpected host {host}")
        return [
            ResolveResult(
                hostname=host,
                host=address,
                port=port,
                family=fam,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
            for fam, address in self._infos
        ]

    async def close(self) -> None:
        return None


async def _check(url: str, allow: Iterable[str]) -> tuple[str, list[tuple[int, str]]]:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise FetchError(f"refused: only http and https URLs can be fetched ({url})")
    host = parts.hostname
    port = parts.port or (443 if parts.scheme == "https" else 80)
    trusted = f"{host}:{port}" in allow
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None:
        if not trusted and not _public(host):
            raise FetchError(f"refused: {host} is not a public address")
        return host, []
    try:
        found = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise FetchError(f"cannot resolve {host}: {exc.strerror}") from None
    infos = list(dict.fromkeys((int(family), str(addr[0])) for family, _, _, _, addr in found))
    if not trusted:
        private = [address for _, address in infos if not _public(address)]
        if private:
            raise FetchError(f"refused: {host} resolves to a non-public address ({private[0]})")
    return host, infos


def page_text(raw: bytes, content_type: str) -> str:
    text = raw.decode("utf-8", "replace")
    if "html" not in content_type:
        return text
    text = re.sub(r"(?is)<(script|style|noscript|svg)[^>]*>.*?</\1>", " ", text)
    text = re.sub(r"(?i)<(br|/p|/div|/li|/h[1-6]|/tr)[^>]*>", "\n", text)
    text = re.sub(r"<[^>]+>", " ", text)
    text = html.unescape(text)
    text = re.sub(r"[ \t\r\f\v]+", " ", text)
    text = re.sub(r" ?\n ?", "\n", text)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


async def fetch(
    url: str, *, max_bytes: int, timeout: float = 15.0, allow: Iterable[str] = ()
) -> dict[str, Any]:
    """Fetch ``url`` as text: ``{"url", "status", "content_type", "text", "truncated"}``."""
    allowed = frozenset(allow)
    try:
        async with asyncio.timeout(timeout):
            for _ in range(MAX_REDIRECTS + 1):
                host, infos = await _check(url, allowed)
                connector = aiohttp.TCPConnector(
                    resolver=_PinnedResolver(host, infos) if infos else None, force_close=True
                )
                async with (
                    aiohttp.ClientSession(connector=connector) as session,
                    session.get(
                        url,
                        allow_redirects=False,
                        headers={"User-Agent": "LocalGPT/0.1 (+web_fetch)"},
                    ) as resp,
                ):
                    if resp.status in (301, 302, 303, 307, 308) and "Location" in resp.headers:
                        url = urljoin(url, resp.headers["Location"])
                        continue
                    raw = bytearray()
                    while len(raw) <= max_bytes:
                        block = await resp.content.read(max_bytes + 1 - len(raw))
                        if not block:
                            break
                        raw += block
                    content_type = resp.headers.get("Content-Type", "")
                    text = page_text(bytes(raw[:max_bytes]), content_type)
                    return {
                        "url": url,
                        "status": resp.status,
                        "content_type": content_type,
                        "text": text,
                        "truncated": len(raw) > max_bytes,
                    }
            raise FetchError(f"too many redirects (more than {MAX_REDIRECTS})")
    except TimeoutError:
        raise FetchError(f"timed out after {timeout:g} s") from None
    except aiohttp.ClientError as exc:
        raise FetchError(f"fetch failed: {exc}") from None
