"""The benchmark registry's types: what a benchmark declares, what it gets, what it returns.

A module ``bench/<name>.py`` exposes ``BENCHMARKS = [Benchmark(...), ...]``; the runner imports
every module of the package and runs what they declare, in ``order``. A benchmark's ``run`` gets
the :class:`Context` (the seeded office, its running server, logged-in cookies, the options)
and returns a :class:`Result` (sync or async functions both work).
"""

from __future__ import annotations

import statistics
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.server import ServerProcess

Figures = dict[str, float]


@dataclass
class Result:
    """Figures of one benchmark: the median over runs of each figure, and every run's figures.

    Figure names carry their unit, which the table uses: ``*_ms``, ``*_s``, ``*_mb``, ``rps``
    (requests per second), ``pct_hello`` (percentage of the bare page's requests per second);
    anything else is shown as a plain number.
    """

    figures: Figures
    runs: list[Figures] = field(default_factory=list)
    note: str = ""


@dataclass
class Benchmark:
    name: str
    title: str
    run: Callable[[Context], Result | Awaitable[Result]]
    target: str = ""
    check: Callable[[Figures], bool] | None = None
    order: int = 100


@dataclass
class Options:
    customers: int = 20_000
    runs: int = 5
    seconds: float = 2.0
    concurrency: int = 8
    worker: bool = True
    use_wrk: bool = True


@dataclass
class Context:
    """What every benchmark gets. ``server`` serves the seeded office on 127.0.0.1; ``results``
    holds the results so far (``results["hello"]`` is the bare page, measured first)."""

    options: Options
    server: ServerProcess
    admin_username: str
    admin_password: str
    admin_cookies: dict[str, str]
    demo: dict[str, str]
    work_dir: Path
    results: dict[str, Result] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def hello_rps(self) -> float | None:
        hello = self.results.get("hello")
        return hello.figures.get("rps") if hello else None

    def settings(self) -> Any:
        """The office's settings, for benchmarks that call the appliance's code in process."""
        from appliance.settings import Settings

        env = {k: v for k, v in self.server.env.items() if k.startswith("CTVMS_")}
        return Settings.from_env(env)


def median_figures(runs: list[Figures]) -> Figures:
    """Per figure, the median over the runs that have it."""
    keys = {k for run in runs for k in run}
    return {k: statistics.median([run[k] for run in runs if k in run]) for k in sorted(keys)}


def percentile(samples: list[float], pct: float) -> float:
    """Nearest-rank percentile (``pct`` in 0..100) of a non-empty sample."""
    ordered = sorted(samples)
    rank = max(1, -(-len(ordered) * pct // 100))
    return ordered[int(rank) - 1]
