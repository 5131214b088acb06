"""Refuse webhook targets that would let a caller reach our own network.

Link-local (which includes cloud metadata at 169.254.169.254) and other
never-routable ranges are always refused. Loopback and private ranges are
refused unless `COMETJOBS_WEBHOOK_ALLOWED_CIDRS` covers them. The check runs
when a job is submitted and again, after DNS resolution, right before each
send; the send then connects to the address that was checked, so a name that
resolves differently by then (DNS rebinding) cannot slip through.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

ALWAYS_REFUSED = [
    ipaddress.ip_network(n)
    for n in (
        "0.0.0.0/8", "169.254.0.0/16", "fe80::/10", "192.0.0.0/24",
        "224.0.0.0/4", "240.0.0.0/4", "255.255.255.255/32", "ff00::/8", "::/128",
        "fd00:ec2::254/128",
    )
]
# IPv6 forms that carry an IPv4 address a gateway may route to: NAT64 (RFC 6052, 8215).
NAT64 = [ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48")]
METADATA_HOSTS = {"metadata.google.internal", "metadata", "instance-data", "metadata.azure.com"}


class UnsafeURL(ValueError):
    pass


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str
    port: int
    address: str


def _embedded(address: IPAddress) -> IPAddress:
    """The IPv4 address an IPv6 address stands for (mapped, NAT64, 6to4, Teredo), else itself."""
    if not isinstance(address, ipaddress.IPv6Address):
        return address
    if address.ipv4_mapped:
        return address.ipv4_mapped
    if any(address in net for net in NAT64):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address.sixtofour:
        return address.sixtofour
    if address.teredo:
        return address.teredo[1]
    return address


def check_address(address: IPAddress, allowed: Sequence[IPNetwork]) -> None:
    address = _embedded(address)
    for net in ALWAYS_REFUSED:
        if address.version == net.version and address in net:
            raise UnsafeURL(f"{address} is in {net}, which is never allowed (link-local or cloud metadata)")
    if any(address.version == net.version and address in net for net in allowed):
        return
    if not address.is_global:
        raise UnsafeURL(
            f"{address} is a private or loopback address; allow it with COMETJOBS_WEBHOOK_ALLOWED_CIDRS"
        )


def parse(url: str) -> tuple[str, str, int]:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise UnsafeURL("webhook URL is malformed or has an invalid port") from None
    if parts.scheme not in ("http", "https"):
        raise UnsafeURL("webhook URLs must be http or https")
    if not parts.hostname:
        raise UnsafeURL("webhook URL has no host")
    if parts.username or parts.password:
        raise UnsafeURL("webhook URLs must not carry credentials")
    host = parts.hostname.rstrip(".").lower()
    if _literal(host) is None:
        host = _dns_name(host)
    if host in METADATA_HOSTS:
        raise UnsafeURL(f"{host} is a cloud metadata host")
    return parts.scheme, host, port or (443 if parts.scheme == "https" else 80)


def _dns_name(host: str) -> str:
    """The name as DNS carries it (IDNA), or UnsafeURL: labels of 1-63 octets, 253 in all.
    The resolver would refuse such a name too, but with a UnicodeError, not an OSError."""
    try:
        ascii_host = host.encode("idna").decode("ascii")
    except UnicodeError:
        raise UnsafeURL("webhook URL's host is not a valid DNS name (empty label, label over 63 "
                        "characters, or characters IDNA cannot encode)") from None
    if len(ascii_host) > 253 or any(not 0 < len(label) <= 63 for label in ascii_host.split(".")):
        raise UnsafeURL("webhook URL's host is not a valid DNS name (labels of 1-63 characters, 253 in all)")
    return ascii_host


def _literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _addresses(infos: list[tuple[Any, ...]]) -> list[IPAddress]:
    seen: list[IPAddress] = []
    for info in infos:
        address = ipaddress.ip_address(info[4][0].split("%")[0])
        if address not in seen:
            seen.append(address)
    return seen


def resolve(host: str, port: int) -> list[IPAddress]:
    return _addresses(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM))


def _target(scheme: str, host: str, port: int, addresses: list[IPAddress], allowed: Sequence[IPNetwork]) -> Target:
    if not addresses:
        raise UnsafeURL(f"{host} resolves to nothing")
    # Every address is checked, not just the one used: a resolver may rotate them.
    for address in addresses:
        check_address(address, allowed)
    first = addresses[0]
    if isinstance(first, ipaddress.IPv6Address) and first.ipv4_mapped:
        first = first.ipv4_mapped
    return Target(scheme=scheme, host=host, port=port, address=str(first))


def check_at_submit(url: str, allowed: Sequence[IPNetwork]) -> None:
    """Syntax, literal addresses, and (best effort) what the name resolves to now."""
    _scheme, host, port = parse(url)
    literal = _literal(host)
    if literal is not None:
        check_address(literal, allowed)
        return
    try:
        addresses = resolve(host, port)
    except OSError:
        return  # unresolvable now; the send-time check decides
    for address in addresses:
        check_address(address, allowed)


def check_at_send(url: str, allowed: Sequence[IPNetwork]) -> Target:
    """Resolve and check every address; return the one to connect to."""
    scheme, host, port = parse(url)
    literal = _literal(host)
    try:
        addresses = [literal] if literal is not None else resolve(host, port)
    except OSError as exc:
        raise UnsafeURL(f"cannot resolve {host}: {exc}") from None
    return _target(scheme, host, port, addresses, allowed)


def precheck(url: str, allowed: Sequence[IPNetwork]) -> None:
    """Before a send: the URL's form, and its address if it is one (names are checked
    when resolved, at connect). A pure function of its arguments, so a URL that passed
    is remembered: a batch sends to few distinct URLs, thousands of times."""
    _precheck(url, tuple(allowed))


@lru_cache(maxsize=4096)
def _precheck(url: str, allowed: tuple[IPNetwork, ...]) -> None:
    # Refusals raise, and lru_cache keeps no exceptions: only passes are remembered.
    _scheme, host, _port = parse(url)
    literal = _literal(host)
    if literal is not None:
        check_address(literal, allowed)


async def check_at_send_async(url: str, allowed: Sequence[IPNetwork]) -> Target:
    """`check_at_send` without blocking the event loop on DNS."""
    scheme, host, port = parse(url)
    literal = _literal(host)
    if literal is not None:
        return _target(scheme, host, port, [literal], allowed)
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise UnsafeURL(f"cannot resolve {host}: {exc}") from None
    return _target(scheme, host, port, _addresses(infos), allowed)
