"""Exact money arithmetic on whole columns: token counts times per-million rates.

Amounts are integers in units of 1e-10 USD (the 10 places of ``Decimal(38, 10)``). A rate of
``n * 10**-s`` USD per million tokens costs ``tokens * n * 10**(4 - s)`` units: an integer
when ``s <= 4`` (every list price so far), otherwise rounded half to even, exactly as
``Decimal.quantize`` rounds. numpy int64 does the work when the product provably fits;
beyond that the same formula runs on Python integers, so no amount ever overflows or rounds
through a float.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Context, Decimal
from functools import lru_cache
from typing import cast

import numpy as np
import pyarrow as pa

from schemas.priced import MONEY

UNIT_PLACES = 10
_PER_MILLION_PLACES = 6
_SAFE = 2**62  # products below this fit int64 even doubled (for the rounding test)


@lru_cache(maxsize=4096)
def fixed_point(rate: Decimal) -> tuple[int, int]:
    """``rate`` as ``(n, s)`` with ``rate == n * 10**-s`` and ``s >= 0``."""
    sign, digits, exponent = rate.as_tuple()
    if not isinstance(exponent, int):
        raise ValueError(f"not a finite rate: {rate}")
    n = int("".join(map(str, digits)) or "0") * (-1 if sign else 1)
    if exponent >= 0:
        return n * 10**exponent, 0
    return n, -exponent


def common_scale(rates: Sequence[Decimal]) -> tuple[list[int], int]:
    """Numerators of ``rates`` over one power of ten, and that power."""
    pairs = [fixed_point(r) for r in rates]
    scale = max(s for _, s in pairs)
    return [n * 10 ** (scale - s) for n, s in pairs], scale


def cost_units(tokens: np.ndarray, numerators: np.ndarray, scale: int) -> np.ndarray:
    """``tokens * numerators * 10**-scale / 1e6`` per row, in 1e-10 units, half-even.

    ``tokens`` and ``numerators`` are non-negative int64 arrays of one length (a rate may
    differ per row: context tiers). The result is int64, or an object array of Python ints
    when int64 could overflow.
    """
    shift = UNIT_PLACES - _PER_MILLION_PLACES - scale
    factor = 10 ** max(shift, 0)
    if len(tokens) and int(tokens.max()) * int(numerators.max()) * factor >= _SAFE:
        tokens, numerators = tokens.astype(object), numerators.astype(object)
    return round_units(tokens * numerators, scale + _PER_MILLION_PLACES)


def round_units(product: np.ndarray, scale: int) -> np.ndarray:
    """``product * 10**-scale`` USD in 1e-10 units, rounded half to even (exact integers in;
    int64 products must leave room for the scaling, object arrays always do)."""
    shift = UNIT_PLACES - scale
    if shift >= 0:
        return cast(np.ndarray, product * 10**shift)
    divisor = 10**-shift
    if divisor >= _SAFE and product.dtype != object:
        product = product.astype(object)
    quotient, remainder = product // divisor, product % divisor  # np.divmod has no object loop
    round_up = (2 * remainder > divisor) | ((2 * remainder == divisor) & (quotient % 2 == 1))
    return cast(np.ndarray, quotient + round_up.astype(quotient.dtype if quotient.dtype != object else int))


def decimal_array(units: np.ndarray, valid: np.ndarray) -> pa.Array:
    """A ``decimal128(38, 10)`` column from 1e-10 units; null where ``valid`` is False."""
    size = len(units)
    if units.dtype == object:
        wide = Context(prec=80)  # the default 28 digits would round amounts above 1e18 USD
        values = [
            Decimal(int(u)).scaleb(-UNIT_PLACES, wide) if ok else None for u, ok in zip(units, valid, strict=True)
        ]
        return pa.array(values, MONEY)
    words = np.empty((size, 2), dtype=np.int64)  # 128-bit little-endian two's complement
    words[:, 0] = units
    words[:, 1] = units >> 63
    validity = None if valid.all() else pa.py_buffer(np.packbits(valid, bitorder="little"))
    return pa.Array.from_buffers(MONEY, size, [validity, pa.py_buffer(words)], null_count=int(size - valid.sum()))
