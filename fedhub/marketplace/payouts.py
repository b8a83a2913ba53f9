"""Payout statements (part of :class:`~fedhub.marketplace.store.MarketStore`): one per
publisher per billing month, ``open`` while its month runs, ``closed`` (its total frozen)
by the service's periodic job once the month is over, ``paid`` when a platform admin
records the payment's reference.

Each payout line names the statement that pays it (:meth:`PayoutMixin._statement_for`):
its own month's while that is open, else the publisher's first open one, so a refund of a
sale whose month is closed is taken back on the statement being filled now, never on
one whose total was frozen (and maybe paid). A statement row is locked while a line is
put on it and while it is closed, so a line never lands on a statement closed meanwhile.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from fedhub.billing.money import ZERO
from fedhub.billing.periods import containing
from fedhub.db import insert_ignore
from fedhub.errors import Conflict, Forbidden, InvalidRequest, NotFound
from fedhub.marketplace.common import Actor
from fedhub.marketplace.models import PayoutLine, PayoutStatement, StatementState
from fedhub.marketplace.shapes import iso, payout_json

STATES = tuple(s.value for s in StatementState)


def month_totals(s: Session, period_start: datetime) -> dict[str, str]:
    """The marketplace's money of one month (billing's revenue report): what buyers were
    charged, the publishers' share and the platform's fee, by the month of each charge."""
    gross, share = ZERO, ZERO
    for line in s.scalars(select(PayoutLine).where(PayoutLine.period_start == period_start)):
        gross += line.gross
        share += line.amount
    return {"gross": str(gross), "publishers": str(share), "platform_fee": str(gross - share)}


class PayoutMixin:
    """A publisher's statements: put lines on the open one, close finished months, pay."""

    # -- where a line goes ---------------------------------------------------------------

    def _statement_for(self, s: Session, publisher: str, at: datetime) -> PayoutStatement:
        """The open statement that takes a line of ``publisher`` dated ``at`` (locked)."""
        period = containing(at)
        while True:
            st = self._locked_statement(s, publisher, period.start)
            if st.state == StatementState.OPEN:
                return st
            # closed (or paid): the first open month from now on takes it
            period = max(period.next(), containing(self.now()))

    def _locked_statement(self, s: Session, publisher: str, start: datetime) -> PayoutStatement:
        insert_ignore(
            s,
            PayoutStatement.__table__,
            {
                "tenant": publisher,
                "period_start": start,
                "state": StatementState.OPEN.value,
                "currency": "USD",
                "created_at": self.now(),
            },
            ["tenant", "period_start"],
        )
        return s.scalars(
            select(PayoutStatement)
            .where(PayoutStatement.tenant == publisher, PayoutStatement.period_start == start)
            .with_for_update()
            .execution_options(populate_existing=True)
        ).one()

    # -- closing and paying --------------------------------------------------------------

    def close_statements(self, now: datetime | None = None) -> int:
        """Close every open statement of a month that is over (the service's periodic job);
        how many were closed. Platform work."""
        current = containing(now or self.now()).start
        closed = 0
        with self.session(None) as s:
            ids = s.scalars(
                select(PayoutStatement.id).where(
                    PayoutStatement.state == StatementState.OPEN,
                    PayoutStatement.period_start < current,
                )
            ).all()
            for statement_id in ids:
                st = s.scalars(
                    select(PayoutStatement)
                    .where(PayoutStatement.id == statement_id)
                    .with_for_update()
                    .execution_options(populate_existing=True)
                ).one()
                if st.state != StatementState.OPEN:
                    continue
                lines = s.scalars(select(PayoutLine).where(PayoutLine.statement_id == st.id))
                gross, amount = ZERO, ZERO
                for line in lines:
                    gross += line.gross
                    amount += line.amount
                st.gross, st.amount = gross, amount
                st.state, st.closed_at = StatementState.CLOSED.value, self.now()
                closed += 1
        return closed

    def mark_paid(self, actor: Actor, statement_id: int, reference: Any) -> dict[str, Any]:
        """A platform admin records that a closed statement was paid out."""
        if not actor.is_platform_admin:
            raise Forbidden("only platform admins mark payout statements paid")
        if not isinstance(reference, str) or not reference.strip() or len(reference) > 200:
            raise InvalidRequest("reference is the payment's reference, 1-200 characters")
        reference = reference.strip()
        with self.session(None) as s:
            st = self._statement_row(s, actor, statement_id, lock=True)
            if st.state != StatementState.CLOSED:
                raise Conflict(
                    f"payout statement {statement_id} is {st.state}: only a closed statement "
                    "is paid" + (" (its month is not over)" if st.state == "open" else "")
                )
            st.state, st.paid_at = StatementState.PAID.value, self.now()
            st.paid_by, st.paid_reference = actor.name, reference
            s.flush()
            return self._statement_json(s, st)

    # -- reading -------------------------------------------------------------------------

    def payouts(
        self, actor: Actor, tenant: str | None = None, state: str | None = None
    ) -> list[dict[str, Any]]:
        """The publisher's statements, newest month first, each with its lines; platform
        admins see every publisher's (or ``tenant``'s)."""
        if state is not None and state not in STATES:
            raise InvalidRequest(f"state is one of {', '.join(STATES)}")
        everyone = actor.is_platform_admin and not tenant
        publisher = None if everyone else self._publisher(actor, tenant)
        with self.session(actor) as s:
            q = select(PayoutStatement).order_by(
                PayoutStatement.period_start.desc(), PayoutStatement.tenant
            )
            if publisher is not None:
                q = q.where(PayoutStatement.tenant == publisher)
            if state is not None:
                q = q.where(PayoutStatement.state == state)
            return [self._statement_json(s, st) for st in s.scalars(q)]

    def statement(self, actor: Actor, statement_id: int) -> dict[str, Any]:
        """One statement: the publisher's own (another tenant's is 404), or any for admins."""
        with self.session(actor) as s:
            return self._statement_json(s, self._statement_row(s, actor, statement_id))

    def _statement_row(
        self, s: Session, actor: Actor, statement_id: int, *, lock: bool = False
    ) -> PayoutStatement:
        q = select(PayoutStatement).where(PayoutStatement.id == statement_id)
        st = s.scalar(q.with_for_update() if lock else q) if 0 < statement_id < 2**63 else None
        if st is None or not (actor.is_platform_admin or st.tenant == actor.tenant):
            raise NotFound(f"no payout statement {statement_id}")
        if not actor.is_platform_admin and not actor.can("marketplace:publish"):
            raise Forbidden(f"your role ({actor.role}) may not read payout statements")
        return st

    @staticmethod
    def _statement_json(s: Session, st: PayoutStatement) -> dict[str, Any]:
        lines = [
            payout_json(p)
            for p in s.scalars(
                select(PayoutLine).where(PayoutLine.statement_id == st.id).order_by(PayoutLine.id)
            )
        ]
        if st.state == StatementState.OPEN:  # still filling: the lines' sum so far
            gross = sum((Decimal(ln["gross"]) for ln in lines), ZERO)
            amount = sum((Decimal(ln["amount"]) for ln in lines), ZERO)
        else:
            gross, amount = st.gross, st.amount
        return {
            "id": st.id,
            "tenant": st.tenant,
            "period": st.period_start.strftime("%Y-%m"),
            "state": st.state,
            "gross": str(gross),
            "amount": str(amount),
            "platform_fee": str(gross - amount),
            "currency": st.currency,
            "closed_at": iso(st.closed_at),
            "paid_at": iso(st.paid_at),
            "paid_by": st.paid_by,
            "paid_reference": st.paid_reference,
            "lines": lines,
        }
