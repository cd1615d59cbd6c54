"""A small, fast HTTP/1.1 load client for loopback benchmarks (asyncio streams, persistent connections).

httpx's async client costs milliseconds of CPU per request on these 2-core machines, so a benchmark driven
by it measures the client, not the server (seen here: ~100 req/s against an empty uvicorn app that serves
~6,900 req/s to wrk). This client pre-encodes requests and parses only the status line, headers and a
Content-Length body. Latency is measured from the request's *scheduled* time, so queueing inside the client
counts against the server as it would for Alertmanager (no coordinated omission).
"""

from __future__ import annotations

import asyncio
import time


class KeepAliveConnection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, host: str, port: int) -> "KeepAliveConnection":
        reader, writer = await asyncio.open_connection(host, port)
        return cls(reader, writer)

    async def request(self, raw: bytes) -> int:
        self.writer.write(raw)
        await self.writer.drain()
        status_line = await self.reader.readline()
        if not status_line:
            raise ConnectionError("server closed the connection")
        status = int(status_line.split()[1])
        length = 0
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b"\n", b""):
                break
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip())
        if length:
            await self.reader.readexactly(length)
        return status

    def close(self) -> None:
        self.writer.close()


def encode_post(host: str, port: int, path: str, body: bytes, headers: dict[str, str]) -> bytes:
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}:{port}", "Content-Type: application/json",
             f"Content-Length: {len(body)}", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


class LoadClient:
    """A pool of persistent connections; `send(raw, scheduled)` returns (status, latency seconds)."""

    def __init__(self, host: str, port: int, connections: int) -> None:
        self.host, self.port, self.size = host, port, connections
        self.pool: asyncio.Queue[KeepAliveConnection] = asyncio.Queue()

    async def __aenter__(self) -> "LoadClient":
        for _ in range(self.size):
            self.pool.put_nowait(await KeepAliveConnection.open(self.host, self.port))
        return self

    async def __aexit__(self, *exc: object) -> None:
        while not self.pool.empty():
            self.pool.get_nowait().close()

    async def send(self, raw: bytes, scheduled: float | None = None) -> tuple[int, float]:
        began = scheduled if scheduled is not None else time.perf_counter()
        connection = await self.pool.get()
        try:
            status = await connection.request(raw)
        except (ConnectionError, asyncio.IncompleteReadError, ValueError, IndexError):
            connection.close()
            connection = await KeepAliveConnection.open(self.host, self.port)
            status = -1
        finally:
            self.pool.put_nowait(connection)
        return status, time.perf_counter() - began
