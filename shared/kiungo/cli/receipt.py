"""``kiungo receipt verify`` and ``kiungo receipt decode``: STREAM receipts (RFC 39, deprecated).

A receipt is what a Web Monetization verifier checks: 58 bytes, given in base64 as it travels in
StreamReceipt frames and verifier APIs. ``verify`` answers in JSON and by exit status (0 valid,
1 not), so it can be used in scripts; input it cannot read at all exits 2.
"""

from __future__ import annotations

import argparse
from typing import Any

from kiungo.cli.arguments import (
    CommandError,
    Subcommands,
    bytes_from_base64,
    command_group,
    paragraphs,
    print_json,
    read_argument,
    secret_from_base64,
)
from kiungo.stream.receipt import (
    RECEIPT_VERSION,
    Receipt,
    ReceiptError,
    decode_receipt,
    verify_receipt,
)

__all__ = ["register"]

_RECEIPT_HELP = (
    "the receipt in base64 (standard or URL-safe, padding optional), or - to read it from stdin"
)
_OUTPUT = """\
output: {"version": 1, "nonce": <16 bytes hex>, "streamId": <number>, "totalReceived": "<u64>"}
"""


def register(subparsers: Subcommands) -> None:
    commands = command_group(
        subparsers,
        "receipt",
        "verify or decode STREAM receipts",
        "Verify or decode STREAM receipts (RFC 39): 58 bytes, given in base64.",
    )

    verify = commands.add_parser(
        "verify",
        help="check a receipt's HMAC under the receipt secret",
        description=paragraphs(
            'Check a receipt\'s HMAC. Prints {"valid": true, ...its fields} and exits 0, or '
            '{"valid": false, "error": "..."} and exits 1. Input that is not base64 exits 2.'
        ),
        epilog=_OUTPUT,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    verify.add_argument("receipt", metavar="RECEIPT", help=_RECEIPT_HELP)
    verify.add_argument(
        "--secret",
        metavar="B64",
        required=True,
        help="the receipt secret (Receipt-Secret): 32 bytes in base64, standard or URL-safe",
    )
    verify.set_defaults(handler=_verify)

    decode = commands.add_parser(
        "decode",
        help="print a receipt's fields without checking its HMAC",
        description="Print a receipt's fields as JSON, without checking its HMAC.",
        epilog=_OUTPUT,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    decode.add_argument("receipt", metavar="RECEIPT", help=_RECEIPT_HELP)
    decode.set_defaults(handler=_decode)


def _verify(args: argparse.Namespace) -> int:
    secret = secret_from_base64(args.secret, "--secret")
    raw = bytes_from_base64(read_argument(args.receipt), "RECEIPT")
    try:
        receipt = verify_receipt(raw, secret)
    except ReceiptError as exc:
        print_json({"valid": False, "error": str(exc)})
        return 1
    print_json({"valid": True, **_receipt_to_json(receipt)})
    return 0


def _decode(args: argparse.Namespace) -> int:
    raw = bytes_from_base64(read_argument(args.receipt), "RECEIPT")
    try:
        receipt = decode_receipt(raw)
    except ReceiptError as exc:
        raise CommandError(f"not a STREAM receipt: {exc}") from None
    print_json(_receipt_to_json(receipt))
    return 0


def _receipt_to_json(receipt: Receipt) -> dict[str, Any]:
    return {
        "version": RECEIPT_VERSION,
        "nonce": receipt.nonce.hex(),
        "streamId": receipt.stream_id,
        "totalReceived": str(receipt.total_received),
    }
