"""A small fault-injecting TCP proxy on 127.0.0.1 between a box and central (asyncio).

It runs in the test's event loop and forwards bytes both ways. A rule (``proxy.fault(...)``)
makes the next requests whose request line contains a path fail in a chosen way:

- ``drop_request``: the connection is closed before anything reaches central;
- ``cut_request``: central gets the head and half of the body, then the connection is cut;
- ``drop_response``: central gets the whole request and answers; the answer is thrown away and
  the box's connection closed (central applied the batch, the box never hears of it);
- ``cut_response``: the box gets the head and half of the answer's body;
- ``stall``: central answers, the box gets nothing until it gives up (its own timeout);
- ``kill``: the whole request is forwarded, then ``on_kill`` runs (it kills central), and the
  box's connection is closed.

Requests are parsed only far enough to find their length (``Content-Length``; the sync client
sends no chunked bodies), so the box's HTTP client should open one connection per request
(``fresh_client()``): then a rule applies to exactly one request. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import httpx

HOST = "127.0.0.1"
HEAD_LIMIT = 64 * 1024
IO_TIMEOUT_S = 20.0
MODES = ("drop_request", "cut_request", "drop_response", "cut_response", "stall", "kill")


@dataclass
class Rule:
    path: str
    mode: str
    times: int = 1


@dataclass
class Event:
    path: str
    mode: str
    status: int | None = None


@dataclass
class FaultProxy:
    upstream_port: int
    on_kill: Callable[[], Awaitable[None]] | None = None
    rules: list[Rule] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    port: int = 0
    _server: asyncio.AbstractServer | None = None
    _tasks: set[asyncio.Task] = field(default_factory=set)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    async def start(self) -> FaultProxy:
        self._server = await asyncio.start_server(self._handle, HOST, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task

    def fault(self, path: str, mode: str, *, times: int = 1) -> None:
        if mode not in MODES:
            raise ValueError(mode)
        self.rules.append(Rule(path, mode, times))

    def count(self, path: str) -> int:
        """Requests seen whose request line contains ``path``."""
        return sum(1 for line in self.requests if path in line)

    def _rule_for(self, line: str) -> Rule | None:
        for rule in self.rules:
            if rule.times > 0 and rule.path in line:
                rule.times -= 1
                return rule
        return None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await asyncio.wait_for(self._serve(reader, writer), IO_TIMEOUT_S * 2)
        except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError):
            pass
        finally:
            self._tasks.discard(task)
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head, body = await _read_message(reader)
        if head is None:
            return
        line = head.split(b"\r\n", 1)[0].decode("latin-1")
        self.requests.append(line)
        rule = self._rule_for(line)
        mode = rule.mode if rule else None
        if mode == "drop_request":
            self.events.append(Event(line, mode))
            return
        up_reader, up_writer = await asyncio.open_connection(HOST, self.upstream_port)
        try:
            if mode == "cut_request":
                up_writer.write(head + body[: len(body) // 2])
                await up_writer.drain()
                self.events.append(Event(line, mode))
                return
            up_writer.write(head + body)
            await up_writer.drain()
            if mode == "kill":
                assert self.on_kill is not None
                await self.on_kill()
                self.events.append(Event(line, mode))
                return
            if mode is None:
                # Plain forwarding: the rest of the connection is piped both ways.
                await _pipe_both(reader, writer, up_reader, up_writer)
                return
            r_head, r_body = await _read_message(up_reader)
            status = _status(r_head)
            self.events.append(Event(line, mode, status))
            if mode == "cut_response" and r_head is not None:
                writer.write(r_head + r_body[: len(r_body) // 2])
                await writer.drain()
            elif mode == "stall":
                # Hold the answer until the box gives up and closes its side.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(reader.read(), IO_TIMEOUT_S)
        finally:
            up_writer.close()
            with contextlib.suppress(OSError):
                await up_writer.wait_closed()


def _status(head: bytes | None) -> int | None:
    if not head:
        return None
    parts = head.split(b" ", 2)
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None


async def _read_message(reader: asyncio.StreamReader) -> tuple[bytes | None, bytes]:
    """One HTTP message: its head (through the blank line) and its body (Content-Length)."""
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), IO_TIMEOUT_S)
    except asyncio.IncompleteReadError:
        return None, b""
    if len(head) > HEAD_LIMIT:
        raise ValueError("message head too large")
    length = 0
    for raw in head.split(b"\r\n")[1:]:
        name, _sep, value = raw.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    body = await asyncio.wait_for(reader.readexactly(length), IO_TIMEOUT_S) if length else b""
    return head, body


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while chunk := await asyncio.wait_for(reader.read(65536), IO_TIMEOUT_S):
            writer.write(chunk)
            await writer.drain()
    finally:
        with contextlib.suppress(OSError):
            writer.write_eof()


async def _pipe_both(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    up_reader: asyncio.StreamReader,
    up_writer: asyncio.StreamWriter,
) -> None:
    done, pending = await asyncio.wait(
        [
            asyncio.ensure_future(_pipe(reader, up_writer)),
            asyncio.ensure_future(_pipe(up_reader, writer)),
        ],
        return_when=asyncio.FIRST_EXCEPTION,
    )
    for task in pending:
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(task, IO_TIMEOUT_S)
    for task in done:
        with contextlib.suppress(BaseException):
            task.result()


def fresh_client(timeout: float = 10.0) -> httpx.AsyncClient:
    """An HTTP client that opens one connection per request (a proxy rule hits one request)."""
    return httpx.AsyncClient(
        timeout=timeout, limits=httpx.Limits(max_keepalive_connections=0, max_connections=4)
    )
