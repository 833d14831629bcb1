"""The generic lifecycle table: every pair of states answers as the table says."""

from __future__ import annotations

import enum

import pytest

from kiungo.payments.lifecycle import IllegalTransition, Lifecycle


class Light(enum.StrEnum):
    RED = "RED"
    GREEN = "GREEN"
    AMBER = "AMBER"
    OFF = "OFF"


TABLE = {
    Light.RED: {Light.GREEN, Light.OFF},
    Light.GREEN: {Light.AMBER, Light.OFF},
    Light.AMBER: {Light.RED, Light.OFF},
}
LIGHTS = Lifecycle("light", Light, TABLE)


@pytest.mark.parametrize("old", list(Light))
@pytest.mark.parametrize("new", list(Light))
def test_every_pair_is_allowed_exactly_when_the_table_says(old: Light, new: Light) -> None:
    if new in TABLE.get(old, set()):
        LIGHTS.check(old, new)
        assert old in LIGHTS.sources(new)
    else:
        with pytest.raises(IllegalTransition, match=f"{old} → {new}"):
            LIGHTS.check(old, new)
        assert old not in LIGHTS.sources(new)


def test_a_state_without_successors_is_final() -> None:
    assert LIGHTS.is_final(Light.OFF)
    assert not LIGHTS.is_final(Light.RED)
    assert LIGHTS.allowed(Light.OFF) == frozenset()


def test_a_table_naming_a_state_of_another_kind_is_refused() -> None:
    class Other(enum.StrEnum):
        X = "X"

    with pytest.raises(ValueError, match="unknown states"):
        Lifecycle("light", Light, {Light.RED: {Other.X}})  # type: ignore[misc]
