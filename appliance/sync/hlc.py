"""Hybrid logical clock: wall-clock milliseconds and a counter packed in one integer.

A stamp is ``wall_ms << 16 | counter``. Packed this way the usual HLC rules collapse into
integer arithmetic that the change-capture triggers can run in SQL (see
``ctvms_0009_sync.py``): a local event takes ``max(last + 1, now << 16)``, which keeps the wall
part when the clock has not moved past it (and bumps the counter), and resets the counter when
it has. A counter overflow simply carries into the wall part, which keeps the order.

Stamps order changes causally even when a box boots with a wrong clock: a stamp never goes
backwards, and receiving a remote stamp moves the local clock past it, so an edit made after
seeing another one always stamps later, whatever the wall clocks say. A remote stamp more than
``max_drift_ms`` ahead is flagged (central counts them per box and the admin is warned), but
still merged: refusing it would let a box's later edit lose to one it had already seen. Only a
stamp absurdly far ahead (``MAX_MERGE_MS``, a clock set years wrong) is not merged, so one such
box cannot drag every node's clock along.
"""

from __future__ import annotations

from typing import NamedTuple

COUNTER_BITS = 16
COUNTER_MASK = (1 << COUNTER_BITS) - 1
# How far in the future a remote stamp may be before it is flagged (and not merged).
MAX_DRIFT_MS = 5 * 60 * 1000
# How far ahead a remote stamp may be and still be merged into the local clock.
MAX_MERGE_MS = 90 * 24 * 3600 * 1000


def pack(wall_ms: int, counter: int = 0) -> int:
    if wall_ms < 0 or not 0 <= counter <= COUNTER_MASK:
        raise ValueError("an HLC stamp needs a non-negative wall time and a 16-bit counter")
    return wall_ms << COUNTER_BITS | counter


def wall_ms(stamp: int) -> int:
    return stamp >> COUNTER_BITS


def counter(stamp: int) -> int:
    return stamp & COUNTER_MASK


def tick(last: int, now_ms: int) -> int:
    """The stamp of a local event (the same rule the triggers apply in SQL)."""
    return max(last + 1, pack(now_ms))


class Received(NamedTuple):
    stamp: int
    future: bool


def receive(last: int, remote: int, now_ms: int, *, max_drift_ms: int = MAX_DRIFT_MS) -> Received:
    """Merge a remote stamp into the local clock.

    The result is later than both the local clock and the remote stamp. A remote stamp more
    than ``max_drift_ms`` ahead of the local wall clock is flagged (``future``); one more than
    ``MAX_MERGE_MS`` ahead is flagged and not merged (the local clock only ticks).
    """
    ahead = wall_ms(remote) - now_ms
    if ahead > MAX_MERGE_MS:
        return Received(tick(last, now_ms), True)
    return Received(max(last, remote, pack(now_ms) - 1) + 1, ahead > max_drift_ms)


def is_future(stamp: int, now_ms: int, *, max_drift_ms: int = MAX_DRIFT_MS) -> bool:
    return wall_ms(stamp) - now_ms > max_drift_ms


def wins(a: tuple[int, str], b: tuple[int, str]) -> bool:
    """Whether the (stamp, node id) pair ``a`` beats ``b``: the later stamp, then the larger
    node id, so every node picks the same winner."""
    return a > b
