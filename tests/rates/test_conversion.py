"""Exact conversion between assets: a whole-unit rate scaled once for the assets' smallest units,
amounts floored source to destination and ceiled the other way."""

from __future__ import annotations

from fractions import Fraction

from hypothesis import given
from hypothesis import strategies as st

from kiungo.rates import convert, convert_ceil, scaled_rate

rates = st.fractions(min_value=Fraction(1, 10**12), max_value=Fraction(10**12)).filter(bool)
scales = st.integers(min_value=0, max_value=18)
amounts = st.integers(min_value=0, max_value=2**64 - 1)


def test_a_rate_is_scaled_by_the_difference_of_the_scales() -> None:
    # 0.9 EUR per USD: 1 cent (scale 2) is 0.9 cents at scale 2, 9 milli-euros at scale 4.
    assert scaled_rate(Fraction(9, 10), 2, 2) == Fraction(9, 10)
    assert scaled_rate(Fraction(9, 10), 2, 4) == 90
    assert scaled_rate(Fraction(9, 10), 4, 2) == Fraction(9, 1000)
    # 150 JPY (scale 0) per USD (scale 2): 1.5 yen per cent.
    assert scaled_rate(Fraction(150), 2, 0) == Fraction(3, 2)


@given(amount=amounts, rate=rates, source=scales, destination=scales)
def test_conversion_floors_and_ceils_the_exact_value(
    amount: int, rate: Fraction, source: int, destination: int
) -> None:
    exact = amount * rate * Fraction(10) ** (destination - source)
    down, up = (
        convert(amount, rate, source, destination),
        convert_ceil(amount, rate, source, destination),
    )
    assert down <= exact < down + 1
    assert up - 1 < exact <= up
    assert down == amount * scaled_rate(rate, source, destination) // 1
