"""A buyer process for the crash test: ``python -m tests.marketplace.buyer URL KEY MARK STAGE``.

Buys ``fedprox-variant`` for globex with Idempotency-Key ``KEY``. At ``STAGE`` it writes
``MARK`` and waits to be killed: ``before-commit`` stops inside the purchase's transaction
(after the purchase, entitlement and charge rows are written, before the commit);
``after-commit`` stops once the purchase is committed, before any answer is returned.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from fedhub import metering
from fedhub.marketplace.store import MarketStore
from fedhub.tenancy.store import TenantStore
from tests.marketplace.conftest import GLOBEX_ADMIN


def stop_here(mark: Path) -> None:
    mark.write_text("ready")
    while True:  # killed here by the test (SIGKILL)
        time.sleep(0.05)


def main(url: str, key: str, mark: str, stage: str) -> None:
    market = MarketStore(url, TenantStore(url))
    if stage == "before-commit":
        record = metering.record

        def record_then_stop(*args, **kwargs):
            record(*args, **kwargs)
            stop_here(Path(mark))

        metering.record = record_then_stop
    market.purchase(GLOBEX_ADMIN, "fedprox-variant", key)
    stop_here(Path(mark))  # committed; the answer never leaves this process


if __name__ == "__main__":
    main(*sys.argv[1:5])
