"""The HTTP client webhooks go out on: it only ever connects to checked addresses.

Host names are checked in the connector's resolver, so every new connection is
checked after DNS resolution and goes to an address that passed; literal
addresses are checked by `ssrf.precheck` before each send. Connections keep the
URL's host name, so TLS (SNI and certificate checks) and keep-alive work as
usual. aiohttp rather than httpx: at delivery volumes the client's CPU per
request is the limit, and aiohttp spends a fraction of httpx's
(bench/webhooks.py prints both).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Sequence
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from app.core import aio
from app.core.settings import get_settings
from app.webhooks import ssrf


class CheckedResolver(AbstractResolver):
    """Resolves like the system resolver, then refuses the name unless every address passes."""

    def __init__(self, allowed: Sequence[ssrf.IPNetwork]) -> None:
        self.allowed = list(allowed)

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        target = await ssrf.check_at_send_async(f"http://{_bracket(host)}:{port or 80}/", self.allowed)
        address = ipaddress.ip_address(target.address)
        return [{
            "hostname": host, "host": target.address, "port": port, "proto": 0, "flags": socket.AI_NUMERICHOST,
            "family": socket.AF_INET6 if address.version == 6 else socket.AF_INET,
        }]

    async def close(self) -> None:
        pass


def _bracket(host: str) -> str:
    return f"[{host}]" if ":" in host else host


class WebhookClient:
    """A pooled aiohttp session for webhook sends (create it inside the running loop)."""

    def __init__(self, allowed: Sequence[ssrf.IPNetwork], timeout: float, max_connections: int) -> None:
        self.session = aiohttp.ClientSession(
            # A short DNS cache: what it holds was checked, and names are re-checked soon after.
            connector=aiohttp.TCPConnector(
                limit=max_connections, resolver=CheckedResolver(allowed), ttl_dns_cache=10, family=socket.AF_UNSPEC,
            ),
            timeout=aiohttp.ClientTimeout(total=timeout),
            # The slice of the body we keep is the bytes as sent (we ask for no encoding anyway).
            auto_decompress=False,
            # No proxies from the environment: the check must see the real peer.
            trust_env=False,
        )

    def post(self, url: str, **kwargs: Any) -> Any:
        return self.session.post(url, allow_redirects=False, **kwargs)

    async def aclose(self) -> None:
        await self.session.close()

    async def __aenter__(self) -> WebhookClient:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.aclose()


def make_client(allowed: Sequence[ssrf.IPNetwork], timeout: float, max_connections: int) -> WebhookClient:
    return WebhookClient(allowed, timeout, max_connections)


def shared_client() -> WebhookClient:
    """The worker process's client, kept for the life of its event loop."""
    settings = get_settings()
    return aio.loop_resource("webhooks", lambda: make_client(
        settings.webhook_allowed_cidrs, settings.webhook_timeout.total_seconds(), settings.webhook_concurrency
    ))
