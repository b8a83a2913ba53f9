"""Rating: one tenant's usage in one period → invoice lines. Reads only, writes nothing.

For each part of the period at one tier (see :mod:`~fedhub.billing.subscriptions`):

- a base-fee line: ``monthly_price × days / days_in_month``;
- one line per meter with usage: usage beyond the included quantity (itself prorated
  by ``days / days_in_month``) times the overage unit price;
- a negative discount line when the tier carries ``discount_percent``.

Usage is summed with :func:`math.fsum` (exactly rounded, so the order events were
recorded in can never change a total), then turned into Decimal. Every line says
which users (and, for federated meters, which experiments) caused it; those
shares add up to the line's amount to the cent.
"""

from __future__ import annotations

import bisect
import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Context, Decimal, DecimalException, localcontext
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from fedhub.billing import pricebook
from fedhub.billing.money import ZERO, cents, dec, qty, split
from fedhub.billing.periods import Period
from fedhub.billing.subscriptions import Segment, history, segments
from fedhub.errors import FedhubError
from fedhub.metering import MeterEvent
from fedhub.tiers import TierCatalog

#: Rating's decimal arithmetic: 60 significant digits and a wide exponent, so the
#: quantities billing accepts (at most ``BillingSettings.max_event_quantity``, itself
#: at most 1e15, per event) are summed, divided and rounded to 6 places exactly. What
#: lies beyond (a row written before that bound existed) raises :class:`RatingError`.
RATING_CONTEXT = Context(prec=60, Emax=999_999, Emin=-999_999)

SHARED = "(shared)"  # attribution of what no single user caused (base fee)
NO_USER = "(tenant)"  # usage recorded without a username
FL_KINDS = ("fl_client_seconds", "fl_rounds", "experiments")

#: one usage row as rating reads it: kind, username, quantity, start, attributes (or None)
UsageRow = tuple[str, str | None, float, datetime, dict | None]


class RatingError(FedhubError, code="unratable_usage", status=422):
    """One tenant's usage cannot be priced (a quantity out of any sensible range)."""


@dataclass
class LineSpec:
    line_type: str
    meter: str | None
    description: str
    quantity: Decimal
    unit: str
    unit_price: Decimal
    amount: Decimal
    key: str
    included: Decimal | None = None
    usage: Decimal | None = None
    attribution: dict[str, Any] = field(default_factory=dict)


@dataclass
class Rating:
    tenant: str
    period: Period
    lines: list[LineSpec]
    segments: list[Segment]

    @property
    def total(self) -> Decimal:
        return sum((line.amount for line in self.lines), ZERO)

    def by_user(self) -> dict[str, Decimal]:
        """Chargeback: each user's share of the amount (``(shared)`` for the base fee)."""
        result: dict[str, Decimal] = defaultdict(lambda: ZERO)
        for line in self.lines:
            for user, share in line.attribution.get("users", {}).items():
                result[user] += Decimal(share["amount"])
        return dict(result)

    def usage_summary(self) -> dict[str, dict[str, Decimal]]:
        """Per meter: usage and included units over the whole period."""
        summary: dict[str, dict[str, Decimal]] = {}
        for line in self.lines:
            if line.line_type != "usage":
                continue
            s = summary.setdefault(
                line.meter, {"usage": ZERO, "included": ZERO, "amount": ZERO, "unit": line.unit}
            )
            s["usage"] += line.usage or 0
            s["included"] += line.included or 0
            s["amount"] += line.amount
        return summary


@dataclass
class _Bucket:
    users: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    experiments: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))


def fetch_usage(
    session: Session, tenant: str, start: datetime, end: datetime
) -> Iterable[UsageRow]:
    """The :data:`UsageRow` of each billed event in ``[start, end)``."""
    base = (MeterEvent.tenant == tenant, MeterEvent.start >= start, MeterEvent.start < end)
    plain = [k for k in pricebook.BILLED_KINDS if k not in FL_KINDS]
    q1 = select(MeterEvent.kind, MeterEvent.username, MeterEvent.quantity, MeterEvent.start).where(
        *base, MeterEvent.kind.in_(plain)
    )
    for row in session.execute(q1):
        yield row[0], row[1], row[2], row[3], None
    q2 = select(
        MeterEvent.kind,
        MeterEvent.username,
        MeterEvent.quantity,
        MeterEvent.start,
        MeterEvent.attributes,
    ).where(*base, MeterEvent.kind.in_(FL_KINDS))
    yield from session.execute(q2)


def rate(
    session: Session,
    tenant: str,
    period: Period,
    catalog: TierCatalog,
    *,
    until: datetime | None = None,
    changes=None,
) -> Rating:
    """Price ``tenant``'s usage in ``period`` (up to ``until`` for a running period)."""
    changes = history(session, tenant) if changes is None else changes
    segs = segments(changes, period)
    end = min(until, period.end) if until else period.end
    rows = fetch_usage(session, tenant, period.start, end) if segs else ()
    rating = rate_rows(tenant, period, catalog, segs, rows)
    rating.lines += charge_lines(session, tenant, period.start, end)
    return rating


#: meter kinds whose events are charges of an exact amount (``attributes.amount``, a
#: decimal string, negative for a reversal), not usage priced by the tier: one invoice
#: line each, never discounted, never included in the plan (docs/billing.md)
CHARGE_KINDS = ("marketplace",)


def charge_lines(session: Session, tenant: str, start: datetime, end: datetime) -> list[LineSpec]:
    """One ``charge`` line per charge event of ``tenant`` in ``[start, end)``, amount exact."""
    q = (
        select(MeterEvent.id, MeterEvent.kind, MeterEvent.username, MeterEvent.attributes)
        .where(
            MeterEvent.tenant == tenant,
            MeterEvent.kind.in_(CHARGE_KINDS),
            MeterEvent.start >= start,
            MeterEvent.start < end,
        )
        .order_by(MeterEvent.start, MeterEvent.id)
    )
    lines = []
    for event_id, kind, username, attributes in session.execute(q):
        amount = cents(dec(attributes["amount"]))
        lines.append(
            LineSpec(
                "charge",
                kind,
                str(attributes.get("description") or kind)[:500],
                Decimal(1),
                "item",
                amount,
                amount,
                f"charge:{kind}:{attributes.get('key') or event_id}",
                attribution={"users": {username or NO_USER: {"amount": str(amount)}}},
            )
        )
    return lines


def _finite_rows(rows, tenant: str, period: Period):
    for row in rows:
        if not math.isfinite(row[2]):
            raise RatingError(
                f"tenant {tenant}'s usage in {period} holds a non-finite {row[0]} quantity;"
                " correct or delete that meter event, then close again",
                details={"tenant": tenant, "period": period.name, "kind": row[0]},
            )
        yield row


def rate_rows(
    tenant: str,
    period: Period,
    catalog: TierCatalog,
    segs: list[Segment],
    rows: Iterable[UsageRow],
) -> Rating:
    """The pure part of :func:`rate`: segments and usage rows in, lines out.

    Runs in :data:`RATING_CONTEXT`; a quantity beyond it is a :class:`RatingError`
    naming the tenant and period (never a bare ``decimal.InvalidOperation``).
    """
    try:
        with localcontext(RATING_CONTEXT):
            lines = _price_lines(period, catalog, segs, _finite_rows(rows, tenant, period))
    except (DecimalException, OverflowError) as e:
        raise RatingError(
            f"tenant {tenant}'s usage in {period} cannot be rated: a quantity is out of range"
            f" ({type(e).__name__}); correct or delete the meter event, then close again",
            details={"tenant": tenant, "period": period.name},
        ) from None
    return Rating(tenant, period, lines, segs)


def _price_lines(
    period: Period, catalog: TierCatalog, segs: list[Segment], rows: Iterable[UsageRow]
) -> list[LineSpec]:
    starts = [s.start for s in segs]
    buckets: dict[tuple[int, str], _Bucket] = defaultdict(_Bucket)
    for kind, username, quantity, start, attributes in rows:
        i = bisect.bisect_right(starts, start) - 1
        if i < 0 or kind not in pricebook.METERS_BY_KIND:
            continue  # before the tenant's first subscription: nothing to bill it against
        b = buckets[(i, kind)]
        b.users[username or NO_USER].append(quantity)
        if attributes and attributes.get("experiment") is not None:
            b.experiments[str(attributes["experiment"])].append(quantity)

    days_in_month = Decimal(period.days)
    lines: list[LineSpec] = []
    for i, seg in enumerate(segs):
        tier = catalog.effective(seg.tier, seg.overrides)
        fraction = Decimal(seg.days) / days_in_month
        seg_lines: list[LineSpec] = []
        price = pricebook.base_price(tier)
        seg_lines.append(
            LineSpec(
                "base",
                None,
                f"{tier.display_name} plan, {seg.start:%Y-%m-%d} to "
                f"{seg.end - timedelta(days=1):%Y-%m-%d} "
                f"({seg.days} of {period.days} days)",
                Decimal(seg.days),
                "day",
                qty(price / days_in_month),
                cents(price * Decimal(seg.days) / days_in_month),
                f"base::{seg.start:%Y-%m-%d}",
                attribution={"users": {SHARED: {"amount": None}}},
            )
        )
        for meter in pricebook.METERS:
            bucket = buckets.get((i, meter.kind))
            if bucket is None:
                continue
            divisor = meter.divisor * (days_in_month if meter.per_day_divisor else 1)
            per_user = {u: dec(math.fsum(q)) / divisor for u, q in bucket.users.items()}
            usage = qty(sum(per_user.values(), Decimal(0)))
            included = qty(meter.included(tier, period.days) * fraction)
            over = max(Decimal(0), usage - included)
            unit_price = meter.price(tier)
            amount = cents(over * unit_price)
            shares = split(amount, per_user)
            attribution: dict[str, Any] = {
                "users": {
                    u: {"usage": str(qty(per_user[u])), "amount": str(shares[u])}
                    for u in sorted(per_user)
                }
            }
            if bucket.experiments:
                per_exp = {e: dec(math.fsum(q)) / divisor for e, q in bucket.experiments.items()}
                exp_shares = split(amount, per_exp)
                attribution["experiments"] = {
                    e: {"usage": str(qty(per_exp[e])), "amount": str(exp_shares[e])}
                    for e in sorted(per_exp)
                }
            seg_lines.append(
                LineSpec(
                    "usage",
                    meter.name,
                    f"{meter.description} beyond {included.normalize():f} {meter.unit} included",
                    qty(over),
                    meter.unit,
                    unit_price,
                    amount,
                    f"usage:{meter.name}:{seg.start:%Y-%m-%d}",
                    included=included,
                    usage=usage,
                    attribution=attribution,
                )
            )
        pct = pricebook.discount(tier)
        if pct > 0:
            subtotal = sum((line.amount for line in seg_lines), ZERO)
            amount = -cents(subtotal * pct / 100)
            if amount:
                seg_lines.append(
                    LineSpec(
                        "discount",
                        None,
                        f"Negotiated discount {pct.normalize():f} %",
                        subtotal,
                        "USD",
                        -pct / 100,
                        amount,
                        f"discount::{seg.start:%Y-%m-%d}",
                        attribution={"users": _discount_shares(seg_lines, amount)},
                    )
                )
        lines += seg_lines
    for line in lines:  # the base fee is shared: fill its share in now that amounts are known
        users = line.attribution.get("users", {})
        if SHARED in users and users[SHARED]["amount"] is None:
            users[SHARED]["amount"] = str(line.amount)
    return lines


def _discount_shares(lines: list[LineSpec], amount: Decimal) -> dict[str, dict[str, str]]:
    weights: dict[str, Decimal] = defaultdict(lambda: ZERO)
    for line in lines:
        if line.line_type == "base":
            weights[SHARED] += line.amount
        for user, share in line.attribution.get("users", {}).items():
            if share.get("amount") is not None:
                weights[user] += Decimal(share["amount"])
    shares = split(amount, {k: v for k, v in weights.items() if v > 0} or {SHARED: Decimal(1)})
    return {u: {"amount": str(v)} for u, v in sorted(shares.items())}
