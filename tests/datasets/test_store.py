"""The tenant dataset store and the conversion of notebook sources (no hub)."""

from __future__ import annotations

import json
import os
import stat

import numpy as np
import pandas as pd
import pytest

from fedhub import accounts, storage
from fedhub.datasets import (
    DatasetCorrupt,
    DatasetError,
    DatasetNotFound,
    DatasetRef,
    DatasetStore,
    Schema,
    load_arrays,
)
from fedhub.datasets.convert import npz_bytes, split_rows, to_arrays


def frame(rows: int = 40, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "age": rng.integers(18, 90, rows),
            "income": rng.normal(50, 10, rows),
            "member": rng.integers(0, 2, rows).astype(bool),
            "churned": rng.choice(["no", "yes"], rows),
        }
    )


def test_references_round_trip_and_bad_ones_are_refused():
    assert DatasetRef.parse("tenant/sales@3") == DatasetRef("sales", 3)
    assert DatasetRef.parse("tenant/sales") == DatasetRef("sales", None)
    assert DatasetRef.parse("tenant/sales@latest") == DatasetRef("sales", None)
    for text in ("tenant/sales@3", "tenant/sales@latest"):
        assert str(DatasetRef.parse(text)) == text
    for bad in ("sales@1", "tenant/Sales", "tenant/../x@1", "tenant/sales@0", "tenant/s@v1", 3):
        with pytest.raises(DatasetError):
            DatasetRef.parse(bad)


def test_schema_matches_names_each_difference():
    base = Schema([{"name": "a", "dtype": "float64"}, {"name": "b", "dtype": "int64"}],
                  {"name": "y", "num_classes": 3})  # fmt: skip
    assert base.matches(Schema.from_dict(base.to_dict())) == []
    other = Schema([{"name": "a", "dtype": "float32"}, {"name": "c", "dtype": "int64"},
                    {"name": "d", "dtype": "int64"}], {"name": "z", "num_classes": 2})  # fmt: skip
    problems = other.matches(base)
    assert len(problems) == 5, problems
    assert any("'b'" in p and "'c'" in p for p in problems)
    assert any("has 3 classes, expected 2" in p for p in problems)
    with pytest.raises(DatasetError, match="num_classes"):
        Schema([{"name": "a", "dtype": "f"}], {"name": "y", "num_classes": 1})
    with pytest.raises(DatasetError, match="unknown"):
        Schema.from_dict({**base.to_dict(), "extra": 1})


def test_dataframe_csv_parquet_npz_and_folder_give_the_same_arrays(tmp_path):
    df = frame()
    arrays, schema = to_arrays(df, label="churned", test_fraction=0.25)
    assert arrays["x"].dtype == np.float32 and arrays["x"].shape == (40, 3)
    assert arrays["y"].dtype == np.int64 and set(arrays["y"]) == {0, 1}
    assert schema.label == {"name": "churned", "num_classes": 2, "classes": ["no", "yes"]}
    assert [f["name"] for f in schema.features] == ["age", "income", "member"]
    assert set(np.unique(arrays["split"])) == {0, 1}
    # stratified: each class has rows on both sides
    for c in (0, 1):
        assert set(arrays["split"][arrays["y"] == c]) == {0, 1}

    df.to_csv(tmp_path / "d.csv", index=False)
    df.to_parquet(tmp_path / "d.parquet")
    for path in ("d.csv", "d.parquet"):
        again, again_schema = to_arrays(tmp_path / path, label="churned", test_fraction=0.25)
        np.testing.assert_allclose(again["x"], arrays["x"], rtol=1e-6)
        np.testing.assert_array_equal(again["y"], arrays["y"])
        np.testing.assert_array_equal(again["split"], arrays["split"])
        assert again_schema.matches(schema) == []

    x, y = arrays["x"], arrays["y"]
    np.savez(tmp_path / "d.npz", x=x, y=y)
    (tmp_path / "folder").mkdir()
    np.save(tmp_path / "folder" / "x.npy", x)
    np.save(tmp_path / "folder" / "y.npy", y)
    for source in (tmp_path / "d.npz", tmp_path / "folder"):
        got, got_schema = to_arrays(source, label="churned", test_fraction=0.25)
        np.testing.assert_array_equal(got["x"], x)
        assert got_schema.label == {"name": "churned", "num_classes": 2}  # already 0..k-1


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda df: df.assign(city="x"), "not numeric"),
        (lambda df: df.assign(income=np.nan), "missing values"),
        (lambda df: df.assign(churned="no"), "1 class"),
        (lambda df: df.drop(columns="churned"), "no label column"),
        (lambda df: df.head(3), "at least 4"),
    ],
)
def test_unusable_frames_are_refused_with_the_reason(change, message):
    with pytest.raises(DatasetError, match=message):
        to_arrays(change(frame()), label="churned")


def test_split_keeps_a_test_row_for_every_class():
    y = np.array([0] * 10 + [1] * 2)
    split = split_rows(y, 0.1)
    assert split[y == 1].tolist().count(1) == 1
    assert split[y == 0].sum() >= 1


def test_versions_checksums_card_and_delete(tmp_path):
    store = DatasetStore(tmp_path / "tenant-data")
    arrays, schema = to_arrays(frame(), label="churned")
    first = store.write("acme", "churn", arrays, schema, card="Customers of 2025.")
    second = store.write("acme", "churn", npz_bytes(arrays), schema)
    assert (first["version"], second["version"]) == (1, 2)
    assert store.versions("acme", "churn") == [1, 2]
    assert store.names("acme") == ["churn"] and store.names("globex") == []
    assert store.resolve("acme", "tenant/churn@latest")[1] == 2
    assert store.resolve("acme", DatasetRef("churn", 1))[1] == 1

    info = store.describe("acme", "churn", 1)
    assert info["rows"] == 40 and info["train_rows"] + info["test_rows"] == 40
    assert "Customers of 2025." in info["card"] and info["sha256"] in info["card"]
    assert info["schema"] == schema.to_dict()

    folder = store.version_dir("acme", "churn", 2)
    loaded = load_arrays(folder)
    np.testing.assert_array_equal(loaded["y"], arrays["y"])
    assert store.bytes("acme") > 0

    # a changed byte is caught by the checksum
    data = bytearray((folder / "arrays.npz").read_bytes())
    data[-30] ^= 0xFF
    (folder / "arrays.npz").write_bytes(bytes(data))
    with pytest.raises(DatasetCorrupt, match="sha256"):
        load_arrays(folder)
    (folder / "manifest.json").unlink()
    with pytest.raises(DatasetCorrupt, match="missing"):
        load_arrays(folder)

    assert store.delete("acme", "churn", 1) == [1]
    assert store.versions("acme", "churn") == [2]
    # numbers are not reused while the dataset exists
    assert store.write("acme", "churn", arrays, schema)["version"] == 3
    assert store.delete("acme", "churn") == [2, 3]
    with pytest.raises(DatasetNotFound):
        store.version_dir("acme", "churn")
    with pytest.raises(DatasetNotFound):
        store.delete("acme", "churn")


def test_bad_uploads_are_refused_before_anything_is_written(tmp_path):
    store = DatasetStore(tmp_path)
    arrays, schema = to_arrays(frame(), label="churned")
    with pytest.raises(DatasetError, match="readable .npz"):
        store.write("acme", "churn", b"not a zip", schema)
    with pytest.raises(DatasetError, match="features"):
        wide = Schema([*schema.features, {"name": "z", "dtype": "f"}], schema.label)
        store.write("acme", "churn", arrays, wide)
    with pytest.raises(DatasetError, match="class indices"):
        store.write("acme", "churn", {**arrays, "y": arrays["y"] + 5}, schema)
    with pytest.raises(DatasetError, match="dataset name"):
        store.write("acme", "../etc", arrays, schema)
    # a pickled object array is not loaded
    import io

    buffer = io.BytesIO()
    np.savez(buffer, x=np.array([object()]), y=arrays["y"], split=arrays["split"])
    with pytest.raises(DatasetError):
        store.write("acme", "churn", buffer.getvalue(), schema)
    assert store.versions("acme", "churn") == []


def test_tenant_store_counts_in_the_tenants_storage(tmp_path, monkeypatch):
    monkeypatch.setenv(storage.TENANT_DATA_ENV, str(tmp_path / "tenant-data"))
    homes = tmp_path / "homes"
    (homes / "alice").mkdir(parents=True)
    (homes / "alice" / "f").write_bytes(b"x" * 10_000)
    template = str(homes / "{username}")
    before = storage.tenant_bytes(template, ["alice"], "acme")
    arrays, schema = to_arrays(frame(400), label="churned")
    DatasetStore().write("acme", "churn", arrays, schema)
    after = storage.tenant_bytes(template, ["alice"], "acme")
    assert after - before == DatasetStore().bytes("acme") > 0
    assert storage.tenant_bytes(template, ["alice"], "globex") == before


@pytest.mark.skipif(not accounts.can_isolate(), reason="needs root to own files as the tenant")
def test_as_root_the_files_are_the_tenants_and_private(tmp_path):
    store = DatasetStore(tmp_path / "tenant-data")
    arrays, schema = to_arrays(frame(), label="churned")
    store.write("acme", "churn", arrays, schema)
    owner = accounts.lookup(accounts.tenant_account("acme"))
    assert stat.S_IMODE(os.stat(store.root).st_mode) == 0o711
    for folder, _dirs, files in os.walk(store.tenant_dir("acme")):
        st = os.stat(folder)
        assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (owner.pw_uid, 0o700), folder
        for name in files:
            st = os.stat(os.path.join(folder, name))
            assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (owner.pw_uid, 0o600), name
    manifest = json.loads((store.version_dir("acme", "churn") / "manifest.json").read_text())
    assert manifest["version"] == 1


def test_tenant_data_is_not_read_outside_a_worker(tmp_path):
    from fedhub.fl.tenant_data import DataNotHere, TenantData

    store = DatasetStore(tmp_path)
    arrays, schema = to_arrays(frame(), label="churned")
    store.write("acme", "churn", arrays, schema)
    data = TenantData(store.version_dir("acme", "churn"), ref="tenant/churn@1", num_clients=2,
                      num_features=3, num_classes=2)  # fmt: skip
    with pytest.raises(DataNotHere):
        _ = data.clients
    with pytest.raises(DataNotHere):
        _ = data.test
    with pytest.raises(DataNotHere):
        data.sizes()
    assert data.with_sizes([3, 4]).num_examples(1) == 4


def test_billing_samples_the_tenant_store(tmp_path, monkeypatch):
    from datetime import datetime

    from sqlalchemy import select

    from fedhub import db
    from fedhub.billing import samplers
    from fedhub.metering import MeterEvent
    from fedhub.tenancy.store import TenantStore
    from fedhub.tiers import load_tiers

    url = f"sqlite:///{tmp_path / 'fedhub.sqlite'}"
    db.upgrade(url)
    tenants = TenantStore(url, load_tiers())
    tenants.create_tenant("acme", tier="starter")
    tenants.add_user("ann", tenant="acme")
    monkeypatch.setenv(storage.TENANT_DATA_ENV, str(tmp_path / "tenant-data"))
    arrays, schema = to_arrays(frame(400), label="churned")
    DatasetStore().write("acme", "churn", arrays, schema)
    template = str(tmp_path / "homes" / "{username}")  # ann has no home yet
    assert samplers.sample_storage(url, template, datetime(2026, 10, 3)) == 1
    with db.session_scope(url) as s:
        row = s.scalars(select(MeterEvent)).one()
        assert (row.tenant, row.username, row.idempotency_key) == (
            "acme", None, "storage:tenant:acme:2026-10-03")  # fmt: skip
        assert row.quantity == pytest.approx(DatasetStore().bytes("acme") / storage.GB)
    db.dispose_engines()
