"""Webhook addresses, checked against server-side request forgery (SSRF): Locard must never be made to call into
its own network (Standard Webhooks, "Server side request forgery").

`check_url` takes only https, except to this machine's loopback (`LOOPBACK_HOSTS`: http allowed; refused in
production); IP literals, and every address a name resolves to, must be public (`public_address`): private,
loopback, link-local (cloud metadata), shared, reserved, documentation, multicast and unspecified addresses are
refused, also when embedded in IPv6 (IPv4-mapped, 6to4, NAT64; Teredo); so are names of one label (resolved
through search domains to internal hosts), `.localhost`, `.local`, `.internal` names, numeric host forms that are
not canonical addresses ("2130706433", "0x7f.1", "127.1"), credentials in the URL and fragments. `check_url`
resolves nothing; `resolve_target` resolves a name when a delivery is sent, and the delivery connects to the
address checked (`workers.delivery`), so a name that changes to an internal address between the check and the
connection (DNS rebinding) gains nothing. Redirects are never followed.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

LOOPBACK_HOSTS = {"localhost": "127.0.0.1", "127.0.0.1": "127.0.0.1", "::1": "::1"}
MAX_URL = 2000
NUMERIC_HOST = re.compile(r"(0x[0-9a-f]*|[0-9]+)(\.(0x[0-9a-f]*|[0-9]+))*\.?")
HOST_LABEL = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
INTERNAL_SUFFIXES = (".localhost", ".local", ".internal", ".localdomain", ".home.arpa")
NAT64 = ipaddress.ip_network("64:ff9b::/96")


class TargetRefused(ValueError):
    """An address Locard will not send to (the message says why)."""


@dataclass(frozen=True)
class Target:
    """A checked webhook address."""

    scheme: str
    host: str  # lower-case; an IPv6 literal without brackets
    port: int
    path: str  # path and query

    @property
    def loopback(self) -> bool:
        return self.host in LOOPBACK_HOSTS


def public_address(address: str) -> bool:
    """Whether an IP address may be sent to: global unicast, also when embedded in IPv6 (mapped, 6to4, NAT64)."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour or (ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
                                                      if ip in NAT64 else None)
        if embedded is not None:
            return public_address(str(embedded))
        if ip.teredo is not None:
            return False
    return ip.is_global and not ip.is_multicast and not ip.is_reserved and not ip.is_unspecified


def check_url(url: str, *, allow_loopback: bool) -> Target:
    """The address of `url` if Locard may send to it; `TargetRefused` otherwise (no name is resolved here)."""
    if len(url) > MAX_URL or not url.isprintable() or any(c.isspace() for c in url):
        raise TargetRefused("the address is too long or holds spaces or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise TargetRefused(f"not a valid address: {exc}") from None
    host = (parts.hostname or "").lower()
    if parts.scheme not in ("https", "http") or not host:
        raise TargetRefused("the address must be an https:// URL")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise TargetRefused("the address must not hold credentials")
    if parts.fragment:
        raise TargetRefused("the address must not hold a fragment")
    target = Target(parts.scheme, host, port or (443 if parts.scheme == "https" else 80),
                    (parts.path or "/") + (f"?{parts.query}" if parts.query else ""))
    if target.loopback:
        if not allow_loopback:
            raise TargetRefused("this machine's own addresses are refused in production")
        return target
    if parts.scheme != "https":
        raise TargetRefused("the address must be https (http only to 127.0.0.1 or localhost)")
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None:
        if not public_address(host):
            raise TargetRefused(f"{host} is not a public address")
        return target
    labels = host.rstrip(".").split(".")
    if NUMERIC_HOST.fullmatch(host) or labels[-1].isdigit():
        raise TargetRefused(f"{host} is a numeric host that is not a canonical IP address")
    if len(labels) < 2 or host.rstrip(".").endswith(INTERNAL_SUFFIXES) or host.rstrip(".") == "localhost":
        raise TargetRefused(f"{host} names an internal host")
    if not all(HOST_LABEL.fullmatch(label) for label in labels):
        raise TargetRefused(f"{host} is not a valid host name")
    return target


Resolver = Callable[[str, int], Sequence[str]]


def system_resolver(host: str, port: int) -> list[str]:
    """The addresses of `host` (the system's resolver)."""
    return [str(info[4][0]) for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)]


def resolve_target(target: Target, *, allow_loopback: bool, resolve: Resolver = system_resolver) -> str:
    """The address to connect to for `target`: every address its name resolves to must be public."""
    if target.loopback:
        if not allow_loopback:
            raise TargetRefused("this machine's own addresses are refused in production")
        return LOOPBACK_HOSTS[target.host]
    try:
        ipaddress.ip_address(target.host)
        addresses: Sequence[str] = [target.host]
    except ValueError:
        try:
            addresses = resolve(target.host, target.port)
        except OSError as exc:
            raise TargetRefused(f"{target.host} does not resolve: {exc}") from None
    if not addresses:
        raise TargetRefused(f"{target.host} does not resolve")
    for address in addresses:
        if not public_address(address):
            raise TargetRefused(f"{target.host} resolves to {address}, which is not a public address")
    return addresses[0]
