"""The billing service process: routes, the scheduled close, budget checks, storage sampling."""

from __future__ import annotations

import logging

from fedhub.billing import samplers
from fedhub.billing.operations import Billing
from fedhub.billing.settings import BillingSettings
from fedhub.config import Fedhub
from fedhub.jobs import PeriodicJob
from fedhub.service import ServiceApp
from fedhub.services.billing import handlers
from fedhub.web import make_app

log = logging.getLogger("fedhub.billing")

ROUTES = [
    (r"api/v1/usage", handlers.UsageHandler),
    (r"api/v1/costs", handlers.CostsHandler),
    (r"api/v1/invoices", handlers.InvoicesHandler),
    (r"api/v1/invoices/(\d+)(\.html|\.pdf)?", handlers.InvoiceHandler),
    (r"api/v1/invoices/(\d+)/credit-notes", handlers.InvoiceCreditNotesHandler),
    (r"api/v1/credit-notes", handlers.CreditNotesHandler),
    (r"api/v1/budget", handlers.BudgetHandler),
    (r"api/v1/revenue", handlers.RevenueHandler),
    (r"api/v1/events", handlers.EventsHandler),
]


def make_billing_app(billing: Billing | None = None):
    billing = billing or Billing()
    return make_app(ROUTES, fedhub_billing=billing)


def schedule(billing: Billing) -> list[PeriodicJob]:
    """The service's own timers; each runs its work in a thread, first 2 s after start."""

    def storage():
        # the same homes and the same measurement as the spawner's storage_gb quota
        template = billing.settings.storage_path_template
        samplers.sample_storage(billing.db_url, template, billing.clock.now())

    jobs = [
        ("close", billing.close, billing.settings.close_interval_seconds),
        ("budget check", billing.check_budgets, billing.settings.budget_interval_seconds),
        ("storage sample", storage, billing.settings.storage_interval_seconds),
    ]
    return [
        PeriodicJob(
            f"Billing {name}", fn, seconds, blocking=True, first_delay=2, logger=log
        ).start()
        for name, fn, seconds in jobs
    ]


class BillingApp(ServiceApp):
    """``python -m fedhub.services.billing`` (the hub runs it)."""

    name = "billing"
    classes = [Fedhub, BillingSettings]

    def make_app(self):
        billing = Billing(catalog=self.tiers, settings=BillingSettings(parent=self))
        app = make_billing_app(billing)
        schedule(billing)
        return app, lambda: samplers.flush_api_calls(billing.db_url)


main = BillingApp.launch_instance
