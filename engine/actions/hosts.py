"""Where a call's requests may go: the `HTTP_ALLOW_HOSTS` setting.

`HTTP_ALLOW_HOSTS` is a comma-separated list. Each entry is one of:

- a host name, `api.example.com`: requests to it, at its public addresses;
- a subdomain wildcard, `*.example.com`: any host under example.com (not example.com itself);
- `*`: any host name, at public addresses only;
- an address or a network, `10.0.0.5`, `10.0.0.0/8`, `::1`: requests to those addresses, by
  name or by address, private or not;
- `localhost`: the name, and the loopback addresses it stands for.

A request is sent only when its host is listed and every address the host resolves to is
either public or in a listed network: a public name whose DNS answer is 127.0.0.1 or
169.254.169.254 (the cloud metadata service) is refused, as is a redirect to one. The check is
made on the address the connection is then made to (engine/actions/http.py), so a second DNS
answer cannot slip past it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

_LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))


def _plain(address: Address) -> Address:
    """An IPv4 address written as IPv6 (`::ffff:127.0.0.1`) is checked as the IPv4 one."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def is_public(address: Address) -> bool:
    """Whether `address` is on the public internet (not private, loopback, link-local,
    reserved, multicast or unspecified)."""
    address = _plain(address)
    return address.is_global and not address.is_multicast


def parse_address(text: str) -> Address | None:
    """`text` as an address (IPv4-mapped IPv6 as IPv4), or None when it is not one."""
    try:
        return _plain(ipaddress.ip_address(text.strip("[]")))
    except ValueError:
        return None


@dataclass(frozen=True)
class HostPolicy:
    """The hosts and addresses requests may reach; `HostPolicy.parse` reads the setting.

    An empty policy (the setting unset) refuses every request.
    """

    names: frozenset[str] = frozenset()
    suffixes: tuple[str, ...] = ()
    any_name: bool = False
    networks: tuple[Network, ...] = field(default=())

    @classmethod
    def parse(cls, text: str | None) -> HostPolicy:
        """The policy `HTTP_ALLOW_HOSTS=text` describes; ValueError naming the first entry that
        is none of the forms above, and what to write instead."""
        names: set[str] = set()
        suffixes: list[str] = []
        networks: list[Network] = []
        any_name = False
        for raw in (text or "").split(","):
            entry = raw.strip().lower().rstrip(".")
            if not entry:
                continue
            if entry == "*":
                any_name = True
            elif entry.startswith("*."):
                if not _is_name(entry[2:]):
                    raise _bad(raw)
                suffixes.append(entry[1:])
            elif "/" in entry or parse_address(entry) is not None:
                try:
                    networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
                except ValueError:
                    raise _bad(raw) from None
            elif _is_name(entry):
                names.add(entry)
                if entry == "localhost":
                    networks.extend(_LOOPBACK)
            else:
                raise _bad(raw)
        return cls(frozenset(names), tuple(suffixes), any_name, tuple(networks))

    def __bool__(self) -> bool:
        return bool(self.names or self.suffixes or self.any_name or self.networks)

    def _listed_network(self, address: Address) -> bool:
        address = _plain(address)
        return any(address.version == network.version and address in network
                   for network in self.networks)

    def host_refusal(self, host: str) -> str | None:
        """Why a request to `host` (a URL's host, name or address) is refused before any DNS
        lookup, or None when it may go on to `address_refusal`."""
        host = host.lower().rstrip(".")
        if not self:
            return f"{host}: HTTP_ALLOW_HOSTS is not set, so no request may be sent"
        literal = parse_address(host)
        if literal is not None:
            if self._listed_network(literal):
                return None
            return f"{host} is not in HTTP_ALLOW_HOSTS (list the address to allow it)"
        if (host in self.names or self.any_name
                or any(host.endswith(suffix) for suffix in self.suffixes)):
            return None
        return f"{host} is not in HTTP_ALLOW_HOSTS"

    def address_refusal(self, host: str, addresses: Iterable[Address]) -> str | None:
        """Why connecting to `host` at `addresses` (its DNS answer) is refused, or None.

        Every address must pass, not only the first: a name answering with a public and a
        private address would otherwise reach the private one on a retry.
        """
        found = list(addresses)
        if not found:
            return f"{host} has no address"
        for address in found:
            if not is_public(address) and not self._listed_network(address):
                return (f"{host} resolves to {_plain(address)}, a private or reserved address "
                        "not in HTTP_ALLOW_HOSTS")
        return None


def _is_name(text: str) -> bool:
    labels = text.split(".")
    return all(label and len(label) <= 63 and label.replace("-", "").isalnum()
               and not label.startswith("-") and not label.endswith("-") for label in labels)


def _bad(entry: str) -> ValueError:
    return ValueError(
        f"HTTP_ALLOW_HOSTS entry {entry.strip()!r}: write host names (api.example.com), "
        "wildcards (*.example.com), addresses or networks (10.0.0.0/8), comma-separated, "
        "without scheme, port or path")
