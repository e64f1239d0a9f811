"""A real ``ctvms`` server process on 127.0.0.1, with its own data folder.

Used by the benchmark runner and by the browser tests (``tests/browser/conftest.py``), so both
exercise the box the way an office runs it: a separate process started from the command line,
migrated with ``ctvms migrate``, talking HTTP over loopback.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import httpx

HOST = "127.0.0.1"


def free_port() -> int:
    """A TCP port nobody listens on right now (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def ctvms_command() -> list[str]:
    """The ``ctvms`` console script of this interpreter's environment."""
    script = Path(sys.executable).with_name("ctvms")
    return [str(script)] if script.exists() else [sys.executable, "-m", "appliance.cli"]


def server_env(data_dir: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of every process of one office: this process's environment without any
    ``CTVMS_*`` variable of the caller, then the office's own settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CTVMS_")}
    env.update(
        {
            "CTVMS_DATA_DIR": str(data_dir),
            "CTVMS_LOCALE": "en",
            "CTVMS_SMTP_HOST": "",
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(extra or {})
    return env


def memory_kib(pid: int) -> dict[str, int]:
    """Resident (VmRSS) and peak resident (VmHWM) memory of a process, in KiB, from /proc."""
    result = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                result[key] = int(value.split()[0])
    return result


def descendants(pid: int) -> list[int]:
    """The processes started by ``pid`` and by them in turn (rendering children), from /proc."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue  # ended meanwhile
        parents.setdefault(int(fields[1]), []).append(int(entry.name))
    found: list[int] = []
    todo = [pid]
    while todo:
        for child in parents.get(todo.pop(), ()):
            found.append(child)
            todo.append(child)
    return found


def children_rss_kib(pid: int) -> int:
    """The summed VmRSS of ``pid``'s descendants (0 when it has none)."""
    total = 0
    for child in descendants(pid):
        try:
            total += memory_kib(child).get("VmRSS", 0)
        except OSError:
            continue
    return total


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far, from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rpartition(")")[2].split()
    # Fields 14 and 15 of the file (utime, stime); the split starts at field 3.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class ServerError(RuntimeError):
    """The server process did not come up; the message carries the end of its log."""


class ServerProcess:
    """One office: a data folder, ``ctvms`` commands against it, a web server and, on request,
    the job worker. Stop it with :meth:`stop` (or use it as a context manager)."""

    def __init__(self, data_dir: Path, *, env: Mapping[str, str] | None = None) -> None:
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.env = server_env(self.data_dir, env)
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self.worker: subprocess.Popen[bytes] | None = None
        self.log_path = self.data_dir / "server.log"
        self.worker_log_path = self.data_dir / "worker.log"

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def url(self, path: str = "/") -> str:
        return self.base_url + path

    def ctvms(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        """Run ``ctvms ARGS`` against this office's data folder; raise with its output on
        failure when ``check``."""
        done = subprocess.run(
            [*ctvms_command(), *args],
            input=input,
            env=self.env,
            cwd=self.data_dir,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and done.returncode != 0:
            raise ServerError(
                f"ctvms {' '.join(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
            )
        return done

    def start(
        self, *, port: int | None = None, ready_within: float = 30.0, args: Sequence[str] = ()
    ) -> None:
        """Start ``ctvms serve [ARGS]`` and return once ``/healthz`` answers."""
        self.port = port or free_port()
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [*ctvms_command(), "serve", "--host", HOST, "--port", str(self.port), *args],
                env=self.env,
                cwd=self.data_dir,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self._wait_ready(ready_within)

    def start_worker(self) -> None:
        """Start ``ctvms worker`` beside the server (needed for e-mail delivery)."""
        with open(self.worker_log_path, "ab") as log:
            self.worker = subprocess.Popen(
                [*ctvms_command(), "worker", "--workers", "1"],
                env=self.env,
                cwd=self.data_dir,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def wait_idle(self, *, quiet_for: float = 2.0, within: float = 900.0) -> float:
        """Wait until the server and the worker use (almost) no CPU for ``quiet_for`` seconds,
        e.g. after the worker's catch-up jobs at startup; the seconds waited."""
        start = time.monotonic()
        pids = [p.pid for p in (self.process, self.worker) if p is not None and p.poll() is None]
        last = sum(cpu_seconds(pid) for pid in pids)
        quiet_since = time.monotonic()
        while time.monotonic() - quiet_since < quiet_for:
            if time.monotonic() - start > within:
                raise ServerError(f"still busy after {within}s:\n{self.log_tail()}")
            time.sleep(0.25)
            used = sum(cpu_seconds(pid) for pid in pids)
            if used - last > 0.25 * 0.1:  # more than 10% of a core over the last quarter second
                quiet_since = time.monotonic()
            last = used
        return time.monotonic() - start - quiet_for

    def _wait_ready(self, within: float) -> None:
        deadline = time.monotonic() + within
        delay = 0.02
        while True:
            assert self.process is not None
            if self.process.poll() is not None:
                raise ServerError(
                    f"ctvms serve exited with {self.process.returncode}:\n{self.log_tail()}"
                )
            try:
                if httpx.get(self.url("/healthz"), timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise ServerError(f"ctvms serve not ready after {within}s:\n{self.log_tail()}")
            time.sleep(delay)
            delay = min(delay * 1.5, 0.25)

    def log_tail(self, lines: int = 40) -> str:
        text = ""
        for path in (self.log_path, self.worker_log_path):
            if path.exists():
                tail = path.read_text(errors="replace").splitlines()[-lines:]
                text += f"--- {path.name}\n" + "\n".join(tail) + "\n"
        return text

    def memory_kib(self) -> dict[str, int]:
        """VmRSS and VmHWM of the web server (and ``worker_*`` of the worker, if running), and
        ``children_VmRSS``: what their child processes (invoice rendering) hold now."""
        assert self.process is not None
        result = memory_kib(self.process.pid)
        result["children_VmRSS"] = children_rss_kib(self.process.pid)
        if self.worker is not None and self.worker.poll() is None:
            result.update({f"worker_{k}": v for k, v in memory_kib(self.worker.pid).items()})
            result["children_VmRSS"] += children_rss_kib(self.worker.pid)
        return result

    @staticmethod
    def _end(process: subprocess.Popen[bytes] | None, sig: int) -> None:
        if process is None or process.poll() is not None:
            return
        process.send_signal(sig)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)

    def stop(self) -> None:
        """Stop the worker and the server (SIGINT for a clean shutdown, SIGKILL after 10 s)."""
        self._end(self.worker, signal.SIGINT)
        self._end(self.process, signal.SIGINT)

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(Exception):
            self.stop()
