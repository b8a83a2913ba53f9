"""The marketplace's refusals, each one type with its code and status (:mod:`fedhub.errors`)."""

from __future__ import annotations

from fedhub.errors import Conflict, Forbidden, InvalidRequest, NotFound


class AssetNotFound(NotFound, code="asset_not_found"):
    """No such asset, or one the caller may not see (another tenant's pending asset)."""


class PublishingNotInTier(Forbidden, code="marketplace_publishing_not_in_tier"):
    """The tenant's tier does not carry ``features.marketplace_publishing``."""


class NotEntitled(Forbidden, code="not_entitled"):
    """Using an asset without an active licence for it (the message names the asset)."""


class NotForSale(Conflict, code="not_for_sale"):
    """The asset (or version) is pending review, rejected or delisted."""


class AlreadyLicensed(Conflict, code="already_licensed"):
    """The tenant (or seat) holds an active licence for the asset already."""


class KeyReused(Conflict, code="idempotency_key_reused"):
    """An Idempotency-Key already used for a different purchase."""


class RefundRefused(Conflict, code="refund_refused"):
    """Outside the refund window, or refunded already."""


class BadAsset(InvalidRequest, code="invalid_asset"):
    """An asset or version that fails the checks (type, size, content)."""
