"""The probe target policy: which addresses the appliance may open connections to.

Set by the admin in `[probe]` (allowed_subnets, allow_loopback). Checked on the
address actually connected to, after name resolution, at every connect (a host name
may resolve to loopback, and DNS answers change), so a device's address cannot point
the probe, its on-demand commands or its reachability test at the appliance itself.

Decision order for one resolved address:
1. an endpoint explicitly allowed (the demo fleet's own loopback ports) -> allowed;
2. loopback, unspecified (0.0.0.0, ::) or one of this machine's own addresses ->
   refused unless allow_loopback (they all reach the appliance's own services);
3. allowed_subnets empty -> allowed; else allowed only inside one of them.
"""

from __future__ import annotations

import ipaddress
import time

import msgspec
import psutil

_OWN_TTL = 30.0  # seconds: interfaces change rarely; re-read them now and then
_own_cache: tuple[float, frozenset] = (0.0, frozenset())


def own_addresses() -> frozenset:
    """This machine's interface addresses (cached briefly), without IPv6 scope ids."""
    global _own_cache
    now = time.monotonic()
    if now - _own_cache[0] < _OWN_TTL:
        return _own_cache[1]
    found = set()
    for addrs in psutil.net_if_addrs().values():
        for a in addrs:
            try:
                found.add(ipaddress.ip_address(a.address.split("%", 1)[0]))
            except ValueError:
                continue  # MAC addresses and the like
    _own_cache = (now, frozenset(found))
    return _own_cache[1]


def _plain(ip: ipaddress.IPv4Address | ipaddress.IPv6Address):
    """IPv4-mapped IPv6 (::ffff:127.0.0.1) is judged as the IPv4 address it reaches."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


class TargetPolicy(msgspec.Struct, frozen=True, kw_only=True):
    allowed_subnets: tuple[str, ...] = ()
    allow_loopback: bool = False
    endpoints: frozenset[tuple[str, int]] = frozenset()  # (ip, port) always allowed: the demo fleet

    def with_endpoints(self, pairs) -> TargetPolicy:
        """This policy plus exact (ip, port) exceptions (used by `serve --demo-data` only)."""
        return msgspec.structs.replace(self, endpoints=self.endpoints | frozenset(pairs))

    def refusal(self, address: str, port: int) -> str | None:
        """None if the probe may connect to this resolved IP address, else the reason in plain words."""
        try:
            ip = _plain(ipaddress.ip_address(address.split("%", 1)[0]))
        except ValueError:
            return f"{address} is not an IP address."
        if (str(ip), port) in self.endpoints:
            return None
        local = ip.is_loopback or ip.is_unspecified or ip in own_addresses()
        if local and not self.allow_loopback:
            kind = "a loopback address" if ip.is_loopback else \
                "the unspecified address" if ip.is_unspecified else "one of the appliance's own addresses"
            return (f"{ip} is {kind}; the probe target policy refuses it "
                    "(an admin can allow it with [probe] allow_loopback).")
        if self.allowed_subnets and not any(ip.version == net.version and ip in net for net in self._networks()):
            return (f"{ip} is outside the probe's allowed subnets ({', '.join(self.allowed_subnets)}); "
                    "the probe target policy refuses it.")
        return None

    def _networks(self):
        return [ipaddress.ip_network(n, strict=False) for n in self.allowed_subnets]


def check_subnets(items: list[str]) -> None:
    """ValueError naming the first entry that is not an IP network in CIDR notation (config validation)."""
    for i, item in enumerate(items):
        try:
            ipaddress.ip_network(item, strict=False)
        except ValueError:
            raise ValueError(f"allowed_subnets[{i}] is not an IP address or CIDR: {item!r}") from None
