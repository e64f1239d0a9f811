"""Invoice PDFs laid out in a child process, so that WeasyPrint's memory leaves with it.

WeasyPrint costs a process about 45 MB to import and 25-30 MB more of warm caches (fonts,
Pango) after some renders, which it keeps. The long-lived processes (web server, worker)
therefore make an invoice's HTML themselves and hand it to one child process,
``python -m appliance.invoices.layout``, which lays it out and answers with the PDF bytes.

The child starts on the first render and serves the renders that follow while it is warm. It
is stopped after ``idle_s`` seconds without a render, and replaced after ``max_renders``
renders so that it cannot grow without bound. Renders take turns, as they do in one process.

A child that dies (killed, out of memory) fails the render it was doing. The next render
starts a new child, and :meth:`ChildRenderer.render_now` tries once more before it gives up. A
render the child itself fails (bad HTML, a WeasyPrint error) raises :class:`RenderFailed`
and leaves the child running.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading

from appliance.invoices import layout

log = logging.getLogger(__name__)

IDLE_S = 30.0
MAX_RENDERS = 500
STOP_TIMEOUT_S = 10.0


class RenderFailed(RuntimeError):
    """The child could not lay out the document (its message says why)."""


class ChildDied(RuntimeError):
    """The child ended before it answered."""


class ChildRenderer:
    """One child process for PDF layout, started on demand and stopped when idle."""

    def __init__(self, *, idle_s: float = IDLE_S, max_renders: int = MAX_RENDERS) -> None:
        self.idle_s = idle_s
        self.max_renders = max_renders
        self._lock = threading.Lock()  # one render at a time, and the child's lifecycle
        self._child: subprocess.Popen[bytes] | None = None
        self._renders = 0
        self._timer: threading.Timer | None = None
        self.started = 0  # children started so far (read by tests and the benchmarks)
        self.last_pid: int | None = None  # the process that made the last PDF

    def _start(self) -> subprocess.Popen[bytes]:
        child = subprocess.Popen(  # noqa: S603 (this interpreter, a fixed module)
            [sys.executable, "-m", layout.__name__],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            close_fds=True,
            # Its own process group: a Ctrl+C meant for the server or worker does not reach it
            # (it ends when their end closes its input).
            process_group=0,
        )
        self.started += 1
        self._renders = 0
        log.debug("invoice renderer process started", extra={"pid": child.pid})
        return child

    def _stop(self, child: subprocess.Popen[bytes]) -> None:
        """End ``child``: its input closed, it leaves its loop; killed if it does not."""
        try:
            if child.stdin is not None:
                child.stdin.close()
        except OSError:
            pass
        try:
            child.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
        if child.stdout is not None:
            child.stdout.close()

    def _ask(self, child: subprocess.Popen[bytes], request: bytes) -> tuple[bytes, bytes]:
        assert child.stdin is not None and child.stdout is not None
        try:
            child.stdin.write(layout.FRAME.pack(len(request)) + request)
            child.stdin.flush()
            status = child.stdout.read(1)
            body = layout.read_frame(child.stdout)
        except (BrokenPipeError, ConnectionResetError) as exc:
            raise ChildDied(str(exc)) from exc
        if not status or body is None:
            raise ChildDied(f"the renderer process ended (exit status {child.poll()})")
        return status, body

    def _ask_once(self, request: bytes) -> tuple[bytes, bytes]:
        """One request to the child (started if none runs); a dead child is forgotten and a
        child at its render limit retired. Called with the lock held."""
        if self._child is None or self._child.poll() is not None:
            self._child = self._start()
        child = self._child
        try:
            answer = self._ask(child, request)
        except ChildDied:
            self._child = None
            self._stop(child)
            raise
        self.last_pid = child.pid
        self._renders += 1
        if self._renders >= self.max_renders:
            self._child = None
            self._stop(child)
        return answer

    def render_now(self, html: str, layout_name: str) -> bytes:
        """The PDF of ``html`` laid out in the child; blocks (call it in a thread)."""
        request = json.dumps({"html": html, "layout": layout_name}).encode()
        with self._lock:
            self._cancel_timer()
            try:
                try:
                    status, body = self._ask_once(request)
                except ChildDied:
                    log.warning("invoice renderer process died; starting another")
                    status, body = self._ask_once(request)
            finally:
                if self._child is not None:
                    self._timer = threading.Timer(self.idle_s, self._stop_if_idle)
                    self._timer.daemon = True
                    self._timer.start()
        if status != layout.OK:
            raise RenderFailed(body.decode(errors="replace"))
        return body

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _stop_if_idle(self) -> None:
        # A render that began meanwhile holds the lock and cancels this timer; one that waits
        # for the lock finds no child and starts one.
        with self._lock:
            if self._timer is None or threading.current_thread() is not self._timer:
                return
            self._timer = None
            child, self._child = self._child, None
            if child is not None:
                log.debug("invoice renderer process idle; stopping it")
                self._stop(child)

    def close(self) -> None:
        """Stop the child now (after a render in progress)."""
        with self._lock:
            self._cancel_timer()
            child, self._child = self._child, None
            if child is not None:
                self._stop(child)


_renderer = ChildRenderer()


def renderer() -> ChildRenderer:
    """The process's renderer."""
    return _renderer
