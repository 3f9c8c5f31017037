"""``schemas.priced.money``: 10 places at any size a Decimal(38, 10) sum can reach."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

import pytest

from schemas.priced import COST_PLACES, money


def test_large_sums_keep_ten_places() -> None:
    total = Decimal("1234567890123456789012.1234567891")  # 22 integer digits: past the default 28-digit context
    with pytest.raises(InvalidOperation):
        total.quantize(COST_PLACES)
    assert money(total) == total and str(money(total)) == "1234567890123456789012.1234567891"


def test_rounding_is_half_even() -> None:
    assert money(Decimal("0.00000000005")) == Decimal("0E-10")
    assert money(Decimal("0.00000000015")) == Decimal("0.0000000002")
    assert str(money(Decimal(3))) == "3.0000000000"
