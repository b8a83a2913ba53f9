"""Using an asset in a run (part of :class:`~fedhub.marketplace.store.MarketStore`): the
licence checked, the licensed version's content handed over, the use metered and audited.

Asked by the experiments service at the start of every attempt of a run that names an
asset (``strategy: "market/<slug>@<version>"``), so a licence refunded or revoked while the
run waited stops it. A use is not a download: downloads stay the ``content`` endpoint's.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from fedhub import events, metering
from fedhub.limits.model import MARKETPLACE_USES
from fedhub.marketplace.common import SOURCE
from fedhub.marketplace.models import Asset, Version


def context_id(context: dict[str, Any]) -> str:
    """``experiment:<id>`` for ``{"experiment": "<id>"}``: what one use is counted per."""
    return ",".join(f"{k}:{context[k]}" for k in sorted(context))


class UsageMixin:
    """:meth:`use`: the licence check, the content, one metering event and one audit event."""

    def use(self, tenant: str, user: str | None, ref: str, *, context: dict) -> dict[str, Any]:
        """The licensed version of ``ref`` for ``user`` of ``tenant``: the entitlement check's
        answer plus ``content`` (bytes), ``filename``, ``asset_type`` and ``schema`` (a
        dataset's columns, label and default partition; None for other assets); else
        :class:`~fedhub.marketplace.errors.NotEntitled`.

        Records a ``marketplace_uses`` meter event (one ``use``, not priced) whose key is
        ``<context id>:<ref>``, so the attempts of one resumed run are one use, and emits
        ``marketplace.used`` (details: ref, sha256, context) at each call.
        """
        held = self.check_entitlement(tenant, user, ref)
        key = f"{context_id(context)}:{ref}"
        at = self.now()
        with self.session(None) as s:
            asset = s.scalar(select(Asset).where(Asset.slug == held["asset"]))
            ver = s.scalar(
                select(Version).where(
                    Version.asset_id == asset.id, Version.version == held["version"]
                )
            )
            out = {
                **held,
                "content": ver.content,
                "filename": ver.filename,
                "asset_type": asset.asset_type,
                "schema": ver.data_schema,  # a dataset's (HC's versions[].schema), else None
            }
            metering.record(
                s,
                [
                    metering.Usage(
                        tenant=tenant,
                        kind=MARKETPLACE_USES,
                        quantity=1.0,
                        start=at,
                        end=at,
                        source=SOURCE,
                        idempotency_key=key,
                        username=user,
                        attributes={"ref": ref, "sha256": ver.sha256, **context},
                    )
                ],
            )
        events.emit(
            "marketplace.used",
            tenant=tenant,
            actor=user,
            target=f"market/{held['asset']}@{held['version']}",
            details={"ref": ref, "sha256": held["sha256"], "context": context},
        )
        return out
