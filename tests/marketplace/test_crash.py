"""A purchase killed mid-way (SIGKILL) and retried with its key: one purchase, one
entitlement, one charge, one payout line, on SQLite and PostgreSQL.

A real process buys and is killed with SIGKILL at two points: inside the purchase's
transaction (its rows written, not committed), and after the commit but before it could
answer. The client then retries with the same Idempotency-Key.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import func, select

from fedhub.marketplace.models import Entitlement, PayoutLine, Purchase
from fedhub.metering import MeterEvent
from tests.harness import wait_for

from .conftest import GLOBEX_ADMIN, listed

ROOT = Path(__file__).resolve().parents[2]


def counts(market) -> tuple[int, ...]:
    with market.session(None) as s:
        return tuple(
            s.scalar(select(func.count()).select_from(model))
            for model in (Purchase, Entitlement, PayoutLine)
        ) + (s.scalar(select(func.count()).where(MeterEvent.kind == "marketplace")),)


@pytest.mark.parametrize("stage", ["before-commit", "after-commit"])
def test_a_killed_purchase_retried_with_its_key_happens_once(market, tmp_path, stage):
    listed(market)
    mark = tmp_path / "mark"
    buyer = subprocess.Popen(
        [sys.executable, "-m", "tests.marketplace.buyer", market.db, "crash-key", str(mark), stage],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        wait_for(mark.exists, 60, 0.02, f"the buyer to reach {stage}")
        buyer.send_signal(signal.SIGKILL)
        assert buyer.wait(10) == -signal.SIGKILL
    finally:
        if buyer.poll() is None:
            buyer.kill()
    committed = stage == "after-commit"
    assert counts(market) == ((1, 1, 1, 1) if committed else (0, 0, 0, 0))
    purchase, created = market.purchase(GLOBEX_ADMIN, "fedprox-variant", "crash-key")
    assert created is not committed  # the retry makes it, or finds the committed one
    assert purchase["amount"] == "49.99"
    assert counts(market) == (1, 1, 1, 1)
