"""Billing's operator settings (traitlets).

Set them in the one configuration file, ``fedhub_config.py``, which the billing service
loads at start (``c.BillingSettings.grace_days = 5``). ``FEDHUB_BILLING_*`` environment
variables (in the service's ``environment`` or the hub's) are fallbacks for the defaults,
e.g. ``FEDHUB_BILLING_GRACE_DAYS=5``.
"""

from __future__ import annotations

import math
import os
from datetime import timedelta

from traitlets import Float, Int, TraitError, Unicode, default, validate
from traitlets.config import LoggingConfigurable

#: The largest per-event maximum an operator may configure: rating's decimal context
#: (see :mod:`fedhub.billing.rating`) stays exact far beyond sums of such events.
MAX_EVENT_QUANTITY_CEILING = 1e15


def _env(name: str, cast, fallback):
    value = os.environ.get(f"FEDHUB_BILLING_{name.upper()}")
    return cast(value) if value not in (None, "") else fallback


class BillingSettings(LoggingConfigurable):
    grace_days = Float(
        help="""Days after a period ends during which its invoice stays a draft (late usage
        still lands on it). Then it is finalized and immutable.
        ``c.BillingSettings.grace_days = 3`` or ``FEDHUB_BILLING_GRACE_DAYS=3``.""",
    ).tag(config=True)

    late_window_hours = Float(
        help="""How old (by event time) an ingested event may be. Older events are refused
        with 422 late_event. Late events for a finalized period become a next-period line
        (or a credit note). ``FEDHUB_BILLING_LATE_WINDOW_HOURS=168``.""",
    ).tag(config=True)

    future_skew_seconds = Float(
        300,
        help="Events may be at most this far in the future (client clock skew).",
    ).tag(config=True)

    max_batch = Int(
        help="Largest batch ``POST /api/v1/events`` accepts (``FEDHUB_BILLING_MAX_BATCH``).",
    ).tag(config=True)

    max_event_quantity = Float(
        help="""Largest ``quantity`` one ingested usage event may carry. A bigger (or
        non-finite, or negative) quantity refuses the whole batch with a 400 naming the
        event and this maximum, so one wrong or hostile number never reaches rating.
        At most 1e15 (rating keeps exact decimals within that range).
        ``c.BillingSettings.max_event_quantity = 1e8`` or
        ``FEDHUB_BILLING_MAX_EVENT_QUANTITY=1e8``.""",
    ).tag(config=True)

    close_interval_seconds = Float(
        help="""How often the service runs the scheduled close (drafts, finalization,
        late-usage reconciliation). ``FEDHUB_BILLING_CLOSE_INTERVAL_SECONDS=3600``.""",
    ).tag(config=True)

    budget_interval_seconds = Float(
        help="How often the service checks budgets (``FEDHUB_BILLING_BUDGET_INTERVAL_SECONDS``).",
    ).tag(config=True)

    storage_interval_seconds = Float(
        help="""How often the storage sampler runs; it records one sample per user and UTC day
        (idempotent), so running it more often only catches new homes sooner.""",
    ).tag(config=True)

    currency = Unicode("USD", help="ISO currency of every price in tiers.yaml.").tag(config=True)

    storage_path_template = Unicode(
        help="""Where members' homes live, sampled daily for the storage bill with the same
        code (:mod:`fedhub.storage`) the tier spawner uses for the storage_gb quota: set it
        to the spawner's ``c.TierSpawner.storage_path_template``. Empty: storage is not
        billed. Default: the spawner's own setting when the shared ``fedhub_config.py``
        has it (``c.TierSpawner.storage_path_template``, else a backend's
        ``home_dir_template``), so the template is named once; else
        ``$FEDHUB_STORAGE_PATH_TEMPLATE``, else ``$FEDHUB_STATE_DIR/homes/{username}``
        (where ``fedhub up`` puts homes).

            c.BillingSettings.storage_path_template = "/home/{username}"
        """,
    ).tag(config=True)

    @default("storage_path_template")
    def _storage_path_template(self):
        from fedhub import storage

        # the hub's setting, when this process loaded the same configuration file
        for section, key in (
            ("TierSpawner", "storage_path_template"),
            ("UnixAccountSpawner", "home_dir_template"),
            ("LocalProcessSpawner", "home_dir_template"),
        ):
            if section in self.config and key in self.config[section]:
                return self.config[section][key]
        return storage.default_path_template()

    @default("grace_days")
    def _grace(self):
        return _env("grace_days", float, 3.0)

    @default("late_window_hours")
    def _late(self):
        return _env("late_window_hours", float, 168.0)

    @default("max_batch")
    def _max_batch(self):
        return _env("max_batch", int, 10000)

    @default("max_event_quantity")
    def _max_quantity(self):
        return _env("max_event_quantity", float, 1e9)

    @validate("max_event_quantity")
    def _check_max_quantity(self, proposal):
        value = proposal["value"]
        if not math.isfinite(value) or not 0 < value <= MAX_EVENT_QUANTITY_CEILING:
            raise TraitError(
                f"max_event_quantity must be > 0 and <= {MAX_EVENT_QUANTITY_CEILING:g}, got {value}"
            )
        return value

    @default("close_interval_seconds")
    def _close(self):
        return _env("close_interval_seconds", float, 3600.0)

    @default("budget_interval_seconds")
    def _budget(self):
        return _env("budget_interval_seconds", float, 300.0)

    @default("storage_interval_seconds")
    def _storage(self):
        return _env("storage_interval_seconds", float, 3600.0)

    @property
    def grace(self) -> timedelta:
        return timedelta(days=self.grace_days)

    @property
    def late_window(self) -> timedelta:
        return timedelta(hours=self.late_window_hours)
