"""Billing fixtures: a migrated database with a test clock and a Billing bound to both."""

from __future__ import annotations

from datetime import datetime

import pytest

from fedhub.billing.clock import FixedClock, set_clock
from fedhub.billing.operations import Billing
from fedhub.billing.settings import BillingSettings


@pytest.fixture
def clock():
    c = FixedClock(datetime(2026, 10, 1))
    set_clock(c)
    yield c
    set_clock(None)


@pytest.fixture
def billing(migrated_db, clock, monkeypatch, tmp_path):
    monkeypatch.setenv("FEDHUB_STATE_DIR", str(tmp_path))  # events spool here
    return Billing(
        migrated_db, settings=BillingSettings(grace_days=3, late_window_hours=168), clock=clock
    )
