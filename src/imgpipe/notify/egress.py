"""Where a webhook may go: never to loopback, private, link-local or metadata addresses.

A URL is checked twice: when an upload names it (so the client hears at once), and at
every delivery against the addresses the name resolves to *then*, which are the very
addresses the sender connects to (no second lookup that DNS rebinding could change).
``WEBHOOK_ALLOW_HOSTS`` (host names, addresses and CIDR ranges) opens exceptions.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from imgpipe.domain.webhooks import BadCallbackUrl

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
# host, port -> addresses (strings); raise OSError when the name does not resolve
Resolver = Callable[[str, int], list[str]]
MAX_URL_LENGTH = 2048


def system_resolver(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


@dataclass(frozen=True, slots=True)
class AllowList:
    hosts: frozenset[str] = frozenset()
    networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def parse(cls, text: str) -> AllowList:
        hosts: set[str] = set()
        networks: list[IPNetwork] = []
        for entry in (part.strip() for part in text.split(",")):
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
            except ValueError:
                if "/" in entry or " " in entry:
                    raise ValueError(f"not a host name, address or CIDR range: {entry!r}") from None
                hosts.add(entry.lower().rstrip("."))
        return cls(frozenset(hosts), tuple(networks))

    def allows_address(self, address: IPAddress) -> bool:
        return any(address in network for network in self.networks)


@dataclass(frozen=True, slots=True)
class Target:
    """A checked URL and the addresses it may be sent to (connect to these, nothing else)."""

    url: str
    scheme: str
    host: str  # as written in the URL, lower case, no brackets
    port: int
    addresses: tuple[str, ...]
    host_is_address: bool = field(default=False)


def refusal(address: IPAddress) -> str | None:
    """Why an address is no place for a webhook, or None if it is a public address."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    for test, reason in (
        (address.is_unspecified, "unspecified"),
        (address.is_loopback, "loopback"),
        (address.is_link_local, "link-local (cloud metadata lives here)"),
        (address.is_multicast, "multicast"),
        (address.is_private, "private"),
        (address.is_reserved, "reserved"),
    ):
        if test:
            return reason
    if not address.is_global:
        return "not globally routable"
    return None


def check_url(url: str, allow: AllowList, resolve: Resolver = system_resolver) -> Target:
    """The target if every address the URL's host resolves to is allowed; else refuse."""
    if len(url) > MAX_URL_LENGTH:
        raise BadCallbackUrl(f"The callback URL is longer than {MAX_URL_LENGTH} characters.")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise BadCallbackUrl(f"The callback URL is not a valid URL: {exc}.") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise BadCallbackUrl("The callback URL must be an http:// or https:// URL.")
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise BadCallbackUrl("The callback URL has no host.")
    port = port or (443 if scheme == "https" else 80)
    literal = _literal(host)
    if literal is not None:
        addresses = [str(literal)]
    else:
        try:
            addresses = resolve(host, port)
        except (OSError, UnicodeError):
            raise BadCallbackUrl(f"The callback host {host!r} does not resolve.") from None
        if not addresses:
            raise BadCallbackUrl(f"The callback host {host!r} does not resolve.")
    if host not in allow.hosts:
        for text in addresses:
            address = ipaddress.ip_address(text.split("%", 1)[0])
            reason = refusal(address)
            if reason is not None and not allow.allows_address(address):
                shown = host if literal is not None else f"{host} ({address})"
                raise BadCallbackUrl(
                    f"The callback URL points to a {reason} address: {shown}. Use a public "
                    "address, or list it in IMGPIPE_WEBHOOK_ALLOW_HOSTS."
                )
    return Target(url, scheme, host, port, tuple(addresses), literal is not None)


def _literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None
