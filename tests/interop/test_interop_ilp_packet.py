"""ILP packets: ilp-packet (JavaScript) and kiungo.ilp agree byte for byte, both ways."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from tests.interop.node import node_script
from tests.vectors import load_vector

from kiungo.ilp.packet import Fulfill, Packet, Prepare, Reject, decode_packet, encode_packet
from kiungo.ilp.packet_json import packet_to_json

pytestmark = pytest.mark.interop


async def test_random_js_packets_decode_identically_and_reencode_to_the_same_bytes() -> None:
    async with node_script("ilp_packet_codec.js") as codec:
        first = await codec.command({"op": "random", "n": 400, "seed": "kiungo"})
        lines = [first] + [await codec.read() for _ in range(399)]
    assert {line["packet"]["type"] for line in lines} == {12, 13, 14}
    for line in lines:
        raw = bytes.fromhex(line["hex"])
        packet = decode_packet(raw)
        assert packet_to_json(packet) == line["packet"]
        assert encode_packet(packet) == raw


def _random_packet(rng: random.Random, i: int) -> Packet:
    data = rng.randbytes(rng.choice([0, 1, 127, 128, 300, 5000]))
    address = "g." + ".".join(f"seg{rng.randrange(10**6)}~_-" for _ in range(rng.randint(1, 5)))
    kind = i % 3
    if kind == 0:
        expires = datetime(2030, 1, 1, tzinfo=UTC) + timedelta(milliseconds=rng.randrange(10**11))
        return Prepare(rng.randrange(2**64), expires, rng.randbytes(32), address, data)
    if kind == 1:
        return Fulfill(rng.randbytes(32), data)
    message = "".join(rng.choice("aé€😀 ") for _ in range(rng.randint(0, 40)))
    return Reject(rng.choice(["F00", "F08", "T04", "R02", "F99", "T77"]), address, message, data)


async def test_our_packets_decode_identically_in_js() -> None:
    rng = random.Random(20261123)
    packets = [_random_packet(rng, i) for i in range(300)]
    async with node_script("ilp_packet_codec.js") as codec:
        for packet in packets:
            raw = encode_packet(packet)
            answer = await codec.command({"op": "decode", "hex": raw.hex()})
            assert answer["packet"] == packet_to_json(packet)
            again = await codec.command({"op": "encode", "packet": answer["packet"]})
            assert again["hex"] == raw.hex()


async def test_the_ilp_vectors_decode_the_same_in_js() -> None:
    async with node_script("ilp_packet_codec.js") as codec:
        for vector in load_vector("ilp_packets.json")["vectors"]:
            answer = await codec.command({"op": "decode", "hex": vector["hex"]})
            assert answer["packet"] == packet_to_json(decode_packet(bytes.fromhex(vector["hex"])))
