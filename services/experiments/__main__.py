"""``python -m fedhub.services.experiments``: run the service (the hub starts it)."""

from __future__ import annotations

import logging
import os

from traitlets.config import Config

from fedhub import db
from fedhub.tenancy.store import TenantStore
from fedhub.web import make_app, run

from .handlers import handlers
from .scheduler import ExperimentScheduler

log = logging.getLogger("fedhub.experiments")


def main() -> None:
    db_url = db.database_url()
    db.upgrade(db_url)
    store = TenantStore(db_url)
    state_dir = os.environ.get("FEDHUB_STATE_DIR", ".fedhub")

    def tenant_tier(slug: str) -> str:
        return store.get_tenant(slug).tier

    config = Config()
    scheduler = ExperimentScheduler(db_url, tenant_tier, config=config, state_dir=state_dir)
    scheduler.log = log
    app = make_app(handlers(), store=store, fedhub_db_url=db_url, fedhub_scheduler=scheduler)
    scheduler.start()
    run(app, on_stop=scheduler.stop)


if __name__ == "__main__":
    main()
