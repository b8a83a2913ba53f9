"""The experiments service process: the scheduler, its Dask clusters and the API."""

from __future__ import annotations

import os

from fedhub import db
from fedhub.config import Fedhub
from fedhub.datasets import DatasetStore
from fedhub.service import ServiceApp
from fedhub.tenancy.store import TenantStore
from fedhub.web import make_app

from .clusters import DaskClusters
from .federations import FederationRunner
from .federations import handlers as federation_handlers
from .handlers import handlers
from .scheduler import ExperimentScheduler


class ExperimentsApp(ServiceApp):
    """``python -m fedhub.services.experiments`` (the hub runs it)."""

    name = "experiments"
    classes = [Fedhub, ExperimentScheduler, DaskClusters, FederationRunner]

    def make_app(self):
        db_url = db.database_url()
        db.upgrade(db_url)
        store = TenantStore(db_url, self.tiers)

        def tenant_tier(slug: str) -> str:
            return store.get_tenant(slug).tier

        scheduler = ExperimentScheduler(db_url, tenant_tier, parent=self)
        if "state_dir" not in self.config.ExperimentScheduler:
            scheduler.state_dir = os.environ.get("FEDHUB_STATE_DIR", ".fedhub")
        scheduler.log = self.log
        federations = FederationRunner(db_url, scheduler, parent=self)
        federations.log = self.log
        app = make_app(
            [*handlers(), *federation_handlers()],
            store=store,
            fedhub_db_url=db_url,
            fedhub_scheduler=scheduler,
            fedhub_federations=federations,
            # tenants' private datasets: $FEDHUB_STATE_DIR/tenant-data (fedhub.datasets)
            fedhub_datasets=DatasetStore(),
        )
        scheduler.start()
        federations.start()
        return app, scheduler.stop


main = ExperimentsApp.launch_instance
