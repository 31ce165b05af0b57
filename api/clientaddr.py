"""The address of the client behind a request: the one source for the audit log and for login throttling.

The socket peer is the client, unless the peer is one of the configured reverse proxies
(`LOCARD_TRUSTED_PROXIES`). Then `X-Forwarded-For` is read from the right: each trusted proxy appended the
address it was connected from, so the right-most address that is not itself a trusted proxy is the client.
Everything left of it was written by the client and is ignored. Without trusted proxies the header is never
read, whoever sends it. (Run uvicorn with `--no-proxy-headers`, so that the peer it reports is the socket's.)
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from functools import lru_cache

from starlette.requests import HTTPConnection

from storage.settings import Settings

UNKNOWN = "unknown"
FORWARDED_FOR = "x-forwarded-for"
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def client_address(request: HTTPConnection, settings: Settings) -> str:
    """The client's address: the socket peer, or the right-most untrusted `X-Forwarded-For` hop behind trusted
    proxies."""
    peer = request.client.host if request.client is not None else UNKNOWN
    networks = _networks(tuple(settings.trusted_proxies))
    if not networks or not _trusted(peer, networks):
        return peer
    hops = [hop.strip() for value in request.headers.getlist(FORWARDED_FOR) for hop in value.split(",")]
    return forwarded_client(peer, hops, networks)


def forwarded_client(peer: str, hops: Sequence[str], networks: Sequence[Network]) -> str:
    """The client behind the trusted `peer`, given the `X-Forwarded-For` hops (left to right)."""
    nearest = peer
    for hop in reversed(hops):
        address = _address(hop)
        if address is None:  # a trusted proxy writes addresses: this entry came from the client; stop here
            return nearest
        if not _trusted(address, networks):
            return address
        nearest = address
    return nearest  # every hop is a trusted proxy: the furthest one is all that is known


def parse_networks(values: Sequence[str]) -> list[Network]:
    """Addresses or CIDR blocks (`10.0.0.0/8`, `::1`) as networks; ValueError names the first bad one."""
    networks = []
    for value in values:
        try:
            networks.append(ipaddress.ip_network(value.strip(), strict=False))
        except ValueError as exc:
            raise ValueError(f"{value!r} is not an IP address or CIDR block") from exc
    return networks


@lru_cache(maxsize=8)
def _networks(values: tuple[str, ...]) -> tuple[Network, ...]:
    return tuple(parse_networks(values))


def _address(hop: str) -> str | None:
    """The IP address of one hop (`1.2.3.4`, `1.2.3.4:5678`, `[2001:db8::1]:443`, `2001:db8::1`), normalised."""
    text = hop.strip()
    if text.startswith("[") and "]" in text:
        text = text[1:text.index("]")]
    elif text.count(":") == 1:
        text = text.split(":", 1)[0]
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


def _trusted(host: str, networks: Sequence[Network]) -> bool:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in network for network in networks)
