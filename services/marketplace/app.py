"""The marketplace service process: routes, the monthly-licence renewal job and the job
that closes the payout statements of finished months."""

from __future__ import annotations

import logging
import os

from jupyterhub.utils import url_path_join

from fedhub.config import Fedhub
from fedhub.jobs import PeriodicJob
from fedhub.marketplace.settings import MarketplaceSettings
from fedhub.marketplace.store import MarketStore
from fedhub.service import ServiceApp
from fedhub.services.marketplace import handlers, pages
from fedhub.tenancy.store import TenantStore
from fedhub.web import make_app

log = logging.getLogger("fedhub.marketplace")

SLUG = r"([a-z0-9][a-z0-9-]{0,62})"
ROUTES = [
    (r"api/v1/search", handlers.SearchHandler),
    (r"api/v1/assets", handlers.AssetsHandler),
    (rf"api/v1/assets/{SLUG}", handlers.AssetHandler),
    (rf"api/v1/assets/{SLUG}/versions", handlers.VersionsHandler),
    (rf"api/v1/assets/{SLUG}/review", handlers.ReviewHandler),
    (rf"api/v1/assets/{SLUG}/delist", handlers.DelistHandler),
    (rf"api/v1/assets/{SLUG}/purchase", handlers.PurchaseHandler),
    (rf"api/v1/assets/{SLUG}/content", handlers.ContentHandler),
    (rf"api/v1/assets/{SLUG}/reviews", handlers.ReviewsHandler),
    (rf"api/v1/assets/{SLUG}/reviews/(\d{{1,18}})/answer", handlers.AnswerHandler),
    (r"api/v1/purchases/(\d{1,18})/refund", handlers.RefundHandler),
    (r"api/v1/entitlements", handlers.EntitlementsHandler),
    (r"api/v1/entitlements/check", handlers.CheckHandler),
    (r"api/v1/entitlements/(\d{1,18})/revoke", handlers.RevokeHandler),
    (rf"api/v1/assets/{SLUG}/upgrade", handlers.UpgradeHandler),
    (r"api/v1/sales", handlers.SalesHandler),
    (r"api/v1/payouts", handlers.PayoutsHandler),
    (r"api/v1/payouts/(\d{1,18})", handlers.StatementHandler),
    (r"api/v1/payouts/(\d{1,18})/paid", handlers.StatementPaidHandler),
]


def make_marketplace_app(market: MarketStore | None = None):
    market = market or MarketStore()
    app = make_app(ROUTES, store=market.tenants, fedhub_market=market)
    # the storefront's pages (HTML, not in the API's OpenAPI document) at the prefix
    prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "/")
    app.add_handlers(".*", [(url_path_join(prefix, path), *rest) for path, *rest in pages.ROUTES])
    return app


class MarketplaceApp(ServiceApp):
    """``python -m fedhub.services.marketplace`` (the hub runs it)."""

    name = "marketplace"
    classes = [Fedhub, MarketplaceSettings]

    def make_app(self):
        settings = MarketplaceSettings(parent=self)
        market = MarketStore(tenants=TenantStore(tiers=self.tiers), settings=settings)
        PeriodicJob(
            "Marketplace monthly renewals",
            market.renew_monthly,
            settings.renewal_interval_seconds,
            blocking=True,
            first_delay=2,
            logger=log,
        ).start()
        PeriodicJob(
            "Marketplace payout statements closing",
            market.close_statements,
            settings.statement_close_interval_seconds,
            blocking=True,
            first_delay=3,
            logger=log,
        ).start()
        return make_marketplace_app(market), None


main = MarketplaceApp.launch_instance
