"""The marketplace's remaining parts on SQLite and PostgreSQL: who may buy
(``marketplace:buy``), payout statements that close and are paid, datasets' schema and
default partition, and models checked at publish and loaded by ``install``."""

from __future__ import annotations

import io
import re
from datetime import datetime
from decimal import Decimal

import numpy as np
import pandas as pd
import pytest
import torch

from fedhub.billing.money import cents
from fedhub.client.marketplace import load_weights
from fedhub.errors import Conflict, Forbidden, InvalidRequest, NotFound
from fedhub.marketplace.errors import BadAsset
from fedhub.marketplace.payouts import month_totals
from fedhub.tenancy import scopes
from fedhub.tenancy.models import Role

from .conftest import (
    ACME_ADMIN,
    ADMIN,
    ALICE,
    BOB,
    DAVE,
    GINA,
    GLOBEX_ADMIN,
    INITECH_ADMIN,
    listed,
    publish,
)

# -- who may buy ----------------------------------------------------------------------------


def test_buying_is_the_marketplace_buy_permission_of_tenant_admins(market):
    assert [r for r in Role if scopes.allows(r, "marketplace:buy")] == [
        Role.PLATFORM_ADMIN, Role.TENANT_ADMIN,
    ]  # fmt: skip
    listed(market)
    for actor in (BOB, GINA, ALICE, DAVE):  # members and analysts, of the buyer and publisher
        with pytest.raises(Forbidden, match="marketplace:buy"):
            market.purchase(actor, "fedprox-variant", "k")
    purchase, created = market.purchase(GLOBEX_ADMIN, "fedprox-variant", "k")
    assert created
    for actor in (BOB, GINA):
        with pytest.raises(Forbidden, match="may not change"):
            market.upgrade(actor, "fedprox-variant")
        with pytest.raises(Forbidden, match="refund"):
            market.refund(actor, purchase["id"])
    assert market.upgrade(GLOBEX_ADMIN, "fedprox-variant")["state"] == "active"
    assert market.refund(GLOBEX_ADMIN, purchase["id"])["state"] == "refunded"


# -- payout statements: open, closed, paid ------------------------------------------------


def test_statements_close_after_their_month_and_a_platform_admin_pays_them(market, clock):
    listed(market)
    market.purchase(GLOBEX_ADMIN, "fedprox-variant", "a")  # 10 November
    [nov] = market.payouts(ACME_ADMIN)
    share = cents(Decimal("49.99") * market.settings.share / 100)
    assert (nov["period"], nov["state"], nov["amount"]) == ("2026-11", "open", str(share))
    assert nov["platform_fee"] == str(Decimal("49.99") - share)
    with market.session(None) as s:  # billing's revenue report shows the platform's fee
        assert month_totals(s, datetime(2026, 11, 1)) == {
            "gross": "49.99", "publishers": str(share), "platform_fee": str(Decimal("49.99") - share),
        }  # fmt: skip
    assert market.close_statements() == 0  # November is not over
    with pytest.raises(Conflict, match="not over"):
        market.mark_paid(ADMIN, nov["id"], "SEPA-1")
    clock.set(datetime(2026, 12, 1, 0, 30))
    market.purchase(INITECH_ADMIN, "fedprox-variant", "b")  # December's, on a new statement
    assert market.close_statements() == 1
    assert market.close_statements() == 0
    dec, nov = market.payouts(ACME_ADMIN)
    assert (dec["period"], dec["state"]) == ("2026-12", "open")
    assert (nov["state"], nov["amount"], nov["closed_at"]) == (
        "closed", str(share), "2026-12-01T00:30:00",
    )  # fmt: skip
    for actor in (GLOBEX_ADMIN, ACME_ADMIN, BOB):  # the buyer, the publisher: not theirs to pay
        with pytest.raises(Forbidden, match="platform admins"):
            market.mark_paid(actor, nov["id"], "SEPA-1")
    with pytest.raises(InvalidRequest, match="reference"):
        market.mark_paid(ADMIN, nov["id"], " ")
    paid = market.mark_paid(ADMIN, nov["id"], "SEPA-2026-11-acme")
    assert (paid["state"], paid["paid_reference"], paid["paid_by"]) == (
        "paid", "SEPA-2026-11-acme", "admin",
    )  # fmt: skip
    with pytest.raises(Conflict, match="paid"):
        market.mark_paid(ADMIN, nov["id"], "again")
    # the platform admin sees every publisher's statements, and filters by state
    assert [(s["tenant"], s["state"]) for s in market.payouts(ADMIN)] == [
        ("acme", "open"), ("acme", "paid"),
    ]  # fmt: skip
    assert [s["id"] for s in market.payouts(ADMIN, state="paid")] == [nov["id"]]
    with pytest.raises(InvalidRequest):
        market.payouts(ADMIN, state="lost")


def test_a_refund_of_a_closed_month_is_taken_back_on_the_open_statement(market, clock):
    listed(market)
    clock.set(datetime(2026, 11, 28, 9, 0))
    purchase, _ = market.purchase(GLOBEX_ADMIN, "fedprox-variant", "late")
    clock.set(datetime(2026, 12, 3, 9, 0))  # within the refund window; November closed
    assert market.close_statements() == 1
    market.refund(GLOBEX_ADMIN, purchase["id"], "wrong tool")  # the invoice is still a draft
    dec, nov = market.payouts(ACME_ADMIN)
    share = cents(Decimal("49.99") * market.settings.share / 100)
    assert (nov["state"], nov["amount"], len(nov["lines"])) == ("closed", str(share), 1)
    assert (dec["period"], dec["state"], dec["amount"]) == ("2026-12", "open", str(-share))
    [line] = dec["lines"]
    assert (line["kind"], line["period"], line["statement"]) == ("refund", "2026-11", dec["id"])
    clock.set(datetime(2027, 1, 1, 1, 0))
    assert market.close_statements() == 1
    assert market.payouts(ACME_ADMIN)[0]["amount"] == str(-share)  # frozen as it was


def test_another_tenants_statements_are_not_found(market, clock):
    listed(market)
    market.purchase(GLOBEX_ADMIN, "fedprox-variant", "a")
    [st] = market.payouts(ACME_ADMIN)
    assert market.statement(ACME_ADMIN, st["id"])["period"] == "2026-11"
    assert market.statement(ADMIN, st["id"])["tenant"] == "acme"
    for actor in (GLOBEX_ADMIN, BOB, INITECH_ADMIN):
        with pytest.raises(NotFound):
            market.statement(actor, st["id"])
        with pytest.raises(NotFound):
            market.payouts(actor, tenant="acme")
    assert market.payouts(GLOBEX_ADMIN) == []
    with pytest.raises(Forbidden):  # acme's member: not a publisher
        market.statement(ALICE, st["id"])
    with pytest.raises(NotFound):
        market.statement(ACME_ADMIN, 10**6)


# -- datasets: a schema and a default partition at publish ----------------------------------


def _csv() -> bytes:
    frame = pd.DataFrame(
        {
            "height": [1.5, 2.0, 0.5, 1.0],
            "legs": [4, 4, 2, 2],
            "kind": ["cat", "cat", "bird", "owl"],
        }
    )
    return frame.to_csv(index=False).encode()


def _parquet() -> bytes:
    buf = io.BytesIO()
    pd.DataFrame({"y": [0, 1, 1, 0, 2], "x1": [0.1, 0.2, 0.3, 0.4, 0.5]}).to_parquet(buf)
    return buf.getvalue()


def _npz(**arrays) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def publish_dataset(market, slug: str, filename: str, content: bytes, **spec) -> dict:
    spec = {"name": slug, "slug": slug, "asset_type": "dataset", "price": "5.00", **spec}
    return market.publish(ACME_ADMIN, spec, content=content, filename=filename)


def test_a_dataset_gets_its_schema_and_default_partition(market):
    out = publish_dataset(market, "pets", "pets.csv", _csv())
    assert out["versions"][0]["schema"] == {
        "format": "csv",
        "rows": 4,
        "columns": [
            {"name": "height", "dtype": "float64"},
            {"name": "legs", "dtype": "int64"},
            {"name": "kind", "dtype": str(pd.read_csv(io.BytesIO(_csv()))["kind"].dtype)},
        ],
        "num_columns": 3,
        "label_column": "kind",  # the last column by default
        "num_classes": 3,
        "partition": {"name": "dirichlet", "alpha": 0.5},
    }
    # a parquet with the label named and a partition of the publisher's
    out = publish_dataset(
        market, "scores", "scores.parquet", _parquet(),
        label_column="y", partition={"name": "Shards", "per_client": 3},
    )  # fmt: skip
    got = out["versions"][0]["schema"]
    assert (got["format"], got["rows"], got["label_column"], got["num_classes"]) == (
        "parquet", 5, "y", 3,
    )  # fmt: skip
    assert got["partition"] == {"name": "shards", "per_client": 3}
    # an npz: arrays with their shapes, y the label
    x, y = np.zeros((6, 4), dtype=np.float32), np.array([0, 1, 0, 1, 1, 0])
    out = publish_dataset(market, "arrays", "data.npz", _npz(x=x, y=y), partition="iid")
    got = out["versions"][0]["schema"]
    assert got["columns"] == [
        {"name": "x", "dtype": "float32", "shape": [6, 4]},
        {"name": "y", "dtype": "int64", "shape": [6]},
    ]
    assert (got["rows"], got["num_classes"], got["partition"]) == (6, 2, {"name": "iid"})
    # stored with the version: the asset's JSON, and a new version's own schema
    listed_asset = market.asset(ACME_ADMIN, "pets")
    assert listed_asset["versions"][0]["schema"]["rows"] == 4
    ver = market.add_version(
        ACME_ADMIN, "pets", version="1.1.0", content=_csv(), filename="pets.csv",
        label_column="legs",
    )  # fmt: skip
    assert (ver["schema"]["label_column"], ver["schema"]["num_classes"]) == ("legs", 2)
    assert publish(market, "algo")["versions"][0]["schema"] is None  # not a dataset


@pytest.mark.parametrize(
    ("filename", "content", "spec", "message"),
    [
        ("bad.csv", b'a,b\n1,2\n3,4,5,6\n"x', {}, "does not parse as csv"),
        ("bad.csv", b"\xff\xfe\x00\x81,\x92\n", {}, "does not parse as csv"),
        ("empty.csv", b"a,b\n", {}, "no rows"),
        ("bad.parquet", b"PAR1 not really", {}, "does not parse as parquet"),
        ("bad.npz", b"PK\x03\x04 broken", {}, "does not parse as npz"),
        ("pickled.npz", _npz(x=np.array([{"a": 1}], dtype=object), y=np.array([1])), {},
         "does not parse as npz"),
        ("nolabel.npz", _npz(x=np.zeros((2, 2))), {}, "no array 'y'"),
        ("one.csv", b"x,label\n1,a\n2,a\n", {}, "at least two"),
        ("pets.csv", _csv(), {"label_column": "colour"}, "no column 'colour'"),
        ("pets.csv", _csv(), {"label_column": "height"}, "fractional"),
        ("pets.csv", _csv(), {"partition": {"name": "by-colour"}}, "unknown partitioner"),
        ("pets.csv", _csv(), {"partition": {"name": "dirichlet", "alpha": 0}}, "partition.alpha"),
        ("pets.csv", _csv(), {"partition": {"name": "iid", "seed": 3}}, "partition.seed"),
        ("pets.json", b'[{"a": 1}]', {}, "a dataset's file is .csv, .parquet, .npz"),
    ],
)  # fmt: skip
def test_a_dataset_that_does_not_parse_is_refused(market, filename, content, spec, message):
    with pytest.raises(BadAsset, match=re.escape(message)):
        publish_dataset(market, "broken", filename, content, **spec)
    assert market.own(ACME_ADMIN) == []  # nothing written


# -- models: a state dict, checked at publish and loaded by install ---------------------------


def _saved(obj) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


class _RunsCode:
    """A pickle that would run a command when loaded without weights_only."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_model_is_a_state_dict_that_loads_with_weights_only(market, tmp_path):
    torch.manual_seed(0)
    net = torch.nn.Linear(3, 2)
    out = market.publish(
        ACME_ADMIN, {"name": "Tiny linear", "asset_type": "model", "price": "1.00"},
        content=_saved(net.state_dict()), filename="linear.pt",
    )  # fmt: skip
    assert out["versions"][0]["schema"] == {
        "format": "state_dict",
        "tensors": [
            {"name": "weight", "shape": [2, 3], "dtype": "float32"},
            {"name": "bias", "shape": [2], "dtype": "float32"},
        ],
        "num_tensors": 2,
        "parameters": 8,
    }
    # what install does with the licensed bytes: the same tensors back
    _, data = market.content("acme", "acme-admin", "market/tiny-linear@1.0.0")
    path = tmp_path / "linear.pt"
    path.write_bytes(data)
    loaded = load_weights(path)
    assert list(loaded) == ["weight", "bias"]
    assert all(torch.equal(loaded[k], net.state_dict()[k]) for k in loaded)

    marker = tmp_path / "ran"
    refused = [
        ("whole.pt", _saved(net), "does not load as a state dict"),  # a pickled nn.Module
        ("evil.pt", _saved({"w": _RunsCode(str(marker))}), "does not load as a state dict"),
        ("junk.pt", b"PK\x03\x04 a broken zip", "does not load as a state dict"),
        ("list.pt", _saved([torch.zeros(2)]), "not a state dict"),
        ("empty.pt", _saved({}), "not a state dict"),
        ("nested.pt", _saved({"model": net.state_dict()}), "not a flat state dict"),
        ("numbers.pt", _saved({"epoch": 3}), "'epoch' is not a tensor"),
        ("weights.bin", _saved(net.state_dict()), "PyTorch state dict (.pt, .pth)"),
    ]
    for i, (filename, content, message) in enumerate(refused):
        spec = {"name": f"bad {i}", "asset_type": "model"}
        with pytest.raises(BadAsset, match=re.escape(message)):
            market.publish(ACME_ADMIN, spec, content=content, filename=filename)
    assert not marker.exists()  # the check never ran the file's code
    assert [a["slug"] for a in market.own(ACME_ADMIN)] == ["tiny-linear"]
