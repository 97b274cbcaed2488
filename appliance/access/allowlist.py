"""The IP allow list (ACL-3): CIDR networks, IPv4 and IPv6, checked before authentication.

Stored in `settings` as a JSON list of network strings. The running server keeps a
parsed copy and re-reads the setting at most every RELOAD_SECONDS, so a local
`outpost allowlist reset` reaches a running server within seconds.

Invariants: an empty list allows everyone; a list that does not contain the saving
admin's own address is refused (self-lockout guard); entries are validated one by
one with the offending line named; changes are audited in the same transaction.
"""

from __future__ import annotations

import contextlib
import ipaddress
from typing import TYPE_CHECKING

import msgspec

from appliance.access import queries
from appliance.audit import log as audit
from appliance.audit.events import Event
from appliance.audit.models import Actor
from appliance.clock import Clock
from appliance.errors import OutpostError, ValidationError

if TYPE_CHECKING:
    from appliance.store.connection import Connection, Database

MAX_ENTRIES = 256
RELOAD_SECONDS = 3.0
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class SelfLockoutError(ValidationError):
    code = "allowlist_self_lockout"


def parse_networks(lines: list[str]) -> list[Network]:
    """Validate entries; ValidationError naming each bad line in plain words."""
    problems: dict[str, str] = {}
    networks: list[Network] = []
    cleaned = [line.strip() for line in lines if line.strip()]
    if len(cleaned) > MAX_ENTRIES:
        raise ValidationError(f"At most {MAX_ENTRIES} entries are allowed.",
                              details={"networks": f"{len(cleaned)} entries given."})
    for n, line in enumerate(cleaned, 1):
        if len(line) > 64:
            problems[f"line {n}"] = "Far too long for an address or network."
            continue
        try:
            net = ipaddress.ip_network(line, strict=True)
        except ValueError:
            try:
                loose = ipaddress.ip_network(line, strict=False)
            except ValueError:
                problems[f"line {n}"] = (f"'{line}' is not an IPv4 or IPv6 address or CIDR network "
                                         "(e.g. 10.0.0.0/8, 2001:db8::/32).")
            else:
                problems[f"line {n}"] = f"'{line}' has host bits set; did you mean {loose}?"
            continue
        if net not in networks:
            networks.append(net)
    if problems:
        listed = "; ".join(f"{k}: {v}" for k, v in problems.items())
        raise ValidationError("Some entries are not valid networks: " + listed, details=problems)
    return networks


def contains(networks: list[Network], address: str) -> bool:
    """True if address is in any network (an empty list contains everything)."""
    if not networks:
        return True
    try:
        addr = ipaddress.ip_address(address.split("%")[0])
    except ValueError:
        return False
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped  # ::ffff:10.0.0.1 is 10.0.0.1
    return any(addr in net for net in networks if net.version == addr.version)


def _load(conn: Connection) -> list[Network]:
    raw = queries.get_setting(conn, queries.ALLOWLIST_SETTING)
    if not raw:
        return []
    try:
        return [ipaddress.ip_network(s, strict=False) for s in msgspec.json.decode(raw, type=list[str])]
    except (msgspec.DecodeError, ValueError):
        # A damaged setting must not open the door to everyone nor lock everyone out
        # silently: deny all and let `outpost allowlist reset` repair it.
        return [ipaddress.ip_network("0.0.0.0/32")]


class AllowList:
    def __init__(self, db: Database, clock: Clock) -> None:
        self.db = db
        self.clock = clock
        self._networks: list[Network] = db.read_sync(_load)
        self._loaded_at = clock.monotonic()
        self.denied = 0  # requests refused since start (metrics)

    def networks(self) -> list[Network]:
        if self.clock.monotonic() - self._loaded_at >= RELOAD_SECONDS:
            self._loaded_at = self.clock.monotonic()
            # The store is failing: keep enforcing the last list read rather than failing every request.
            with contextlib.suppress(OutpostError):
                self._networks = self.db.read_sync(_load)
        return self._networks

    def allows(self, address: str) -> bool:
        """The check the security middleware runs on every request (before authentication)."""
        if contains(self.networks(), address):
            return True
        self.denied += 1
        return False

    async def replace(self, lines: list[str], *, caller: str, actor: Actor) -> list[Network]:
        """Save a new list; refuse one that would lock the caller's own address out."""
        networks = parse_networks(lines)
        if networks and not contains(networks, caller):
            raise SelfLockoutError(
                f"This list would lock you out: your address {caller} is not in it. Add it (e.g. {caller}/"
                f"{32 if ':' not in caller else 128}) or a network containing it.",
                details={"networks": f"Your address {caller} must be in the list."})
        values = [str(n) for n in networks]
        now = self.clock.now()

        def job(conn: Connection):
            before = _load(conn)
            queries.upsert_setting(conn, queries.ALLOWLIST_SETTING, msgspec.json.encode(values).decode())
            audit.record(conn, ts=now, event=Event.ACCESS_ALLOWLIST_UPDATE, actor=actor, target="settings:ip_allowlist",
                         details={"networks": values, "previous": [str(n) for n in before]})

        await self.db.write(job)
        self._networks, self._loaded_at = networks, self.clock.monotonic()
        return networks


def reset(db: Database, actor: Actor, now: float) -> list[str]:
    """Clear the list (CLI, local only); returns what it held. Synchronous: no event loop needed."""
    def job(conn: Connection):
        before = [str(n) for n in _load(conn)]
        queries.delete_setting(conn, queries.ALLOWLIST_SETTING)
        audit.record(conn, ts=now, event=Event.ACCESS_ALLOWLIST_RESET, actor=actor, target="settings:ip_allowlist",
                     details={"previous": before})
        return before

    return db.write_sync(job)


def show(db: Database) -> list[str]:
    return [str(n) for n in db.read_sync(_load)]
