"""Which hosts a proxy may point at: the operator's allow/deny networks, metadata never.

A provision makes a worker open a TCP connection to the proxy's host, so a proxy URL is
a way to make this machine connect somewhere. Link-local addresses (169.254.0.0/16,
fe80::/10) and the cloud metadata names are refused always; ``PROXY_DENY_NETWORKS`` adds
to that list and ``PROXY_ALLOW_NETWORKS``, when set, is the only ground proxies may stand
on. Deny wins.

A host *name* is not resolved here: what it points at can change after the check (DNS
rebinding), so checking its address today would prove nothing about tomorrow's connect.
Names are matched as names instead: an entry that is not a CIDR is a host name
(``proxy.example.com``) or, with a leading dot, a domain and everything under it
(``.example.com``). ``localhost`` and ``*.localhost`` are loopback (RFC 6761) and are
checked as 127.0.0.1 and ::1. With an allow list, any other name must be listed by name.
A numeric host that is not a plain dotted IPv4 or an IPv6 literal (``2852039166``,
``0251.0376.0251.0376``, ``0xa9.254.169.254``) is refused outright: resolvers read those as
addresses that the network check would never see.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

ALWAYS_DENIED_NETWORKS: tuple[IpNetwork, ...] = (
    ipaddress.ip_network("169.254.0.0/16"),  # IPv4 link-local, 169.254.169.254 metadata
    ipaddress.ip_network("fe80::/10"),  # IPv6 link-local
    ipaddress.ip_network("fd00:ec2::254/128"),  # AWS metadata over IPv6
    ipaddress.ip_network("100.100.100.200/32"),  # Alibaba Cloud metadata
)
ALWAYS_DENIED_NAMES: tuple[str, ...] = (
    "metadata",
    "metadata.google.internal",
    "metadata.goog",
    "instance-data",
    "instance-data.ec2.internal",
    "metadata.azure.com",
    "metadata.tencentyun.com",
)
_LOOPBACK: tuple[IpAddress, ...] = (
    ipaddress.ip_address("127.0.0.1"),
    ipaddress.ip_address("::1"),
)
_NUMERIC_LABEL = re.compile(r"(0x[0-9a-f]*|[0-9]+)", re.ASCII)


@dataclass(frozen=True)
class Rules:
    """One list (allow or deny): networks, exact names and ``.domain`` suffixes."""

    networks: tuple[IpNetwork, ...] = ()
    names: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.networks or self.names)

    @classmethod
    def parse(cls, raw: str) -> Rules:
        """``10.0.0.0/8, proxy.example.com, .example.net``; ``ValueError`` names a bad entry."""
        networks: list[IpNetwork] = []
        names: list[str] = []
        for entry in filter(None, (part.strip().lower() for part in raw.split(","))):
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
                continue
            except ValueError:
                pass
            name = entry.rstrip(".")
            if not _valid_name(name.removeprefix(".")) or _looks_numeric(name):
                raise ValueError(f"{entry!r} is neither a CIDR network nor a host name")
            names.append(name)
        return cls(tuple(networks), tuple(names))

    def has_address(self, address: IpAddress) -> bool:
        return any(address.version == net.version and address in net for net in self.networks)

    def has_name(self, name: str) -> bool:
        return any(
            name == entry or (entry.startswith(".") and name.endswith(entry))
            for entry in self.names
        )


@dataclass(frozen=True)
class ProxyPolicy:
    """The operator's rules plus the built-in metadata denial; deny wins."""

    allow: Rules = Rules()
    deny: Rules = Rules()

    def problem(self, host: str) -> str | None:
        """Why a proxy may not point at ``host`` (as ``urlsplit().hostname`` gives it)."""
        name = host.lower().rstrip(".")
        address = _address(name)
        if address is None and _looks_numeric(name):
            return "proxy host must be a dotted IPv4 address, an IPv6 address or a host name"
        if address is None and not _valid_name(name):
            return "proxy host is not a valid host name (letters, digits, '-' and '.')"
        addresses: tuple[IpAddress, ...] = (address,) if address is not None else ()
        if name == "localhost" or name.endswith(".localhost"):
            addresses = _LOOPBACK
        always = Rules(ALWAYS_DENIED_NETWORKS, ALWAYS_DENIED_NAMES)
        for rules, where in ((always, "a link-local or metadata address"), (self.deny, None)):
            if (address is None and rules.has_name(name)) or any(
                rules.has_address(a) for a in addresses
            ):
                return f"proxy host {name} is refused: " + (where or "PROXY_DENY_NETWORKS")
        if not self.allow:
            return None
        allowed = (
            all(self.allow.has_address(a) for a in addresses)
            if addresses
            else self.allow.has_name(name)
        )
        if not allowed:
            return f"proxy host {name} is not in PROXY_ALLOW_NETWORKS"
        return None


def _address(name: str) -> IpAddress | None:
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped  # ::ffff:169.254.169.254 is 169.254.169.254
    return address


def _looks_numeric(name: str) -> bool:
    """Resolvers (inet_aton) read a name whose last label is a number as an IPv4 address."""
    last = name.rsplit(".", 1)[-1]
    return bool(_NUMERIC_LABEL.fullmatch(last)) and _address(name) is None


_LABEL = re.compile(r"[a-z0-9]([a-z0-9_-]{0,61}[a-z0-9])?", re.ASCII)


def _valid_name(name: str) -> bool:
    return 0 < len(name) <= 253 and all(_LABEL.fullmatch(label) for label in name.split("."))
