"""Exchange rates (DESIGN §6): the rates-service client and exact conversion."""

from kiungo.rates.client import (
    RatesClient,
    RatesError,
    RatesUnavailable,
    convert,
    convert_ceil,
    scaled_rate,
)

__all__ = [
    "RatesClient",
    "RatesError",
    "RatesUnavailable",
    "convert",
    "convert_ceil",
    "scaled_rate",
]
