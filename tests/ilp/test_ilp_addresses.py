"""ILP addresses (RFC 15) against ``ilp_addresses.json``, and the prefix relation routing uses."""

from __future__ import annotations

from typing import Any

import pytest
from tests.vectors import load_vector

from kiungo.ilp.address import (
    ADDRESS_PATTERN,
    MAX_ADDRESS_LENGTH,
    is_prefix_of,
    is_valid_address,
    is_valid_address_bytes,
)

ADDRESSES: dict[str, Any] = load_vector("ilp_addresses.json")


def test_pattern_is_the_reference_regex() -> None:
    assert "^" + ADDRESS_PATTERN.pattern + "$" == ADDRESSES["regex"]


def test_maximum_length_is_the_reference_one() -> None:
    assert ADDRESSES["max_length"] == MAX_ADDRESS_LENGTH


@pytest.mark.parametrize("address", ADDRESSES["valid"])
def test_valid_address_is_accepted(address: str) -> None:
    assert is_valid_address(address)
    assert is_valid_address_bytes(address.encode("ascii"))


@pytest.mark.parametrize("case", ADDRESSES["invalid"], ids=lambda c: c["why"])
def test_invalid_address_is_refused(case: dict[str, str]) -> None:
    assert not is_valid_address(case["address"])


@pytest.mark.parametrize("case", ADDRESSES["invalid"], ids=lambda c: c["why"])
def test_invalid_address_bytes_are_refused(case: dict[str, str]) -> None:
    # latin-1 keeps the one non-ASCII case a single 0xF0 byte, as in the sources.
    assert not is_valid_address_bytes(case["address"].encode("latin-1"))


@pytest.mark.parametrize("case", ADDRESSES["length_cases"], ids=lambda c: str(c["length"]))
def test_address_length_limit(case: dict[str, Any]) -> None:
    address: str = case["address"]
    assert len(address) == case["length"]
    assert is_valid_address(address) is case["valid"]
    assert is_valid_address_bytes(address.encode("ascii")) is case["valid"]


@pytest.mark.parametrize("address", ADDRESSES["rfc15_examples"])
def test_rfc15_example_is_valid(address: str) -> None:
    assert is_valid_address(address)
    assert is_valid_address_bytes(address.encode("ascii"))


def test_addresses_are_case_sensitive_in_the_scheme() -> None:
    assert not is_valid_address("G.alice")
    assert not is_valid_address_bytes(b"G.alice")


def test_address_with_a_trailing_newline_is_refused() -> None:
    assert not is_valid_address("g.alice\n")
    assert not is_valid_address_bytes(b"g.alice\n")


def test_address_is_a_prefix_of_itself() -> None:
    assert is_prefix_of("g.alice", "g.alice")


def test_prefix_covers_addresses_below_it() -> None:
    assert is_prefix_of("g.alice", "g.alice.bob")
    assert is_prefix_of("g", "g.alice")


def test_prefix_must_end_on_a_segment_boundary() -> None:
    assert not is_prefix_of("g.alice", "g.alicebob")


def test_longer_address_is_not_a_prefix_of_a_shorter_one() -> None:
    assert not is_prefix_of("g.alice.bob", "g.alice")


def test_sibling_is_not_a_prefix() -> None:
    assert not is_prefix_of("g.alice", "g.bob.alice")
