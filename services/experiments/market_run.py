"""A licensed marketplace dataset as a run's data (``dataset: "market/<slug>@<version>"``).

The licensed file (a ``.csv``, ``.parquet`` or ``.npz``, schema read at publish by
:mod:`fedhub.marketplace.datasets`) is materialised once per (tenant, SHA-256) into the
buying tenant's own store, then the run reads it exactly like one of the tenant's own
datasets (:class:`fedhub.fl.tenant_data.TenantData`)::

    <tenant-data root>/<tenant>/market/<asset slug>/<sha256>/arrays.npz, schema.json,
                                                             manifest.json

- The folders down to ``<asset slug>`` are made by the service (root, as the datasets API
  does), each 0700 and owned by the tenant's account (``fedhub_t_<tenant>``).
- The copy itself is written by a task on the tenant's own workers
  (:func:`materialise`), i.e. *as the tenant's account*: the file is parsed (pandas /
  numpy, never unpickling) and converted there with :func:`fedhub.datasets.convert.
  to_arrays` (the label column the publisher named, every other column a numeric
  feature, a stratified 80/20 train/test split with seed 0), so the service never parses
  the rows; it only passes the licensed bytes from the marketplace through to the task,
  and only for the first run of that version.
- The copy lives beside, not inside, the tenant's ``datasets/`` folder: it is not one of
  the tenant's datasets (no name to collide with, not listed, not deletable through the
  datasets API) but counts in the tenant's storage like them.
- A licence refunded or revoked: the next use (a submission or a run's start) is refused
  and the tenant's copies of that asset are deleted (:func:`forget`).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

from fedhub.datasets.store import (
    ARRAYS,
    MANIFEST,
    SCHEMA,
    DatasetStore,
    check_name,
    write_private,
)

#: the folder of each tenant's materialised marketplace datasets, beside ``datasets/``
MARKET_DIR = "market"


def asset_dir(store: DatasetStore, tenant: str, slug: str) -> Path:
    """``<root>/<tenant>/market/<slug>``: every copy of one asset in one tenant's store."""
    return store.tenant_dir(tenant) / MARKET_DIR / check_name(slug)


def market_data(spec, tenant: str, executor, asset: dict[str, Any], store: DatasetStore):
    """The run's data: the licensed dataset ``asset`` (:meth:`MarketStore.use`'s answer)
    as a :class:`~fedhub.fl.tenant_data.TenantData` on ``executor`` (the tenant's own
    workers), split with the spec's ``partition`` or else the version's default one."""
    from fedhub.datasets import Schema
    from fedhub.fl.tenant_data import sized

    ref = f"market/{asset['asset']}@{asset['version']}"
    published = asset.get("schema") or {}
    folder = asset_dir(store, tenant, asset["asset"]) / asset["sha256"]
    if not (folder / MANIFEST).is_file():  # first use of this version by this tenant
        store.make_tenant_dirs(tenant, folder.parent)
        content = asset["content"]
    else:
        content = None  # already there: the bytes need not travel again
    written = executor.submit(
        materialise,
        str(folder),
        content,
        asset["filename"],
        asset["sha256"],
        published.get("label_column"),
        ref,
    ).result(timeout=600)
    schema = Schema.from_dict(written)
    if spec.partition:
        partition = {"name": spec.partition, **spec.partition_params}
    else:
        partition = published.get("partition")
    return sized(executor, folder, ref=ref, schema=schema, partition=partition,
                 num_clients=spec.clients, seed=spec.seed)  # fmt: skip


def materialise(
    folder: str, content: bytes | None, filename: str, sha256: str, label: str | None, ref: str
) -> dict:
    """Worker task, as the tenant's account: write the store's arrays of the licensed file
    into ``folder`` unless they are there already; return the converted schema (feature
    names and dtypes, the label and its classes: no rows)."""
    from fedhub.datasets import DatasetError
    from fedhub.datasets.convert import npz_bytes, to_arrays

    target = Path(folder)
    if (target / MANIFEST).is_file():
        return json.loads((target / SCHEMA).read_text())
    if content is None or hashlib.sha256(content).hexdigest() != sha256:
        raise DatasetError(f"{ref}: the licensed file does not match its SHA-256")
    staging = target.parent / f".{target.name}.{os.getpid()}.{time.monotonic_ns()}"
    staging.mkdir(mode=0o700)
    try:
        source = staging / ("source" + Path(filename).suffix.lower())
        write_private(source, content)
        try:
            arrays, schema = to_arrays(source, label=label or "y")
        except DatasetError as e:
            raise DatasetError(f"{ref} cannot be trained on: {e}") from None
        source.unlink()
        raw = npz_bytes(arrays)
        manifest = {
            "version": 1,
            "sha256": hashlib.sha256(raw).hexdigest(),
            "rows": int(len(arrays["y"])),
            "train_rows": int((arrays["split"] == 0).sum()),
            "test_rows": int((arrays["split"] == 1).sum()),
            "asset": ref,
            "source_sha256": sha256,
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        write_private(staging / ARRAYS, raw)
        write_private(staging / SCHEMA, json.dumps(schema.to_dict(), indent=1).encode())
        write_private(staging / MANIFEST, json.dumps(manifest, indent=1).encode())
        try:
            os.rename(staging, target)
        except OSError:  # another run of the same version got there first
            if not (target / MANIFEST).is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return json.loads((target / SCHEMA).read_text())


def forget(tenant: str, slug: str, store: DatasetStore | None = None) -> bool:
    """Delete ``tenant``'s copies of asset ``slug`` (its licence is gone); True if any."""
    store = store if store is not None else DatasetStore()
    if not str(store.root) or not store.root.is_absolute():
        return False  # this hub keeps no tenant stores
    folder = asset_dir(store, tenant, slug)
    if not folder.is_dir():
        return False
    shutil.rmtree(folder, ignore_errors=True)
    return True
