"""A licensed marketplace dataset as an experiment's data (``dataset: market/<slug>@<v>``):
the spec's checks, the licence at submission and at each run's start, the copy written
into the buying tenant's store by a task on a real Dask LocalCluster (the rows never read
in this process), the version's default partition unless the spec names one, a run that
trains on it, and a refund that cancels the queued run and deletes the copy. No hub."""

from __future__ import annotations

import io
import json
import stat

import numpy as np
import pandas as pd
import pytest

from fedhub.errors import InvalidRequest
from fedhub.fl.tenant_data import DataNotHere, TenantData
from tests.fl.workers import cluster_kwargs
from tests.marketplace.conftest import ACME_ADMIN, ADMIN, GLOBEX_ADMIN, listed

REF = "market/pets@1.0.0"


def pets_csv(rows: int = 240, text_feature: bool = False) -> bytes:
    """Four numeric features that predict one of three kinds (the last column)."""
    rng = np.random.default_rng(7)
    kind = rng.integers(0, 3, rows)
    frame = pd.DataFrame({f"f{i}": rng.normal(kind * (i + 1), 0.3) for i in range(4)})
    if text_feature:
        frame["colour"] = np.where(kind == 0, "red", "blue")
    frame["kind"] = np.array(["cat", "dog", "owl"])[kind]
    return frame.to_csv(index=False).encode()


def publish_pets(market, content: bytes, slug: str = "pets", **spec) -> dict:
    spec = {"name": slug, "slug": slug, "asset_type": "dataset", "price": "5.00", **spec}
    asset = market.publish(ACME_ADMIN, spec, content=content, filename=f"{slug}.csv")
    market.review(ADMIN, slug, asset["versions"][0]["version"], "approve", "looked at it")
    return asset


def fl_spec(**fields):
    from fedhub.services.experiments.spec import parse_spec

    return parse_spec({"dataset": REF, "clients": 4, "rounds": 2, "model": "mlp", **fields})


@pytest.fixture(scope="module")
def client():
    from distributed import Client, LocalCluster

    with LocalCluster(**cluster_kwargs(2)) as cluster, Client(cluster, set_as_default=False) as c:
        c.wait_for_workers(2, timeout=60)
        yield c


@pytest.fixture
def store(tmp_path, monkeypatch):
    from fedhub.datasets import DatasetStore

    root = tmp_path / "tenant-data"
    monkeypatch.setenv("FEDHUB_TENANT_DATA_DIR", str(root))
    monkeypatch.setenv("FEDHUB_EVENTS_SPOOL", str(tmp_path / "spool"))
    return DatasetStore(root)


def test_a_market_dataset_in_a_spec_is_checked_like_a_tenant_dataset():
    spec = fl_spec(partition="iid")
    assert (spec.dataset, spec.partition) == (REF, "iid")
    with pytest.raises(InvalidRequest, match="dataset_params: a marketplace dataset takes none"):
        fl_spec(dataset_params={"alpha": 0.5})
    with pytest.raises(InvalidRequest, match="partition: unknown partition 'nope'"):
        fl_spec(partition="nope")


def test_a_licensed_dataset_is_copied_once_to_the_tenants_store_and_trained_on(
    market, client, store
):
    from fedhub.services.experiments import market_refs
    from fedhub.services.experiments.build import build_run
    from fedhub.services.experiments.market_refs import MarketplaceNotRunnable
    from fedhub.services.experiments.market_run import asset_dir

    publish_pets(market, pets_csv())
    listed(market, "algo")  # an algorithm: not a dataset
    market.purchase(GLOBEX_ADMIN, "pets", "k1")
    market.purchase(GLOBEX_ADMIN, "algo", "k2")
    market_refs.check(market.db, "globex", "bob", {"dataset": REF}, {"dataset": REF})
    with pytest.raises(MarketplaceNotRunnable, match="dataset takes an asset of type dataset"):
        ref = "market/algo@1.0.0"
        market_refs.check(market.db, "globex", "bob", {"dataset": ref}, {"dataset": ref})

    spec = fl_spec()
    assets = market_refs.start_use(market.db, "globex", "bob", "e1", spec)
    assert assets["dataset"]["schema"]["label_column"] == "kind"
    exp = build_run(spec, "globex", client, assets)
    data = exp.data
    assert isinstance(data, TenantData) and data.name == REF
    assert (data.num_features, data.num_classes) == (4, 3)
    assert data.partition == {"name": "dirichlet", "alpha": 0.5}  # the version's default
    assert sum(data.sizes()) == 192  # 80 % of 240 rows for training, counted on a worker
    with pytest.raises(DataNotHere):  # the rows are read on the workers only
        data.clients  # noqa: B018

    # the copy: <root>/globex/market/pets/<sha256>/, private, not one of globex's datasets
    folder = asset_dir(store, "globex", "pets") / assets["dataset"]["sha256"]
    assert sorted(p.name for p in folder.iterdir()) == [
        "arrays.npz", "manifest.json", "schema.json",
    ]  # fmt: skip
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert {stat.S_IMODE(p.stat().st_mode) for p in folder.iterdir()} == {0o600}
    manifest = json.loads((folder / "manifest.json").read_text())
    assert (manifest["asset"], manifest["source_sha256"]) == (REF, assets["dataset"]["sha256"])
    assert store.names("globex") == []
    written = (folder / "arrays.npz").stat().st_mtime_ns

    result = exp.run(client=client, progress=None)
    assert [r["round"] for r in result.history] == [1, 2]
    assert result.final_accuracy > 0.5  # 3 classes, well separated

    # a second run of the same version: the copy is reused, the spec's partition applies
    again = build_run(fl_spec(partition="iid"), "globex", client, assets)
    assert again.data.partition == {"name": "iid"}
    assert (folder / "arrays.npz").stat().st_mtime_ns == written


def test_a_dataset_that_cannot_be_trained_on_fails_the_run_naming_it(market, client, store):
    from fedhub.services.experiments import market_refs
    from fedhub.services.experiments.build import build_run

    publish_pets(market, pets_csv(text_feature=True))
    market.purchase(GLOBEX_ADMIN, "pets", "k1")
    spec = fl_spec()
    assets = market_refs.start_use(market.db, "globex", "bob", "e1", spec)
    with pytest.raises(ValueError, match=f"{REF} cannot be trained on: feature 'colour'"):
        build_run(spec, "globex", client, assets)


def test_a_refund_cancels_the_queued_run_and_deletes_the_copy(market, client, store, tmp_path):
    from fedhub import db
    from fedhub.db import rls
    from fedhub.marketplace.errors import NotEntitled
    from fedhub.services.experiments import market_refs
    from fedhub.services.experiments.build import build_run
    from fedhub.services.experiments.market_run import asset_dir
    from fedhub.services.experiments.models import ExperimentRun
    from fedhub.services.experiments.scheduler import ExperimentScheduler

    publish_pets(market, pets_csv(rows=60))
    purchase, _ = market.purchase(GLOBEX_ADMIN, "pets", "k1")
    spec = fl_spec()
    build_run(spec, "globex", client, market_refs.start_use(market.db, "globex", "bob", "e1", spec))
    assert asset_dir(store, "globex", "pets").is_dir()
    other = {"dataset": "market/pets@9.9.9"}  # refused, but globex still holds 1.0.0
    with pytest.raises(NotEntitled, match="market/pets@9.9.9"):
        market_refs.check(market.db, "globex", "bob", other, other)
    assert asset_dir(store, "globex", "pets").is_dir()

    body = {"dataset": REF, "rounds": 1, "clients": 2}
    with rls.platform(), db.session_scope(market.db) as s:
        s.add(ExperimentRun(id="queued1", tenant="globex", username="bob", name="", spec=body,
                            clients=2, rounds=1))  # fmt: skip
    market.refund(GLOBEX_ADMIN, purchase["id"])
    scheduler = ExperimentScheduler(market.db, lambda t: "starter", state_dir=str(tmp_path))
    rls.as_platform(scheduler._run)("queued1")
    with rls.platform(), db.session_scope(market.db) as s:
        run = s.get(ExperimentRun, "queued1")
        assert (run.status, run.error.split(":")[0]) == ("cancelled", "not_entitled")
        assert REF in run.error
    assert not asset_dir(store, "globex", "pets").exists()  # the copy went with the licence
    with pytest.raises(NotEntitled, match=REF):  # the next submission: 403
        market_refs.check(market.db, "globex", "bob", {"dataset": REF}, body)


def test_the_copy_is_written_from_the_licensed_bytes_only(tmp_path):
    """The worker task refuses bytes that are not the reviewed version's."""
    from fedhub.datasets import DatasetError
    from fedhub.services.experiments.market_run import materialise

    content = pets_csv(rows=20)
    (tmp_path / "pets").mkdir()
    with pytest.raises(DatasetError, match=f"{REF}: the licensed file does not match its SHA-256"):
        materialise(str(tmp_path / "pets" / "x"), content, "pets.csv", "0" * 64, "kind", REF)
    assert list((tmp_path / "pets").iterdir()) == []
    buf = io.BytesIO(content)
    assert len(pd.read_csv(buf)) == 20
