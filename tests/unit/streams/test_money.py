"""Exact money arithmetic on columns (streams/money.py), held to ``Decimal``."""

from __future__ import annotations

import random
from decimal import ROUND_HALF_EVEN, Context, Decimal, localcontext

import numpy as np
import pyarrow as pa
import pytest

from schemas.priced import COST_PLACES, MONEY
from schemas.usage import MAX_TOKENS
from streams.money import common_scale, cost_units, decimal_array, fixed_point

UNIT = Decimal(10) ** -10
WIDE = Context(prec=100)
"""Enough digits for every product here: no reference value is ever rounded by the context."""


def expected_units(tokens: int, rate: Decimal) -> int:
    """The cost rule in Decimal: ``tokens * rate / 1e6`` to 10 places, half to even, in 1e-10 units."""
    with localcontext(WIDE):
        cost = (Decimal(tokens) * rate / Decimal(1_000_000)).quantize(COST_PLACES, rounding=ROUND_HALF_EVEN)
        return int(cost / UNIT)


def units_of(tokens: list[int], rates: list[Decimal]) -> list[int]:
    """``cost_units`` on a column of tokens with one rate per row."""
    numerators, scale = common_scale(rates)
    result = cost_units(np.array(tokens, dtype=np.int64), np.array(numerators, dtype=np.int64), scale)
    return [int(u) for u in result]


def random_rate(rng: random.Random, places: int) -> Decimal:
    """A rate with exactly ``places`` decimals (a last digit that is not 0), $0 to $1000 per million."""
    whole = rng.randint(0, 1000 * 10**places)
    if places and whole % 10 == 0:
        whole += rng.randint(1, 9)
    return Decimal(whole).scaleb(-places)


# --- fixed_point and common_scale -----------------------------------------------------------


@pytest.mark.parametrize(
    ("rate", "expected"),
    [
        (Decimal("2.5"), (25, 1)),
        (Decimal("10"), (10, 0)),
        (Decimal("1E+2"), (100, 0)),
        (Decimal("0"), (0, 0)),
        (Decimal("0.00015"), (15, 5)),
        (Decimal("1.250"), (1250, 3)),
        (Decimal("0.18000000000000002"), (18000000000000002, 17)),
        (Decimal("-0.5"), (-5, 1)),
    ],
)
def test_fixed_point(rate: Decimal, expected: tuple[int, int]) -> None:
    assert fixed_point.__wrapped__(rate) == expected
    # Cached: an equal rate written otherwise (1.25 for 1.250) may answer; the value is the same.
    numerator, scale = fixed_point(rate)
    assert scale >= 0
    assert Decimal(numerator).scaleb(-scale) == rate


@pytest.mark.parametrize("rate", [Decimal("NaN"), Decimal("Infinity"), Decimal("-Infinity")])
def test_fixed_point_refuses_non_finite(rate: Decimal) -> None:
    with pytest.raises(ValueError, match="not a finite rate"):
        fixed_point(rate)


def test_common_scale() -> None:
    assert common_scale([Decimal("2.5"), Decimal("0.00015"), Decimal(10)]) == ([250000, 15, 1000000], 5)
    assert common_scale([Decimal(3)]) == ([3], 0)


def test_common_scale_keeps_every_rate() -> None:
    rng = random.Random(7)
    rates = [random_rate(rng, rng.randint(0, 8)) for _ in range(200)]
    numerators, scale = common_scale(rates)
    assert [Decimal(n).scaleb(-scale) for n in numerators] == rates


# --- cost_units against Decimal -------------------------------------------------------------


def test_cost_units_known_values() -> None:
    # gpt-4o: 1000 tokens at $2.5 = $0.0025 = 25_000_000 units; 1 token at $10 = 100_000 units.
    assert units_of([1000, 1, 0], [Decimal("2.5"), Decimal(10), Decimal(10)]) == [25_000_000, 100_000, 0]


@pytest.mark.parametrize(
    ("tokens", "rate", "units"),
    [
        (1, Decimal("0.00015"), 2),  # 1.5 -> 2 (to even)
        (1, Decimal("0.00025"), 2),  # 2.5 -> 2 (to even)
        (1, Decimal("0.00035"), 4),  # 3.5 -> 4
        (1, Decimal("0.00005"), 0),  # 0.5 -> 0
        (3, Decimal("0.00005"), 2),  # 1.5 -> 2
        (5, Decimal("0.00001"), 0),  # 0.5 -> 0
        (7, Decimal("0.00001"), 1),  # 0.7 -> 1
        (1, Decimal("0.000150001"), 2),  # just above a tie
        (1, Decimal("0.000249999"), 2),  # just below a tie
        (1, Decimal("0.000250001"), 3),  # just above a tie
        (1, Decimal("0.01875"), 188),  # gemini-1.5-flash cache read: 187.5 -> 188
        (3, Decimal("0.01875"), 562),  # 562.5 -> 562
        (1, Decimal("0.00875"), 88),  # nova-micro cache read: 87.5 -> 88
        (2, Decimal("0.003625"), 72),  # deepseek-v4-pro cache read: 72.5 -> 72
    ],
)
def test_cost_units_rounds_half_to_even(tokens: int, rate: Decimal, units: int) -> None:
    assert expected_units(tokens, rate) == units
    assert units_of([tokens], [rate]) == [units]


def test_cost_units_ties_in_one_column() -> None:
    """Rows of one column at different scales: each rounds on its own."""
    tokens = list(range(1, 41))
    rates = [Decimal("0.00005"), Decimal("0.000025"), Decimal("0.0000125"), Decimal("2.5")] * 10
    assert units_of(tokens, rates) == [expected_units(t, r) for t, r in zip(tokens, rates, strict=True)]


@pytest.mark.parametrize("places", range(0, 9))
def test_cost_units_random_matches_decimal(places: int) -> None:
    """Random tokens and rates, up to 8 decimals, within the int64 path."""
    rng = random.Random(1000 + places)
    rates = [random_rate(rng, rng.randint(0, places)) for _ in range(500)]
    numerators, scale = common_scale(rates)
    # Largest token count the int64 path takes for these rates (the module's own bound).
    bound = min(MAX_TOKENS, 2**62 // (max(max(numerators), 1) * 10 ** max(4 - scale, 0)) - 1)
    tokens = [rng.choice((0, 1, rng.randint(0, 10_000), rng.randint(0, bound), bound)) for _ in rates]

    result = cost_units(np.array(tokens, dtype=np.int64), np.array(numerators, dtype=np.int64), scale)

    assert result.dtype == np.int64
    assert result.tolist() == [expected_units(t, r) for t, r in zip(tokens, rates, strict=True)]


def test_cost_units_empty() -> None:
    result = cost_units(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), 6)
    assert len(result) == 0


def test_cost_units_huge_tokens_take_python_ints() -> None:
    """Products that could overflow int64 are computed on Python ints, exactly."""
    rates = [Decimal(600), Decimal("150.25"), Decimal("0.0001"), Decimal(1000)]
    tokens = [MAX_TOKENS, MAX_TOKENS - 1, 3, 2**62]
    numerators, scale = common_scale(rates)

    result = cost_units(np.array(tokens, dtype=np.int64), np.array(numerators, dtype=np.int64), scale)

    assert result.dtype == object
    assert all(type(u) is int for u in result)
    assert result.tolist() == [expected_units(t, r) for t, r in zip(tokens, rates, strict=True)]
    assert result[0] == 6 * 10**18  # $600 000 000, past int64 once doubled
    assert result[3] > 2**63


def test_cost_units_huge_tokens_with_rounding() -> None:
    rates = [Decimal("0.18000000000000002"), Decimal("0.00015")]  # both in the genai-prices catalog's style
    tokens = [1000, MAX_TOKENS]
    numerators, scale = common_scale(rates)

    result = cost_units(np.array(tokens, dtype=np.int64), np.array(numerators, dtype=np.int64), scale)

    assert result.tolist() == [expected_units(t, r) for t, r in zip(tokens, rates, strict=True)]


# --- decimal_array --------------------------------------------------------------------------


def as_decimals(units: list[int], valid: list[bool]) -> list[Decimal | None]:
    with localcontext(WIDE):
        return [Decimal(u).scaleb(-10) if ok else None for u, ok in zip(units, valid, strict=True)]


def test_decimal_array_round_trip_with_nulls_and_negatives() -> None:
    units = [0, 1, -1, 25_000_000, -123_456_789_012, 2**63 - 1, -(2**63), 42, 7]
    valid = [True, True, True, False, True, True, True, False, True]

    array = decimal_array(np.array(units, dtype=np.int64), np.array(valid))

    array.validate(full=True)
    assert array.type == MONEY
    assert array.null_count == 2
    assert array.is_null().to_pylist() == [not ok for ok in valid]
    assert array.to_pylist() == as_decimals(units, valid)
    assert array.to_pylist()[2] == Decimal("-1E-10")
    assert array.to_pylist()[6] == Decimal("-922337203.6854775808")
    # Back to units: the exact integers, nulls in place.
    back = [None if d is None else int(d / UNIT) for d in array.to_pylist()]
    assert back == [u if ok else None for u, ok in zip(units, valid, strict=True)]


def test_decimal_array_random_round_trip() -> None:
    rng = random.Random(11)
    units = [rng.randint(-(2**63), 2**63 - 1) for _ in range(1000)]
    valid = [rng.random() > 0.2 for _ in units]
    array = decimal_array(np.array(units, dtype=np.int64), np.array(valid))
    array.validate(full=True)
    assert array.to_pylist() == as_decimals(units, valid)


def test_decimal_array_without_nulls_has_no_validity_buffer() -> None:
    array = decimal_array(np.array([5, -5], dtype=np.int64), np.array([True, True]))
    assert array.null_count == 0
    assert array.buffers()[0] is None
    assert array.to_pylist() == [Decimal("5E-10"), Decimal("-5E-10")]


def test_decimal_array_all_null_and_empty() -> None:
    nulls = decimal_array(np.array([1, 2, 3], dtype=np.int64), np.array([False, False, False]))
    nulls.validate(full=True)
    assert nulls.to_pylist() == [None, None, None]
    empty = decimal_array(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=bool))
    assert len(empty) == 0
    assert empty.type == MONEY


def test_decimal_array_of_python_ints() -> None:
    """The object path of cost_units: values past int64, negatives and nulls."""
    units = [2**63, -(2**63) - 1, 10**27 + 1, -(10**27) - 1, 0, 5]
    valid = [True, True, True, True, True, False]
    array = decimal_array(np.array(units, dtype=object), np.array(valid))
    array.validate(full=True)
    assert array.type == MONEY
    assert array.to_pylist() == as_decimals(units, valid)


def test_decimal_array_matches_between_paths() -> None:
    units = [0, 1, -1, 123_456_789, -(2**62)]
    valid = np.array([True, False, True, True, True])
    native = decimal_array(np.array(units, dtype=np.int64), valid)
    python = decimal_array(np.array(units, dtype=object), valid)
    assert native.equals(python)


def test_decimal_array_keeps_38_digits() -> None:
    units = [10**30 + 1, -(10**37) - 7]
    array = decimal_array(np.array(units, dtype=object), np.array([True, True]))
    assert array.to_pylist() == as_decimals(units, [True, True])


def test_money_is_clickhouse_decimal() -> None:
    assert pa.types.is_decimal(MONEY)
    assert (MONEY.precision, MONEY.scale) == (38, 10)
