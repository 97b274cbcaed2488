"""The SSH probe: scheduling polls, checks, status, alerts and time series (PROBE-1..6).

Invariants (what must never happen):
- A device whose host key does not match its pin is never authenticated to; it
  stays "host key changed" with an open alert until an operator re-pins (DEV-3).
- No unbounded queue: polls run through a fixed-size semaphore and at most one poll
  per device is ever in flight; a late device is skipped, not queued twice.
- A device cannot stall the probe: connect, login and every command are bounded
  in time, command output is bounded in bytes, and check patterns run on RE2
  (linear time) off the event loop (probe/patterns.py).
- Device output never reaches the audit log. An on-demand command is audited with
  its full command line BEFORE it is sent (committed), and again with its exit status.
- Nothing secret is sent to a device whose credential binding awaits an admin's
  approval, and no connection goes to an address the target policy refuses.
- Every status change is recorded as an event in the same transaction as the new state.
"""
