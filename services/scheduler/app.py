"""The scheduler service process: the scheduler loop and the API."""

from __future__ import annotations

import os

from fedhub import db
from fedhub.config import Fedhub
from fedhub.mail import Mailer
from fedhub.service import ServiceApp
from fedhub.tenancy.store import TenantStore
from fedhub.web import make_app

from .handlers import handlers
from .loop import Scheduler
from .tokens import RunTokens


class SchedulerApp(ServiceApp):
    """``python -m fedhub.services.scheduler`` (the hub runs it)."""

    name = "scheduler"
    classes = [Fedhub, Scheduler, Mailer]

    def make_app(self):
        db_url = db.database_url()
        db.upgrade(db_url)
        store = TenantStore(db_url, self.tiers)
        urls = {k: v for k, v in os.environ.items() if k.startswith("FEDHUB_") and k.endswith("_URL")
                and k != "FEDHUB_DB_URL"}  # fmt: skip
        tokens = RunTokens(store, urls, self.log)
        mailer = Mailer(parent=self)
        if "outbox_dir" not in self.config.Mailer and os.environ.get("FEDHUB_STATE_DIR"):
            mailer.outbox_dir = os.path.join(os.environ["FEDHUB_STATE_DIR"], "outbox")
        scheduler = Scheduler(db_url, store, tokens, mailer, parent=self)
        scheduler.log = self.log
        app = make_app(handlers(), store=store, fedhub_db_url=db_url, fedhub_scheduler=scheduler)
        scheduler.start()
        return app, scheduler.stop


main = SchedulerApp.launch_instance
