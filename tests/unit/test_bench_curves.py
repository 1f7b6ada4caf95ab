"""bench/curves.py: the flatness verdict and the size lists the bench's flags take."""

from __future__ import annotations

import pytest

from bench.curves import FLAT_RATIO, parse_sizes, verdict


def test_a_curve_is_flat_up_to_the_ratio_and_not_beyond() -> None:
    assert verdict([2.0, 2.5, 2.0 * FLAT_RATIO]) == {"ratio": FLAT_RATIO, "flat": True}
    assert verdict([3.1, 1.0, 2.0]) == {"ratio": 3.1, "flat": False}  # largest / smallest, whatever the order


def test_a_curve_with_a_zero_is_never_flat() -> None:
    assert verdict([0.0, 1.0])["flat"] is False


def test_sizes_are_sorted_and_accept_exponents() -> None:
    assert parse_sizes("100000, 1e3,1e6") == [1000, 100_000, 1_000_000]


@pytest.mark.parametrize("text", ["", "0,10", "-5"])
def test_sizes_must_be_positive(text: str) -> None:
    with pytest.raises(ValueError):
        parse_sizes(text)
