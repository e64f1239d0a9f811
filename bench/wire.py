"""A minimal keep-alive HTTP/1.1 GET client on asyncio streams.

httpx spends about a millisecond of Python per request, which on a 2-core machine is as much as
the bare page costs the server: the client, not the server, would set the pace. This client
only writes the request line and reads the response framing (Content-Length or chunked).
"""

from __future__ import annotations

import asyncio
import contextlib


class WireError(RuntimeError):
    """The server answered something this client cannot frame, or not 200."""


class Connection:
    def __init__(self, host: str, port: int, headers: dict[str, str] | None = None) -> None:
        self.host = host
        self.port = port
        extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        self._head = f"Host: {host}:{port}\r\n{extra}\r\n".encode("latin-1")
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def _open(self) -> None:
        self._reader, self._writer = await asyncio.open_connection(self.host, self.port)

    async def get(self, path: str) -> tuple[int, bytes]:
        """GET ``path``; the status and the body. Reconnects if the server closed."""
        if self._writer is None:
            await self._open()
        assert self._reader is not None and self._writer is not None
        self._writer.write(b"GET " + path.encode("latin-1") + b" HTTP/1.1\r\n" + self._head)
        await self._writer.drain()
        head = await self._reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = None
        chunked = close = False
        for line in head.lower().split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            value = value.strip()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding" and b"chunked" in value:
                chunked = True
            elif name == b"connection" and value == b"close":
                close = True
        if chunked:
            parts = []
            while True:
                size = int((await self._reader.readline()).split(b";")[0], 16)
                if size == 0:
                    await self._reader.readline()
                    break
                parts.append((await self._reader.readexactly(size + 2))[:-2])
            body = b"".join(parts)
        elif length is not None:
            body = await self._reader.readexactly(length)
        else:
            body = await self._reader.read()
            close = True
        if close:
            await self.close()
        return status, body

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(ConnectionError):
                await self._writer.wait_closed()
        self._reader = self._writer = None

    async def __aenter__(self) -> Connection:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
