"""The marketplace's options (``c.MarketplaceSettings.<option>`` in ``fedhub_config.py``)."""

from __future__ import annotations

from decimal import Decimal

from traitlets import Float, Integer, validate
from traitlets.config import LoggingConfigurable

from fedhub.errors import ConfigError


class MarketplaceSettings(LoggingConfigurable):
    """Revenue share, refund window and size bounds of the marketplace service."""

    revenue_share_percent = Float(
        80.0,
        config=True,
        help="""The publisher's share of each sale, in percent; the platform keeps the rest.
        Applied when the sale is made (a later change does not alter past payout lines).

            c.MarketplaceSettings.revenue_share_percent = 80
        """,
    )

    refund_window_days = Integer(
        14,
        min=0,
        config=True,
        help="""Days after a purchase within which the buyer's tenant admin may ask for a
        refund: the licence ends, the charge is reversed (a credit note when the invoice
        was already finalized) and the publisher's share is taken back.

            c.MarketplaceSettings.refund_window_days = 14
        """,
    )

    max_version_bytes = Integer(
        16 * 1024 * 1024,
        min=1,
        config=True,
        help="""The largest content one version may have, in bytes (it is stored in the
        database, content-addressed by its SHA-256).

            c.MarketplaceSettings.max_version_bytes = 16 * 1024 * 1024
        """,
    )

    renewal_interval_seconds = Float(
        3600.0,
        min=1,
        config=True,
        help="""How often the service records the month's charge of monthly licences
        (each month is charged once, whatever the interval).

            c.MarketplaceSettings.renewal_interval_seconds = 3600
        """,
    )

    statement_close_interval_seconds = Float(
        3600.0,
        min=1,
        config=True,
        help="""How often the service closes the payout statements of billing months that
        are over (their totals are frozen then; a platform admin marks them paid).

            c.MarketplaceSettings.statement_close_interval_seconds = 3600
        """,
    )

    @validate("revenue_share_percent")
    def _valid_share(self, proposal):
        value = proposal["value"]
        if not 0 <= value <= 100:
            raise ConfigError(
                f"MarketplaceSettings.revenue_share_percent must be 0-100, got {value}"
            )
        return value

    @property
    def share(self) -> Decimal:
        """The publisher's share as an exact decimal percentage (80.0 -> Decimal('80.0'))."""
        return Decimal(repr(self.revenue_share_percent))
