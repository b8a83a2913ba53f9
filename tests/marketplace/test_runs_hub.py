"""Bought assets in experiments on one real hub (PostgreSQL): a strategy (must-show 1,
with globex's finalized invoice and acme's payout statement), a model's weights as a run's
``init_weights``, a dataset trained on until its licence is revoked; each run on the buying
tenant's own workers.

One hub for the module (the demo: acme on professional, globex on starter, initech on free).
"""

from __future__ import annotations

import base64

import pytest

from tests.harness import wait_for
from tests.marketplace.on_hub import ASSET, call, run_finished, start_hub, tokens

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


@pytest.fixture(scope="module")
def hub(hub_factory, postgres):
    return start_hub(hub_factory, postgres)


@pytest.fixture(scope="module")
def t(hub) -> dict[str, str]:
    return tokens(hub)


#: a FedProx variant: the server moves only ``server_lr`` of the way to the clients' average
#: (its evaluate reports the Unix account its hooks ran as, and what it could read of its parent,
#: the Dask worker process)
VARIANT = b"""import os

from fedhub.fl.registry import Param
from fedhub.fl.strategies import FedProx


class DampedFedProx(FedProx):
    params = {"mu": Param(float, min=0.0, max=10.0), "server_lr": Param(float, min=0.0, max=1.0)}

    def __init__(self, mu=0.01, server_lr=0.5):
        super().__init__(mu)
        self.server_lr = server_lr

    def aggregate(self, rnd, params, results):
        return params + self.server_lr * (self.average(results) - params)

    def evaluate(self, rnd, params):
        seen = {"uid": os.getuid()}
        parent = f"/proc/{os.getppid()}"  # the Dask worker process that started this host
        for name in ("mem", "environ"):
            try:
                with open(f"{parent}/{name}", "rb"):
                    seen[name] = "opened"
            except OSError as e:
                seen[name] = type(e).__name__
        with open(f"{parent}/status") as f:  # the worker's own name and uid, world-readable
            status = dict(line.split(":", 1) for line in f)
        seen["parent"] = status["Name"].strip()
        seen["parent_uid"] = int(status["Uid"].split()[0])
        seen["proc_owner"] = os.stat(f"{parent}/status").st_uid  # root's when not dumpable
        try:  # the worker's parent: its Nanny
            with open(f"/proc/{int(status['PPid'])}/environ", "rb"):
                seen["nanny_environ"] = "opened"
        except OSError as e:
            seen["nanny_environ"] = type(e).__name__
        return seen
"""


def test_must_show_1_a_bought_strategy_runs_and_both_amounts_are_exact(hub, t):
    """acme publishes a FedProx variant, globex cannot buy it before the review, buys it
    after, bob runs an experiment with it on globex's own workers; globex's invoice has the
    price, acme's payout statement its share, and the use is audited."""
    import os
    import pwd
    from datetime import datetime, timedelta
    from decimal import Decimal

    from sqlalchemy import select

    from fedhub import accounts, db
    from fedhub.billing.money import cents
    from fedhub.billing.operations import Billing
    from fedhub.billing.periods import containing
    from fedhub.billing.settings import BillingSettings
    from fedhub.clock import FixedClock
    from fedhub.db import rls
    from fedhub.marketplace.settings import MarketplaceSettings
    from tests.organisations.hub_helpers import spool_events

    slug, price = "damped-fedprox", Decimal("24.99")
    ref = f"market/{slug}@1.0.0"
    asset = {**ASSET, "name": "Damped FedProx", "slug": slug, "price": str(price),
             "filename": "damped.py", "content_base64": base64.b64encode(VARIANT).decode()}  # fmt: skip
    assert call(hub, t["acme-admin"], "POST", "assets", json=asset).status_code == 201
    buy = f"assets/{slug}/purchase"
    r = call(hub, t["globex-admin"], "POST", buy, headers={"Idempotency-Key": "d1"})
    assert r.status_code == 404  # pending review: not for sale, not even visible
    body = {"version": "1.0.0", "decision": "approve", "note": "source read"}
    assert call(hub, t["admin"], "POST", f"assets/{slug}/review", json=body).status_code == 200
    purchase = call(hub, t["globex-admin"], "POST", buy, headers={"Idempotency-Key": "d1"})
    assert purchase.status_code == 201, purchase.text

    exps = "/services/experiments/api/v1/experiments"
    spec = {"strategy": ref, "strategy_params": {"mu": 0.1, "server_lr": 0.5}, "rounds": 2,
            "clients": 4, "dataset": "synthetic", "seed": 1}  # fmt: skip
    r = hub.api("POST", exps, t["bob"], json={**spec, "strategy_params": {"lr": 1}})
    assert r.status_code == 201  # accepted: its parameters are the source's, checked at run
    bad = r.json()["id"]
    r = hub.api("POST", exps, t["bob"], json=spec)
    assert r.status_code == 201, r.text
    run = r.json()["id"]

    def finished(exp_id):
        return run_finished(hub, t["bob"], exp_id)

    done = wait_for(lambda: finished(run), 240, 0.5, "the experiment with the bought strategy")
    assert (done["status"], done["rounds_done"]) == ("completed", 2), done
    # its hooks ran on globex's own workers, as globex's account, not in the service
    account = pwd.getpwnam(accounts.tenant_account("globex")).pw_uid
    assert [m["uid"] for m in done["metrics"]] == [account, account] and account != os.getuid()
    # ... and could not read the memory or environment of its worker (nor its Nanny's), nor
    # ptrace it: the worker (of the same account) is not dumpable, so its /proc files are root's
    for seen in done["metrics"]:
        refused = (seen["mem"], seen["environ"], seen["nanny_environ"])
        assert refused == ("PermissionError",) * 3, seen
        assert (seen["parent_uid"], seen["proc_owner"]) == (account, 0), [done["metrics"]]
    refused = wait_for(lambda: finished(bad), 120, 0.5, "the run with an undeclared parameter")
    assert refused["status"] == "failed" and "strategy_params.lr: unknown" in refused["error"]

    # the next invoice: billing closes the month of the sale (its clock past the month's end
    # and grace, so the invoice is finalized) and globex reads it through billing's API: one
    # charge line of exactly the price
    month = containing(datetime.fromisoformat(purchase.json()["created_at"]).replace(tzinfo=None))
    after = FixedClock(month.end + BillingSettings().grace + timedelta(minutes=1))
    [closed] = Billing(hub.db_url, clock=after).close(month, tenants=["globex"])
    assert closed["status"] == "finalized", closed
    bills = "/services/billing/api/v1/invoices"
    listed = hub.api("GET", f"{bills}?tenant=globex", t["globex-admin"]).json()["invoices"]
    [invoice] = [i for i in listed if i["period"] == month.name]
    doc = hub.api("GET", f"{bills}/{invoice['id']}", t["globex-admin"]).json()
    assert (doc["tenant"], doc["status"]) == ("globex", "finalized")
    charges = [
        ln for ln in doc["lines"] if ln["type"] == "charge" and "Damped" in ln["description"]
    ]
    assert [Decimal(ln["amount"]) for ln in charges] == [price], doc["lines"]
    assert hub.api("GET", f"{bills}/{invoice['id']}", t["acme-admin"]).status_code == 404
    # the payout statement: the publisher's share, computed here from the configured percent
    share = cents(price * Decimal(str(MarketplaceSettings().revenue_share_percent)) / 100)
    [line] = [x for x in call(hub, t["acme-admin"], "GET", "sales").json()["sales"]
              if x["asset"] == slug]  # fmt: skip
    assert (Decimal(line["gross"]), Decimal(line["amount"])) == (price, share)
    statements = call(hub, t["acme-admin"], "GET", "payouts").json()["statements"]
    [statement] = [st for st in statements if st["period"] == line["period"]]
    [on_it] = [x for x in statement["lines"] if x["id"] == line["id"]]
    assert (statement["state"], Decimal(on_it["amount"])) == ("open", share)
    assert Decimal(statement["amount"]) == sum(Decimal(x["amount"]) for x in statement["lines"])

    # the use: metered once and audited for this run
    from fedhub.metering import MeterEvent

    with rls.platform(), db.session_scope(hub.db_url) as s:
        uses = s.scalars(
            select(MeterEvent.attributes).where(MeterEvent.kind == "marketplace_uses")
        ).all()
    assert [u["ref"] for u in uses if u.get("experiment") == run] == [ref]
    used = [e for e in spool_events(hub, "marketplace.used")
            if e["details"].get("context") == {"experiment": run}]  # fmt: skip
    assert [(e["tenant"], e["actor"], e["details"]["ref"]) for e in used] == [
        ("globex", "bob", ref)
    ]


def test_a_bought_model_is_a_runs_initial_weights(hub, t):
    """init_weights: market/<model>@<version> starts the run from the model's state dict,
    loaded on globex's workers; weights that do not fit the run's model fail it, saying so;
    a model is no strategy (409)."""
    import io

    import torch

    from fedhub import fl

    def state_dict_file(in_features: int) -> str:
        buf = io.BytesIO()
        model = fl.models.get("logistic_regression", in_features=in_features, num_classes=10)
        torch.save(model.state_dict(), buf)
        return base64.b64encode(buf.getvalue()).decode()

    exps = "/services/experiments/api/v1/experiments"
    spec = {"rounds": 1, "clients": 2, "dataset": "synthetic"}
    refs = {}
    for slug, features in (("warm-start", 60), ("narrow-start", 30)):
        asset = {**ASSET, "name": slug, "slug": slug, "asset_type": "model", "price": "0",
                 "filename": "weights.pt", "content_base64": state_dict_file(features)}  # fmt: skip
        r = call(hub, t["acme-admin"], "POST", "assets", json=asset)
        assert r.status_code == 201, r.text
        body = {"version": "1.0.0", "decision": "approve", "note": "weights only"}
        assert call(hub, t["admin"], "POST", f"assets/{slug}/review", json=body).status_code == 200
        key = {"Idempotency-Key": slug}
        assert call(hub, t["globex-admin"], "POST", f"assets/{slug}/purchase", headers=key).ok
        r = hub.api("POST", exps, t["bob"], json={**spec, "init_weights": f"market/{slug}@1.0.0"})
        assert r.status_code == 201, r.text
        refs[slug] = r.json()["id"]
    r = hub.api("POST", exps, t["bob"], json={**spec, "strategy": "market/warm-start@1.0.0"})
    assert (r.status_code, r.json()["error"]["code"]) == (409, "marketplace_not_runnable")
    assert "market/warm-start@1.0.0 is of type model" in r.json()["error"]["message"]

    def finished(exp_id):
        return run_finished(hub, t["bob"], exp_id)

    done = wait_for(lambda: finished(refs["warm-start"]), 240, 0.5, "the warm-started run")
    assert done["status"] == "completed", done
    bad = wait_for(lambda: finished(refs["narrow-start"]), 240, 0.5, "the run that cannot fit")
    assert bad["status"] == "failed"
    assert "market/narrow-start@1.0.0: does not load into the run's model" in bad["error"]


def test_a_bought_dataset_trains_a_run_on_the_buyers_workers_until_revoked(hub, t):
    """dataset: market/<slug>@<version>: globex's run trains on the licensed CSV,
    copied into globex's store as globex's account; the revoked licence refuses the next
    submission and deletes the copy."""
    import os
    import pwd
    import stat

    import numpy as np
    import pandas as pd

    from fedhub import accounts

    rng = np.random.default_rng(3)
    kind = rng.integers(0, 2, 120)
    frame = pd.DataFrame({f"f{i}": rng.normal(kind * (i + 1), 0.3) for i in range(3)})
    frame["kind"] = np.array(["cat", "dog"])[kind]
    slug = "pets-table"
    asset = {**ASSET, "name": "Pets", "slug": slug, "asset_type": "dataset", "price": "0",
             "filename": "pets.csv", "label_column": "kind",
             "content_base64": base64.b64encode(frame.to_csv(index=False).encode()).decode()}  # fmt: skip
    r = call(hub, t["acme-admin"], "POST", "assets", json=asset)
    assert r.status_code == 201, r.text
    body = {"version": "1.0.0", "decision": "approve", "note": "a table"}
    assert call(hub, t["admin"], "POST", f"assets/{slug}/review", json=body).status_code == 200
    held = call(hub, t["globex-admin"], "POST", f"assets/{slug}/purchase",
                headers={"Idempotency-Key": slug})  # fmt: skip
    assert held.status_code == 201, held.text

    exps = "/services/experiments/api/v1/experiments"
    spec = {"dataset": f"market/{slug}@1.0.0", "rounds": 2, "clients": 2, "model": "mlp"}
    r = hub.api("POST", exps, t["bob"], json=spec)
    assert r.status_code == 201, r.text
    run = r.json()["id"]

    done = wait_for(
        lambda: run_finished(hub, t["bob"], run), 240, 0.5, "the run on the bought dataset"
    )
    assert (done["status"], done["rounds_done"]) == ("completed", 2), done
    copies = hub.state_dir / "tenant-data" / "globex" / "market" / slug
    [copy] = list(copies.iterdir())
    account = pwd.getpwnam(accounts.tenant_account("globex")).pw_uid
    assert account != os.getuid()
    for path in (copies, copy, *copy.iterdir()):  # the tenant's account's, nobody else's
        mode = path.stat()
        assert (mode.st_uid, stat.S_IMODE(mode.st_mode) & 0o077) == (account, 0), path

    [licence] = [e for e in call(hub, t["globex-admin"], "GET", "entitlements").json()[
        "entitlements"] if e["asset"] == slug]  # fmt: skip
    revoke = f"entitlements/{licence['id']}/revoke"
    assert call(hub, t["admin"], "POST", revoke, json={"reason": "test"}).status_code == 200
    r = hub.api("POST", exps, t["bob"], json=spec)
    assert (r.status_code, r.json()["error"]["code"]) == (403, "not_entitled")
    assert not copies.exists()  # the licence is gone, so is globex's copy


def test_a_refunded_strategy_is_refused_at_the_next_submission(hub, t):
    """Must-show 2 on the hub: globex buys a strategy, its admin refunds it, and bob's next
    submission naming it is 403 not_entitled (the licence ended with the refund)."""
    slug = "refunded-prox"
    ref = f"market/{slug}@1.0.0"
    asset = {**ASSET, "name": "Refunded Prox", "slug": slug, "filename": "prox.py",
             "content_base64": base64.b64encode(VARIANT).decode()}  # fmt: skip
    assert call(hub, t["acme-admin"], "POST", "assets", json=asset).status_code == 201
    body = {"version": "1.0.0", "decision": "approve", "note": "source read"}
    assert call(hub, t["admin"], "POST", f"assets/{slug}/review", json=body).status_code == 200
    key = {"Idempotency-Key": slug}
    purchase = call(hub, t["globex-admin"], "POST", f"assets/{slug}/purchase", headers=key)
    assert purchase.status_code == 201, purchase.text
    exps = "/services/experiments/api/v1/experiments"
    spec = {"strategy": ref, "rounds": 1, "clients": 2, "dataset": "synthetic"}
    refund = f"purchases/{purchase.json()['id']}/refund"
    assert call(hub, t["bob"], "POST", refund, json={}).status_code == 403  # not a buyer
    r = call(hub, t["globex-admin"], "POST", refund, json={"reason": "not what we needed"})
    assert r.status_code == 200, r.text
    r = hub.api("POST", exps, t["bob"], json=spec)
    assert (r.status_code, r.json()["error"]["code"]) == (403, "not_entitled"), r.text
    assert ref in r.json()["error"]["message"]
