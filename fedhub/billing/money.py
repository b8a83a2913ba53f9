"""Money and quantities as :class:`~decimal.Decimal`, with one rounding rule.

The rule: quantities are kept to 6 decimal places; each invoice line's amount is
``quantity × unit price`` computed exactly and rounded **half-up to the cent once**;
an invoice total is the sum of its (already rounded) lines, so a total always
equals the sum of its lines. Splitting a line among users uses the largest
remainder method, so the shares add up to the line to the cent.

Stored values use :class:`DecimalText` (the decimal's text), because SQLite has no
exact decimal type and would silently turn ``Numeric`` into floats.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal

from sqlalchemy import String
from sqlalchemy.types import TypeDecorator

CENT = Decimal("0.01")
QUANTUM = Decimal("0.000001")
ZERO = Decimal("0.00")


def dec(value: object) -> Decimal:
    """A Decimal from an int, str, Decimal or float (floats via their shortest repr)."""
    if isinstance(value, Decimal):
        return value
    if isinstance(value, float):
        return Decimal(repr(value))
    return Decimal(str(value))


def cents(value: Decimal) -> Decimal:
    """Round an exact amount half-up to the cent: the one rounding of money."""
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


def qty(value: Decimal) -> Decimal:
    """Round a quantity half-up to 6 decimal places."""
    return value.quantize(QUANTUM, rounding=ROUND_HALF_UP)


def split(amount: Decimal, weights: Mapping[str, Decimal]) -> dict[str, Decimal]:
    """Split ``amount`` (cents) in proportion to ``weights``; the shares sum to ``amount``."""
    total = sum(weights.values(), Decimal(0))
    if not weights:
        return {}
    if total <= 0:
        keys = sorted(weights)
        weights = dict.fromkeys(keys, Decimal(1))
        total = Decimal(len(keys))
    units = int((amount / CENT).to_integral_value())
    raw = {k: Decimal(units) * w / total for k, w in weights.items()}
    floor = {k: int(v.to_integral_value(rounding=ROUND_DOWN)) for k, v in raw.items()}
    left = units - sum(floor.values())
    # largest remainders first, name as the tie-break so the split is deterministic
    for k in sorted(raw, key=lambda k: (-(raw[k] - floor[k]), k))[: abs(left)]:
        floor[k] += 1 if left > 0 else -1
    return {k: Decimal(v) * CENT for k, v in floor.items()}


class DecimalText(TypeDecorator):
    """An exact decimal stored as text (portable between SQLite and PostgreSQL)."""

    impl = String(40)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        return None if value is None else str(dec(value))

    def process_result_value(self, value, dialect):
        return None if value is None else Decimal(value)
