"""Tenants' private datasets over the experiments service's API (``/api/v1/datasets``).

    GET    /datasets                    the caller's tenant's datasets (experiments:read)
    GET    /datasets/{name}             its versions, the latest's schema and card
                                        (``?version=N`` for another's) (experiments:read)
    POST   /datasets/{name}             upload a new version (experiments:run) -> 201
    DELETE /datasets/{name}             delete every version (experiments:run)
    DELETE /datasets/{name}/{version}   delete one version (experiments:run)

An upload's body is the ``.npz`` of the arrays (``x`` float32 [rows, features], ``y``
int64 class indices, ``split`` uint8: 0 train, 1 test), ``Content-Type:
application/octet-stream``, as :mod:`fedhub.client.datasets` makes it from a file or a
DataFrame in the notebook. Its metadata travels in the header ``X-Fedhub-Dataset``: base64url
of a JSON object ``{"schema": {"features": [...], "label": {...}}, "card": "...",
"sha256": "<hex of the body>"}`` (``card`` and ``sha256`` optional; a given sha256 must
match the body). The upload is refused (429) when the tenant's storage (members' homes and
the tenant's store) would go over its tier's ``storage_gb``.

Who can read what: the rows are the tenant's (row-level security by tenant); the files are
written by this service (root) straight as the tenant's account, 0700/0600
(:class:`fedhub.datasets.DatasetStore`): no user's server and no other tenant's process can
open them, only the tenant's own workers (:mod:`.tenant_workers`). Another tenant's dataset
is answered as if it did not exist (404). Analysts (no ``experiments:run``) only read.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import threading
from collections import defaultdict

from pydantic import BaseModel, Field
from sqlalchemy import delete, select

from fedhub import storage
from fedhub.datasets import DatasetError, DatasetNotFound, DatasetRef, DatasetStore, Schema
from fedhub.datasets.store import NAME
from fedhub.db import session_scope
from fedhub.errors import Conflict, InvalidRequest, NotFound, QuotaExceeded
from fedhub.jobs import run_blocking
from fedhub.openapi import operation
from fedhub.quotas import member_names

from .api_models import TenantQuery
from .handlers import BaseHandler
from .models import TenantDataset
from .spec import ExperimentSpec

META_HEADER = "X-Fedhub-Dataset"
# one upload per tenant at a time in this process: the storage check and the write must not
# interleave with another upload's (a process lock, not the database's tenant lock, which on
# SQLite would hold every writer of the hub while the files are written)
_UPLOADS: defaultdict[str, threading.Lock] = defaultdict(threading.Lock)
MAX_CARD = 64 * 1024
MAX_META = 512 * 1024


class DatasetVersion(BaseModel):
    name: str
    version: int
    ref: str = Field(description="what an experiment's spec names: tenant/<name>@<version>")
    rows: int
    bytes: int
    sha256: str
    schema_: dict = Field(alias="schema")
    created_by: str
    created_at: str | None


class DatasetSummary(BaseModel):
    name: str
    versions: list[int]
    latest: DatasetVersion


class DatasetList(BaseModel):
    tenant: str
    datasets: list[DatasetSummary]


class DatasetDetail(BaseModel):
    name: str
    tenant: str
    versions: list[DatasetVersion]
    version: DatasetVersion
    card: str | None = Field(description="the data card (Markdown) of ``version``")


class DatasetDeleted(BaseModel):
    name: str
    deleted: list[int]


class VersionQuery(TenantQuery):
    version: int | None = Field(None, ge=1, description="this version (default: the latest)")


class DatasetHandlerBase(BaseHandler):
    @property
    def datasets(self) -> DatasetStore:
        return self.settings["fedhub_datasets"]

    def tenant_for_read(self) -> str:
        slug = self.scoped_tenant(self.get_argument("tenant", None))
        if slug is None:
            raise InvalidRequest("platform admins: pass ?tenant=<slug>")
        return slug

    def tenant_for_write(self) -> str:
        caller = self.require("experiments:run")
        if caller.tenant is None:
            raise InvalidRequest("datasets belong to a tenant; platform admins have none")
        return caller.tenant

    def versions(self, slug: str, name: str) -> list[dict]:
        """The dataset's versions, oldest first; 404 if it has none (or is another's)."""
        with session_scope(self.db_url) as s:
            rows = s.scalars(
                select(TenantDataset)
                .where(TenantDataset.tenant == slug, TenantDataset.name == name)
                .order_by(TenantDataset.version)
            ).all()
            found = [r.to_json() for r in rows]
        if not found:
            raise NotFound(f"no dataset {name!r}")
        return found

    def tenant_for_delete(self) -> str:
        """The caller's tenant; a platform admin names one with ``?tenant=`` (removing a
        tenant's data on request), and asking for another tenant reads as missing (404)."""
        self.require("experiments:run")
        return self.tenant_for_read()

    async def remove(self, name: str, version: str | None) -> None:
        slug = self.tenant_for_delete()
        _check_name(name)
        wanted = int(version) if version is not None else None

        def remove() -> list[int]:
            versions = [v["version"] for v in self.versions(slug, name)]
            if wanted is not None and wanted not in versions:
                raise NotFound(f"dataset {name!r} has no version {wanted}")
            doomed = versions if wanted is None else [wanted]
            with session_scope(self.db_url) as s:
                s.execute(
                    delete(TenantDataset).where(
                        TenantDataset.tenant == slug,
                        TenantDataset.name == name,
                        TenantDataset.version.in_(doomed),
                    )
                )
            for v in doomed:
                try:
                    self.datasets.delete(slug, name, v)
                except DatasetNotFound:
                    pass  # the files were gone already
            return doomed

        removed = await run_blocking(remove)
        self.emit(
            "dataset.deleted",
            tenant=slug,
            target=f"dataset:{name}",
            details={"name": name, "versions": removed},
        )
        self.write_json({"name": name, "deleted": removed})


def _check_name(name: str) -> str:
    if not NAME.fullmatch(name):
        raise NotFound(f"no dataset {name!r}")
    return name


class DatasetsHandler(DatasetHandlerBase):
    @operation(
        "The tenant's datasets and their versions", query=TenantQuery, responses={200: DatasetList}
    )
    async def get(self):
        self.require("experiments:read")
        slug = self.tenant_for_read()

        def read() -> list[dict]:
            with session_scope(self.db_url) as s:
                rows = s.scalars(
                    select(TenantDataset)
                    .where(TenantDataset.tenant == slug)
                    .order_by(TenantDataset.name, TenantDataset.version)
                ).all()
                out: dict[str, dict] = {}
                for r in rows:
                    entry = out.setdefault(r.name, {"name": r.name, "versions": []})
                    entry["versions"].append(r.version)
                    entry["latest"] = r.to_json()
                return list(out.values())

        self.write_json({"tenant": slug, "datasets": await run_blocking(read)})


class DatasetHandler(DatasetHandlerBase):
    @operation(
        "A dataset: its versions, and one version's schema and data card",
        query=VersionQuery,
        responses={200: DatasetDetail, 404: None},
    )
    async def get(self, name: str):
        self.require("experiments:read")
        slug = self.tenant_for_read()
        _check_name(name)
        raw = self.get_argument("version", None)
        if raw is not None and not raw.isdigit():
            raise InvalidRequest(f"version must be a number, not {raw[:20]!r}")

        def read() -> dict:
            versions = self.versions(slug, name)
            wanted = int(raw) if raw is not None else versions[-1]["version"]
            chosen = next((v for v in versions if v["version"] == wanted), None)
            if chosen is None:
                raise NotFound(f"dataset {name!r} has no version {wanted}")
            try:
                card = self.datasets.describe(slug, name, wanted)["card"]
            except (DatasetNotFound, OSError):
                card = None  # the files went missing: say so, do not fail
            return {"name": name, "tenant": slug, "versions": versions,
                    "version": chosen, "card": card}  # fmt: skip

        self.write_json(await run_blocking(read))

    @operation(
        "Upload a new version (body: the .npz; metadata: the X-Fedhub-Dataset header)",
        responses={201: DatasetVersion, 429: None},
    )
    async def post(self, name: str):
        slug = self.tenant_for_write()
        if not NAME.fullmatch(name):
            raise InvalidRequest(
                f"dataset name {name[:70]!r}: use 1-63 lower-case letters, digits, '-' or '_'"
            )
        schema, card, sha256 = self._metadata()
        body = self.request.body or b""
        if not body:
            raise InvalidRequest("the body is empty: send the .npz of x, y and split")
        tenant = self.store.get_tenant(slug)
        tier = self.store.effective_tier(tenant)
        caller = self.caller

        def register() -> dict:
            with _UPLOADS[slug]:
                return store_version()

        def store_version() -> dict:
            if sha256 is not None and hashlib.sha256(body).hexdigest() != sha256:
                raise InvalidRequest("the body does not match the sha256 in the metadata")
            used = storage.tenant_bytes(
                storage.default_path_template(), member_names(self.db_url, slug), slug
            )
            allowed = tier.storage_gb * storage.GB
            if used + len(body) > allowed:
                raise QuotaExceeded(
                    f"Your organisation uses {used / storage.GB:.3f} GB of the "
                    f"{tier.storage_gb:g} GB of storage its {tenant.tier} tier allows; this "
                    f"dataset needs {len(body) / storage.GB:.3f} GB more. Delete files or old "
                    "dataset versions, or ask a tenant admin about a larger tier.",
                    details={"limit": "storage_gb", "allowed": tier.storage_gb,
                             "used": used / storage.GB, "requested": len(body) / storage.GB},
                )  # fmt: skip
            try:
                manifest = self.datasets.write(slug, name, body, schema, card)
            except DatasetError as e:
                raise InvalidRequest(str(e)) from None
            except OSError:  # another upload took this version number meanwhile
                raise Conflict(f"another upload of {name!r} is in progress; try again") from None
            folder = self.datasets.version_dir(slug, name, manifest["version"])
            size = storage.directory_bytes(folder)
            try:
                with session_scope(self.db_url) as s:
                    row = TenantDataset(
                        tenant=slug,
                        name=name,
                        version=manifest["version"],
                        rows=manifest["rows"],
                        bytes=size,
                        sha256=manifest["sha256"],
                        schema=schema.to_dict(),
                        created_by=caller.name,
                    )
                    s.add(row)
                    s.flush()
                    return row.to_json()
            except BaseException:
                self.datasets.delete(slug, name, manifest["version"])
                raise

        try:
            created = await run_blocking(register)
        except QuotaExceeded as e:
            self.emit(
                "dataset.refused",
                target=f"dataset:{name}",
                result="denied",
                severity="notice",
                details={**e.details, "reason": "storage_gb"},
            )
            raise
        self.emit(
            "dataset.registered",
            target=f"dataset:{name}@{created['version']}",
            details={"name": name, "version": created["version"], "rows": created["rows"],
                     "bytes": created["bytes"], "sha256": created["sha256"]},
        )  # fmt: skip
        self.write_json(created, status=201)

    @operation("Delete every version of a dataset", responses={200: DatasetDeleted, 404: None})
    async def delete(self, name: str):
        await self.remove(name, None)

    def _metadata(self) -> tuple[Schema, str, str | None]:
        raw = self.request.headers.get(META_HEADER, "")
        if not raw:
            raise InvalidRequest(f"missing the {META_HEADER} header (base64url JSON metadata)")
        if len(raw) > MAX_META:
            raise InvalidRequest(f"the {META_HEADER} header is too large")
        try:
            meta = json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
        except (binascii.Error, ValueError, RecursionError):
            raise InvalidRequest(f"the {META_HEADER} header is not base64url JSON") from None
        if not isinstance(meta, dict):
            raise InvalidRequest(f"the {META_HEADER} header's JSON must be an object")
        unknown = set(meta) - {"schema", "card", "sha256"}
        if unknown:
            raise InvalidRequest(f"unknown metadata fields: {', '.join(sorted(unknown))}")
        try:
            schema = Schema.from_dict(meta.get("schema"))
        except (DatasetError, TypeError, AttributeError) as e:
            raise InvalidRequest(f"schema: {e}") from None
        card = meta.get("card") or ""
        if not isinstance(card, str) or len(card) > MAX_CARD:
            raise InvalidRequest(f"card must be text of at most {MAX_CARD} characters")
        sha256 = meta.get("sha256")
        if sha256 is not None and (not isinstance(sha256, str) or len(sha256) != 64):
            raise InvalidRequest("sha256 must be 64 hex digits")
        return schema, card, sha256


class DatasetVersionHandler(DatasetHandlerBase):
    @operation("Delete one version of a dataset", responses={200: DatasetDeleted, 404: None})
    async def delete(self, name: str, version: str):
        await self.remove(name, version)


def pin_tenant_dataset(db_url: str, tenant: str, spec: ExperimentSpec) -> ExperimentSpec:
    """``spec`` with its ``tenant/<name>@latest`` made the version it means now, after
    checking that the caller's tenant has that dataset version (anyone else's name reads
    as missing)."""
    ref = DatasetRef.parse(spec.dataset)
    with session_scope(db_url) as s:
        versions = sorted(
            s.scalars(
                select(TenantDataset.version).where(
                    TenantDataset.tenant == tenant, TenantDataset.name == ref.name
                )
            )
        )
    if not versions:
        raise InvalidRequest(
            f"dataset: your organisation has no dataset {ref.name!r} (see fedhub.datasets.list())",
            details={"field": "dataset"},
        )
    version = ref.version or versions[-1]
    if version not in versions:
        raise InvalidRequest(
            f"dataset: {ref.name!r} has no version {version} (versions: "
            f"{', '.join(map(str, versions))})",
            details={"field": "dataset"},
        )
    return spec.model_copy(update={"dataset": str(DatasetRef(ref.name, version))})


def handlers() -> list[tuple]:
    name = r"api/v1/datasets/([^/]{1,200})"
    return [
        ("api/v1/datasets", DatasetsHandler),
        (name, DatasetHandler),
        (name + r"/([0-9]{1,9})", DatasetVersionHandler),
    ]
