"""A peer that fulfills everything: the next hop of the forwarding benchmark, and, alone, the
ceiling (the fastest a Starlette app on this server can answer an ILP-over-HTTP POST).

    python -m tests.benchmarks.sink --port 4000
"""

from __future__ import annotations

import argparse

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from kiungo.ilp.packet import Fulfill, encode_packet

PREIMAGE = bytes(range(32))
REPLY = encode_packet(Fulfill(PREIMAGE, b""))


async def ilp(request: Request) -> Response:
    await request.body()
    return Response(REPLY, media_type="application/octet-stream")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    app = Starlette(routes=[Route("/ilp", ilp, methods=["POST"])])
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
