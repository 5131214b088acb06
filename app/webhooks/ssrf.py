"""Refuse webhook targets that would let a caller reach our own network.

Link-local (which includes cloud metadata at 169.254.169.254) and other
never-routable ranges are always refused. Loopback and private ranges are
refused unless `COMETJOBS_WEBHOOK_ALLOWED_CIDRS` covers them. The check runs
when a job is submitted and again, after DNS resolution, right before each
send; the send then connects to the address that was checked.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Sequence
from dataclasses import dataclass
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
METADATA_HOSTS = {"metadata.google.internal", "metadata", "instance-data", "metadata.azure.com"}


class UnsafeURL(ValueError):
    pass


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str
    port: int
    address: str


def _normalise(address: IPAddress) -> IPAddress:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped
    return address


def check_address(address: IPAddress, allowed: Sequence[IPNetwork]) -> None:
    address = _normalise(address)
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
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise UnsafeURL("webhook URLs must be http or https")
    if not parts.hostname:
        raise UnsafeURL("webhook URL has no host")
    if parts.username or parts.password:
        raise UnsafeURL("webhook URLs must not carry credentials")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise UnsafeURL("webhook URL has an invalid port") from None
    host = parts.hostname.rstrip(".").lower()
    if host in METADATA_HOSTS:
        raise UnsafeURL(f"{host} is a cloud metadata host")
    return parts.scheme, host, port


def _literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def resolve(host: str, port: int) -> list[IPAddress]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    seen: list[IPAddress] = []
    for info in infos:
        address = ipaddress.ip_address(info[4][0].split("%")[0])
        if address not in seen:
            seen.append(address)
    return seen


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
    if not addresses:
        raise UnsafeURL(f"{host} resolves to nothing")
    for address in addresses:
        check_address(address, allowed)
    return Target(scheme=scheme, host=host, port=port, address=str(_normalise(addresses[0])))
