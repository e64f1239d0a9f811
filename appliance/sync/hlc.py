"""Hybrid logical clock: wall-clock milliseconds and a counter packed in one integer.

A stamp is ``wall_ms << 16 | counter``. Packed this way the usual HLC rules collapse into
integer arithmetic that the change-capture triggers can run in SQL (see
``ctvms_0009_sync.py``): a local event takes ``max(last + 1, now << 16)``, which keeps the wall
part when the clock has not moved past it (and bumps the counter), and resets the counter when
it has. A counter overflow simply carries into the wall part, which keeps the order.

Stamps order changes causally even when a box boots with a wrong clock: a stamp never goes
backwards, and receiving a remote stamp moves the local clock past it. A remote stamp further
ahead than ``max_drift_ms`` is not trusted to drag the local clock; it is flagged instead.
"""

from __future__ import annotations

from typing import NamedTuple

COUNTER_BITS = 16
COUNTER_MASK = (1 << COUNTER_BITS) - 1
# How far in the future a remote stamp may be before it is flagged (and not merged).
MAX_DRIFT_MS = 5 * 60 * 1000


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

    The result is later than both the local clock and the remote stamp, unless the remote
    stamp is more than ``max_drift_ms`` ahead of the local wall clock: then it is flagged
    (``future``) and the local clock only ticks, so one box with a clock set to next year
    cannot drag every other node's clock along.
    """
    if wall_ms(remote) - now_ms > max_drift_ms:
        return Received(tick(last, now_ms), True)
    return Received(max(last, remote, pack(now_ms) - 1) + 1, False)


def is_future(stamp: int, now_ms: int, *, max_drift_ms: int = MAX_DRIFT_MS) -> bool:
    return wall_ms(stamp) - now_ms > max_drift_ms


def wins(a: tuple[int, str], b: tuple[int, str]) -> bool:
    """Whether the (stamp, node id) pair ``a`` beats ``b``: the later stamp, then the larger
    node id, so every node picks the same winner."""
    return a > b
