"""Protocol-core throughput on one core: prints one JSON line per figure.

    .venv/bin/python tests/benchmarks/protocol.py [--seconds 1.0]

Figures: ILP Prepare decode/s (packets of one STREAM connection, and every packet to a new
address, so the validated-destination cache never hits) and encode/s; receiver
Prepare→Fulfill with a receipt/s (raw Prepare bytes in, raw Fulfill bytes out, the
connection's keys cached as in a running node); sender packets built/s (encrypt, condition,
encode); and the AES-GCM/HMAC floor for comparison.
Not a test: it never fails on speed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from kiungo.ilp.packet import Fulfill, Prepare, Reject, decode_prepare, encode_packet
from kiungo.stream.crypto import StreamKeys
from kiungo.stream.packet import StreamMoneyFrame, StreamPacket, encode_stream_packet
from kiungo.stream.receiver import IncomingMoney, StreamReceiver
from kiungo.stream.sender import StreamSender
from kiungo.stream.server import Asset, ReceiptSetup, StreamServer

N_DISTINCT = 2000


def measure(name: str, fn: Callable[[int], None], seconds: float) -> dict[str, object]:
    """Run ``fn(i)`` in a tight loop for about ``seconds``; report the best of three rounds."""
    best = 0.0
    for _ in range(3):
        count = 0
        start = time.perf_counter()
        deadline = start + seconds / 3
        while True:
            for i in range(count, count + 1000):
                fn(i)
            count += 1000
            now = time.perf_counter()
            if now >= deadline:
                break
        best = max(best, count / (now - start))
    return {"benchmark": "protocol", "figure": name, "per_second": round(best), "unit": "ops/s"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=1.5, help="time per figure")
    args = parser.parse_args()
    seconds: float = args.seconds

    server = StreamServer(os.urandom(32), "g.kiungo.bench")
    receiver = StreamReceiver(server)
    credentials = server.generate_credentials(
        payment_tag="8f3c6f1e-6d2a-4a55-9a3e-1f6f9f1b2c3d",
        receipt_setup=ReceiptSetup(os.urandom(16), os.urandom(32)),
        asset=Asset("USD", 2),
    )
    keys = StreamKeys(credentials.shared_secret)
    expires = datetime.now(UTC) + timedelta(hours=1)

    def make_prepare(seq: int) -> Prepare:
        plain = encode_stream_packet(StreamPacket(seq, 12, 990, [StreamMoneyFrame(1, 1)]))
        data = keys.encrypt(plain)
        return Prepare(1000, expires, keys.condition(data), credentials.destination_account, data)

    prepares = [make_prepare(seq) for seq in range(1, N_DISTINCT + 1)]
    raws = [encode_packet(p) for p in prepares]

    def decode(i: int) -> None:
        decode_prepare(raws[i % N_DISTINCT])

    # Every packet to another address (no two from one STREAM connection): the cold path.
    cold = [
        encode_packet(
            Prepare(
                p.amount,
                p.expires_at,
                p.execution_condition,
                f"g.kiungo.bench.c{i}.{'A' * 150}",
                p.data,
            )
        )
        for i, p in enumerate(prepares * 3)
    ]

    def decode_cold(i: int) -> None:
        decode_prepare(cold[i % len(cold)])

    def encode(i: int) -> None:
        encode_packet(prepares[i % N_DISTINCT])

    total = [0]

    def receive(i: int) -> None:
        result = receiver.receive(decode_prepare(raws[i % N_DISTINCT]))
        assert isinstance(result, IncomingMoney)
        total[0] += result.amount
        reply = result.accept(total[0])
        encode_packet(reply)

    async def never(_: Prepare) -> Fulfill | Reject:
        raise AssertionError

    sender = StreamSender(
        never,
        destination=credentials.destination_account,
        shared_secret=credentials.shared_secret,
        source_address="g.kiungo.sender",
        source_asset=Asset("USD", 2),
    )
    sender.build_prepare(1, 0, [], fulfillable=False)  # past the first-packet frames
    sender._remote_authenticated = True
    money = [StreamMoneyFrame(1, 1)]

    def build(i: int) -> None:
        prepare, _ = sender.build_prepare(1000, 990, money, fulfillable=True)
        encode_packet(prepare)
        if sender._sequence > 1 << 30:
            sender._sequence = 0

    sample = prepares[0].data

    def crypto_floor(i: int) -> None:
        keys.decrypt(sample)
        keys.fulfillment(sample)
        keys.encrypt(b"x" * 40)

    meta = {"python": platform.python_version(), "machine": platform.machine()}
    for name, fn in (
        ("prepare_decode", decode),
        ("prepare_decode_every_destination_new", decode_cold),
        ("prepare_encode", encode),
        ("receiver_prepare_to_fulfill_with_receipt", receive),
        ("sender_packets_built", build),
        ("crypto_floor_decrypt_hmac_encrypt", crypto_floor),
    ):
        print(json.dumps({**measure(name, fn, seconds), **meta}), flush=True)
    asyncio.run(asyncio.sleep(0))


if __name__ == "__main__":
    main()
