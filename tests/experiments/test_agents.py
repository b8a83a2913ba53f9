"""graph_td3 experiments in the service: the spec's algorithm, environment and agents, the
tier limit max_agents_per_experiment, and GET /experiments/{id}/agents.

The spec and limit tests run without a hub; the endpoint tests use the session's
experiments hub (tests/experiments/conftest.py).
"""

from __future__ import annotations

import dataclasses
import json
import uuid

import pytest

from fedhub.errors import InvalidRequest, QuotaExceeded
from fedhub.services.experiments import quota
from fedhub.services.experiments.build import rl_settings
from fedhub.services.experiments.scheduler import _jsonable
from fedhub.services.experiments.spec import ExperimentSpec, parse_spec
from fedhub.tiers import DEFAULT_TIERS_PATH, load_tiers
from tests.experiments.conftest import sql

RL = {"algorithm": "graph_td3", "agents": 2, "environment": {"name": "traffic-grid", "grid": 2}}


# -- the spec ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "field", "words"),
    [
        ({**RL, "environment": {"grid": 9}}, "environment.grid", "less than or equal to 8"),
        ({**RL, "environment": {"grid": 1}}, "environment.grid", "greater than or equal to 2"),
        ({**RL, "environment": {"demand": 5}}, "environment.demand", "less than or equal to 2"),
        ({**RL, "environment": {"episode_seconds": 30}}, "environment.episode_seconds", "60"),
        ({**RL, "environment": {"decision_seconds": 121}}, "environment.decision_seconds", "120"),
        ({**RL, "environment": {"decision_seconds": 15}}, "environment.decision_seconds", "16"),
        ({**RL, "environment": {"incident": "sometimes"}}, "environment.incident", "boolean"),
        ({**RL, "environment": {"name": "city"}}, "environment.name", "'traffic-grid'"),
        ({**RL, "environment": {"lanes": 2, "colour": 1}}, "environment.colour", "unknown field"),
        ({**RL, "environment": {"seed": 3}}, "environment.seed", "top-level field 'seed'"),
        (
            {**RL, "environment": {"episode_seconds": 60, "decision_seconds": 90}},
            "environment.decision_seconds",
            "must not exceed environment.episode_seconds (60 s)",
        ),
        ({**RL, "agents": 5}, "agents", "cannot split a 2x2 grid of 4 intersections"),
        ({**RL, "agents": 0}, "agents", "greater than or equal to 1"),
        ({"algorithm": "graph_td3"}, "agents", "needs 'agents'"),
        ({"agents": 2}, "agents", "only graph_td3 experiments have agents"),
        ({"environment": {"grid": 3}}, "environment", "only graph_td3 experiments run in"),
        ({**RL, "dataset": "digits"}, "dataset", "takes none"),
        ({**RL, "model": "mlp"}, "model", "takes none"),
        ({**RL, "clients": 3}, "clients", "set 'agents' (2), not 'clients' (3)"),
        ({**RL, "algorithm": "ppo"}, "algorithm", "'fl' or 'graph_td3'"),
    ],
)
def test_bad_rl_specs_are_refused_naming_the_field(spec, field, words):
    with pytest.raises(InvalidRequest) as e:
        parse_spec(spec)
    assert e.value.message.startswith(f"{field}: "), e.value.message
    assert words in e.value.message, e.value.message
    assert field in e.value.details.get("fields", [e.value.details.get("field")])


def test_a_graph_td3_spec_runs_its_agents_as_clients():
    spec = parse_spec({**RL, "agents": 3, "rounds": 2, "local_epochs": 2, "seed": 7})
    assert spec.clients == spec.clients_per_round == 3
    assert spec.environment.grid == 2 and spec.environment.episode_seconds == 900
    # the stored spec validates again as it is (the runner reads it back)
    assert ExperimentSpec.model_validate(spec.model_dump()) == spec
    # the environment defaults to a 4x4 grid; an FL spec has neither agents nor environment
    assert parse_spec({"algorithm": "graph_td3", "agents": 4}).environment.grid == 4
    fl = parse_spec({"clients": 4})
    assert fl.algorithm == "fl" and fl.agents is None and fl.environment is None


def test_the_notebook_client_sends_every_spec_field_as_such():
    """fedhub.experiments.submit(algorithm=..., agents=...) puts them in the spec, not in
    strategy_params (keywords it does not know go to the strategy)."""
    from fedhub.client.experiments import SPEC_FIELDS

    assert set(ExperimentSpec.model_fields) == SPEC_FIELDS


def test_the_spec_maps_to_the_engines_config():
    """What build_rl_experiment hands fedhub.fl.rl.federated.build_experiment."""
    spec = parse_spec(
        {**RL, "agents": 3, "rounds": 5, "local_epochs": 2, "seed": 11, "strategy": "fedprox",
         "strategy_params": {"mu": 0.1},
         "environment": {"grid": 3, "episode_seconds": 120, "decision_seconds": 20,
                         "demand": 0.5, "incident": False}}
    )  # fmt: skip
    assert rl_settings(spec) == {
        "config": {"grid": 3, "length": 200.0, "lanes": 2, "episode_seconds": 120,
                   "decision_seconds": 20, "demand": 0.5, "demand_shift": True,
                   "incident": False, "seed": 11},
        "clients": 3,
        "rounds": 5,
        "clients_per_round": 3,
        "episodes_per_round": 2,
        "seed": 11,
        "strategy": ("fedprox", {"mu": 0.1}),
    }  # fmt: skip


def test_the_environment_fields_are_the_simulators():
    """Every environment field of the spec is a TrafficConfig field (and none is lost)."""
    traffic = pytest.importorskip("fedhub.fl.rl.traffic")
    config = {f.name for f in dataclasses.fields(traffic.TrafficConfig)}
    spec = parse_spec(RL)
    assert set(rl_settings(spec)["config"]) == config
    traffic.TrafficConfig(**rl_settings(spec)["config"])
    # the spec's bounds are inside the simulator's: both ends build a config, beyond is a 400
    bounds = {"grid": (2, 8, 1), "length": (50, 1000, 1), "lanes": (1, 4, 1),
              "episode_seconds": (60, 3600, 1), "decision_seconds": (16, 120, 1),
              "demand": (0.01, 2, 0.001)}  # fmt: skip
    for field, (low, high, step) in bounds.items():
        for value in (low, high):
            env = {"episode_seconds": 3600, field: value}
            traffic.TrafficConfig(**rl_settings(parse_spec({**RL, "environment": env}))["config"])
        for value in (low - step, high + step):
            env = {"episode_seconds": 3600, field: value}
            with pytest.raises(InvalidRequest, match=f"^environment.{field}: "):
                parse_spec({**RL, "environment": env})


# -- the tier limit ---------------------------------------------------------------------------

CATALOG = load_tiers(DEFAULT_TIERS_PATH)


@pytest.mark.parametrize(
    ("tier", "allowed"), [("free", 2), ("starter", 5), ("professional", 25), ("enterprise", 100)]
)
def test_agents_over_the_tier_are_refused_naming_the_limit(tier, allowed):
    t = CATALOG.get(tier)
    assert t.max_agents_per_experiment == allowed
    quota.check_size(tier, t, rounds=1, local_epochs=1, agents=allowed)
    with pytest.raises(QuotaExceeded) as e:
        quota.check_size(tier, t, rounds=1, local_epochs=1, agents=allowed + 1)
    assert e.value.details["limit"] == "max_agents_per_experiment"
    assert e.value.details["allowed"] == allowed and e.value.details["requested"] == allowed + 1
    assert f"max_agents_per_experiment = {allowed}" in e.value.message


def test_a_round_record_keeps_its_agents_as_json():
    record = {"round": 2, "clients": 2, "reward": float("nan"), "agents": [
        {"agent": 0, "district": 0, "last_reward": -1.5, "episodes": 4, "health": "ok"},
        {"agent": 1, "district": 1, "last_reward": float("nan"), "episodes": 0,
         "health": "lost"}]}  # fmt: skip
    stored = {k: _jsonable(v) for k, v in record.items()}
    assert json.loads(json.dumps(stored)) == stored
    assert stored["reward"] is None and stored["agents"][1]["last_reward"] is None
    assert stored["agents"][0] == record["agents"][0]


# -- on the hub -------------------------------------------------------------------------------


def seed_rl_run(hub, tenant: str, user: str, rounds: list[dict], spec: dict = RL) -> str:
    """A finished run of ``tenant`` (graph_td3 unless ``spec`` says otherwise) with these
    round records, written to the hub's database as the scheduler writes them (no engine
    runs here)."""
    from fedhub import db
    from fedhub.services.experiments.models import COMPLETED, ExperimentRound, ExperimentRun

    run_id = uuid.uuid4().hex[:16]
    with db.session_scope(hub.db_url) as s:
        s.add(ExperimentRun(id=run_id, tenant=tenant, username=user, name="seeded rl",
                            status=COMPLETED, spec=parse_spec(spec).model_dump(), clients=2,
                            rounds=len(rounds), rounds_done=len(rounds)))  # fmt: skip
        s.flush()
        for record in rounds:
            s.add(ExperimentRound(experiment_id=run_id, round=record["round"],
                                  metrics={k: _jsonable(v) for k, v in record.items()}))  # fmt: skip
    return run_id


def agent(i: int, reward, episodes: int, health: str = "ok") -> dict:
    return {"agent": i, "district": i, "last_reward": reward, "episodes": episodes,
            "health": health}  # fmt: skip


@pytest.mark.slow
def test_submissions_refused_by_spec_and_tier(api):
    carol = api("carol")  # initech, free tier: 2 agents
    r = carol.submit(**{**RL, "agents": 3, "environment": {"grid": 3}})
    assert r.status_code == 429, r.text
    err = r.json()["error"]
    assert err["code"] == "quota_exceeded"
    assert err["details"]["limit"] == "max_agents_per_experiment"
    assert "max_agents_per_experiment = 2" in err["message"] and "requested 3" in err["message"]
    r = carol.submit(**TINY_FL, agents=2)
    assert r.status_code == 400 and r.json()["error"]["message"].startswith("agents: ")
    r = carol.submit(**{**RL, "environment": {"grid": 2, "demand": 3}})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["message"].startswith("environment.demand: ")


TINY_FL = {"dataset": "synthetic", "clients": 4, "clients_per_round": 2, "rounds": 1, "seed": 1}


@pytest.mark.slow
def test_agents_endpoint_tenants_and_roles(exp_hub, api):
    alice, dave, bob = api("alice"), api("dave"), api("bob")  # acme member, analyst; globex
    rounds = [
        {"round": 1, "clients": 2, "reward": -3.0, "agents": [agent(0, -3.5, 2), agent(1, -2.5, 2)]},
        {"round": 2, "clients": 1, "reward": -2.0,
         "agents": [agent(0, -2.0, 4), agent(1, -2.5, 2, "lost")]},
    ]  # fmt: skip
    run_id = seed_rl_run(exp_hub, "acme", "alice", rounds)
    r = alice.call("GET", f"/experiments/{run_id}/agents")
    assert r.status_code == 200, r.text
    assert r.json() == {"experiment": run_id, "agents": rounds[-1]["agents"]}  # the last round's
    assert dave.call("GET", f"/experiments/{run_id}/agents").json() == r.json()  # analysts read
    r = bob.call("GET", f"/experiments/{run_id}/agents")
    assert r.status_code == 404 and r.json()["error"]["message"] == "no such experiment"
    # before its first round: no agents yet
    empty = seed_rl_run(exp_hub, "acme", "alice", [])
    assert alice.call("GET", f"/experiments/{empty}/agents").json() == {
        "experiment": empty,
        "agents": [],
    }
    # an FL experiment has none: 400 naming its algorithm
    fl_run = seed_rl_run(exp_hub, "acme", "alice", [{"round": 1, "clients": 2}], TINY_FL)
    r = alice.call("GET", f"/experiments/{fl_run}/agents")
    assert r.status_code == 400 and "algorithm 'fl'" in r.json()["error"]["message"], r.text


@pytest.mark.slow
def test_a_graph_td3_run_on_a_2x2_grid_fills_its_agents(exp_hub, api, monkeypatch):
    """A real run: SUMO on the service's Dask workers, two agent groups, two rounds."""
    alice, bob = api("alice"), api("bob")
    env = {"name": "traffic-grid", "grid": 2, "episode_seconds": 60, "decision_seconds": 20}
    r = alice.submit(algorithm="graph_td3", agents=2, rounds=2, environment=env, seed=3)
    assert r.status_code == 201, r.text
    exp_id = r.json()["id"]
    assert r.json()["name"] == "fedavg graph_td3 on traffic-grid 2x2"
    done = alice.wait_done(exp_id, timeout=240)
    assert done["status"] == "completed", done
    assert [m["round"] for m in done["metrics"]] == [1, 2]
    assert all(m["clients"] == 2 and m["mean_delay"] >= 0 for m in done["metrics"])
    agents = alice.call("GET", f"/experiments/{exp_id}/agents").json()
    assert agents["experiment"] == exp_id
    assert [(a["agent"], a["episodes"], a["health"]) for a in agents["agents"]] == [
        (0, 2, "ok"),  # one episode per round (local_epochs 1), two rounds
        (1, 2, "ok"),
    ]
    assert agents["agents"] == done["metrics"][-1]["agents"]
    assert all(isinstance(a["last_reward"], float) for a in agents["agents"])
    assert bob.call("GET", f"/experiments/{exp_id}/agents").status_code == 404
    # the notebook client's view of the same
    import fedhub.client
    from fedhub.client import experiments

    monkeypatch.setitem(fedhub.client._overrides, "url", f"{exp_hub.url}/services/experiments/")
    monkeypatch.setitem(fedhub.client._overrides, "token", alice.token)
    frame = experiments.get(exp_id).agents
    assert frame.to_dict("records") == agents["agents"]
    # agent time is metered as client time: each round's duration x its agent groups
    rows = sql(
        exp_hub,
        "select quantity, attributes from fedhub_meter_events"
        " where kind='fl_client_seconds' and attributes like ?",
        f'%"{exp_id}"%',
    )
    metered = {json.loads(a)["round"]: q for q, a in rows}
    assert metered == {m["round"]: pytest.approx(m["duration_s"] * 2) for m in done["metrics"]}
    assert alice.call("GET", f"/experiments/{exp_id}/weights").status_code == 200


def test_the_runner_rechecks_agents_when_a_run_starts(tmp_path):
    """A tier lowered while a graph_td3 run waited: the run is refused when it would start
    (the runner's own layer), naming the limit."""
    from fedhub import db
    from fedhub.services.experiments.scheduler import ExperimentScheduler
    from fedhub.tenancy.store import TenantStore

    url = f"sqlite:///{tmp_path / 'fedhub.sqlite'}"
    db.upgrade(url)
    store = TenantStore(url, CATALOG)
    store.create_tenant("tiny", tier="free")
    store.add_user("u", tenant="tiny")
    runner = ExperimentScheduler(url, lambda t: "free", state_dir=str(tmp_path))
    runner._tiers = CATALOG
    spec = parse_spec(RL)  # 2 agent groups: what the free tier allows
    try:
        assert runner._refusal("tiny", "u", spec) is None
        store.update_tenant("tiny", overrides={"max_agents_per_experiment": 1})
        refusal = runner._refusal("tiny", "u", spec)
        assert refusal.startswith("tier_limit: ") and "max_agents_per_experiment = 1" in refusal
    finally:
        runner.clusters.close()
        db.dispose_engines()
