"""Writing and verifying the hash-chained audit log (AUDIT-1..3).

`record()` is called with the write connection inside the caller's transaction,
so the record and the change it describes commit or roll back together (and, during an
API write request, the request's api.write record with them: audit/apiwrite.py).
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

import msgspec

from appliance.audit import apiwrite, queries
from appliance.audit.events import Event
from appliance.audit.models import Actor, AuditFilter, ChainReport, Outcome

if TYPE_CHECKING:
    from appliance.store.connection import Connection

GENESIS = b"\x00" * 32
_SECRET_WORDS = ("password", "passphrase", "secret", "token", "private_key", "totp", "setup_code", "seed", "credential")
_encode = msgspec.json.Encoder().encode


def _check_details(details: dict) -> None:
    for key in details:
        lowered = key.lower()
        if any(word in lowered for word in _SECRET_WORDS):
            raise ValueError(f"audit detail {key!r} looks like a secret; audit records never hold secrets")


def canonical(seq: int, ts: float, code: str, action: str, actor_type: str, actor: str,
              source: str, target: str, outcome: str, details: str) -> bytes:
    """The bytes a record's hash covers besides prev_hash (stable across versions)."""
    return _encode([seq, ts, code, action, actor_type, actor, source, target, outcome, details])


def chain_hash(prev_hash: bytes, content: bytes) -> bytes:
    return hashlib.sha256(prev_hash + content).digest()


def record(conn: Connection, event: Event, *, ts: float, actor: Actor, outcome: Outcome = "success",
           target: str = "", details: dict | None = None) -> int:
    """Append one audit record using the caller's write connection; returns its seq.

    Prefer `AuditService.record` (audit/service.py); this is the primitive it wraps."""
    if not isinstance(event, Event):  # a bare string would bypass the catalogue (and mypy)
        raise TypeError(f"audit event must be an audit.events.Event member, not {event!r}")
    action = event.action
    details = details or {}
    _check_details(details)
    details_json = _encode(details).decode()
    seq, prev = queries.next_seq_and_prev_hash(conn)
    prev = prev or GENESIS
    content = canonical(seq, ts, event.code, action, actor.type, actor.name, actor.source, target, outcome,
                        details_json)
    queries.insert_record(conn, seq=seq, ts=ts, code=event.code, action=action, actor_type=actor.type, actor=actor.name,
                          source=actor.source, target=target, outcome=outcome, details=details_json,
                          prev_hash=prev, hash=chain_hash(prev, content))
    if outcome == "success" and event is not Event.API_WRITE:
        _api_write_with_change(conn, ts)
    return seq


def _api_write_with_change(conn: Connection, ts: float) -> None:
    """The first change made during an API write request carries the request's api.write
    record into its own transaction (audit/apiwrite.py)."""
    pending = apiwrite.CURRENT.get()
    if pending is not None and pending.seq is None:
        pending.seq = record(conn, Event.API_WRITE, ts=ts, actor=pending.actor, target=pending.target,
                             details=pending.details())


def verify_chain(conn: Connection) -> ChainReport:
    """Recompute every hash from the checkpoint (or genesis) on; name the first bad record.

    The hot loop works on raw row tuples: row[:10] encodes to exactly the bytes
    `canonical()` hashes (a tuple and a list are both JSON arrays)."""
    cp = queries.get_checkpoint(conn)
    expected_prev = cp[1] if cp else GENESIS
    first_seq = expected_seq = cp[0] + 1 if cp else 1
    sha, encode = hashlib.sha256, _encode
    for batch in queries.iter_records(conn, AuditFilter(), batch=5000):
        for row in batch:
            seq = row[0]
            if seq != expected_seq:
                return ChainReport(ok=False, checked=expected_seq - first_seq, first_bad=seq,
                                   reason=f"record {expected_seq} is missing (found {seq} next)")
            if row[10] != expected_prev:
                return ChainReport(ok=False, checked=expected_seq - first_seq, first_bad=seq,
                                   reason=f"record {seq} does not chain from record {seq - 1}")
            digest = row[11]
            if sha(expected_prev + encode(row[:10])).digest() != digest:
                return ChainReport(ok=False, checked=expected_seq - first_seq, first_bad=seq,
                                   reason=f"record {seq} was modified after it was written")
            expected_prev = digest
            expected_seq += 1
    return ChainReport(ok=True, checked=expected_seq - first_seq)


def purge_before(conn: Connection, *, cutoff: float, ts: float) -> int:
    """Delete records older than cutoff, keeping a checkpoint so the rest still verifies."""
    row = conn.execute("SELECT seq, hash FROM audit_log WHERE ts < ? ORDER BY seq DESC LIMIT 1", (cutoff,)).fetchone()
    if row is None:
        return 0
    last_seq, last_hash = row[0], bytes(row[1])
    deleted = conn.execute("DELETE FROM audit_log WHERE seq <= ?", (last_seq,)).rowcount
    conn.execute("INSERT INTO audit_checkpoint (id, seq, hash, ts, purged) VALUES (1, ?, ?, ?, ?)"
                 " ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash, ts = excluded.ts,"
                 " purged = audit_checkpoint.purged + excluded.purged", (last_seq, last_hash, ts, deleted))
    record(conn, Event.AUDIT_PURGE, ts=ts, actor=Actor.system(), target=f"seq<={last_seq}",
           details={"deleted": deleted, "checkpoint_seq": last_seq, "checkpoint_hash": last_hash.hex()})
    return deleted
