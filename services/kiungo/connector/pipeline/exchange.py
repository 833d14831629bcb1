"""Amount conversion between the incoming and outgoing assets, through the rates service.

Source → destination amounts floor (as Rafiki and @interledger/pay do), exactly, with the
assets' scales; a nonzero amount that converts to nothing is R01, missing rates F07.
"""

from __future__ import annotations

from kiungo.connector.node import Node
from kiungo.ilp.errors import CannotReceiveError, InsufficientSourceAmountError
from kiungo.rates import RatesError, convert

__all__ = ["exchange"]


async def exchange(
    node: Node, source: tuple[str, int], destination: tuple[str, int], amount: int
) -> int:
    """``amount`` in the ``(code, scale)`` of ``source`` expressed in ``destination``'s."""
    if source == destination or amount == 0:
        return amount
    try:
        rate = await node.rates.rate(source[0], destination[0])
    except RatesError as exc:
        raise CannotReceiveError(f"no exchange rate {source[0]}→{destination[0]}: {exc}") from None
    converted = convert(amount, rate, source[1], destination[1])
    if converted == 0:
        raise InsufficientSourceAmountError(f"{amount} converts to nothing in {destination[0]}")
    return converted
