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


def _env_default(name: str, fallback: float):
    """A trait's default: ``$FEDHUB_BILLING_<NAME>`` (read as the fallback's type), else
    ``fallback``; ``fedhub_config.py`` overrides both."""

    @default(name)
    def _default(self):
        value = os.environ.get(f"FEDHUB_BILLING_{name.upper()}")
        return type(fallback)(value) if value not in (None, "") else fallback

    return _default


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

    _grace_days = _env_default("grace_days", 3.0)
    _late_window_hours = _env_default("late_window_hours", 168.0)
    _max_batch = _env_default("max_batch", 10000)
    _max_event_quantity = _env_default("max_event_quantity", 1e9)
    _close_interval_seconds = _env_default("close_interval_seconds", 3600.0)
    _budget_interval_seconds = _env_default("budget_interval_seconds", 300.0)
    _storage_interval_seconds = _env_default("storage_interval_seconds", 3600.0)

    @validate("max_event_quantity")
    def _check_max_quantity(self, proposal):
        value = proposal["value"]
        if not math.isfinite(value) or not 0 < value <= MAX_EVENT_QUANTITY_CEILING:
            raise TraitError(
                f"max_event_quantity must be > 0 and <= {MAX_EVENT_QUANTITY_CEILING:g}, got {value}"
            )
        return value

    @property
    def grace(self) -> timedelta:
        return timedelta(days=self.grace_days)

    @property
    def late_window(self) -> timedelta:
        return timedelta(hours=self.late_window_hours)
