"""A webhook receiver for benchmarks: answers every POST with 200 and counts them; ``GET``
answers ``<deliveries> <distinct event ids>``. Raw asyncio, so that it costs the machine as
little as possible.

    python -m tests.benchmarks.webhook_sink --port 9000
"""

from __future__ import annotations

import argparse
import asyncio
import json


class _Sink(asyncio.Protocol):
    received = 0
    ids: set[str] = set()  # noqa: RUF012

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.buffer = b""

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buffer[:end].decode("latin-1")
            length = 0
            for line in head.split("\r\n")[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value)
            if len(self.buffer) < end + 4 + length:
                return
            content = self.buffer[end + 4 : end + 4 + length]
            self.buffer = self.buffer[end + 4 + length :]
            if head.startswith("POST") and content:
                _Sink.received += 1
                _Sink.ids.add(json.loads(content)["id"])
                body = b""
            elif head.startswith("POST"):
                body = b""  # the benchmark's readiness probe
            else:
                body = f"{_Sink.received} {len(_Sink.ids)}".encode()
            self.transport.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: "
                + str(len(body)).encode()
                + b"\r\n\r\n"
                + body
            )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    server = await asyncio.get_running_loop().create_server(_Sink, "127.0.0.1", args.port)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
