"""What ``POST /federations`` takes: the task, the schema and the privacy settings.

Validated here before anything is stored (every message names the field); the runner
builds :class:`fedhub.fl.federation.FederationPlan` from the stored, validated values only.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from fedhub.errors import InvalidRequest


class Task(BaseModel):
    """What every member trains: the same model, strategy and local schedule."""

    model_config = ConfigDict(extra="forbid")

    model: str = "mlp"
    model_params: dict[str, Any] = Field(default_factory=dict)
    strategy: str = "fedavg"
    strategy_params: dict[str, Any] = Field(default_factory=dict)
    rounds: int = Field(10, ge=1, le=10_000)
    local_epochs: int = Field(1, ge=1, le=1_000)
    batch_size: int = Field(32, ge=1, le=100_000)
    lr: float = Field(0.05, gt=0, le=100)
    seed: int = Field(0, ge=0, le=2**31 - 1)
    #: after the run, also train each member on its own data alone (same rounds x epochs,
    #: on its own workers) and show each member its local-only accuracy next to the
    #: federated model's (an extension of the agreed body; off by default)
    compare_local_only: bool = False


class DP(BaseModel):
    """Client-level differential privacy (DP-FedAvg): clip, noise, and an ε budget."""

    model_config = ConfigDict(extra="forbid")

    noise_multiplier: float = Field(ge=0, le=100)
    clip_norm: float = Field(gt=0, le=1e6)
    delta: float = Field(gt=0, lt=1)
    epsilon_budget: float = Field(gt=0, le=1e6)


class Privacy(BaseModel):
    model_config = ConfigDict(extra="forbid")

    secure_aggregation: bool = True
    secagg_threshold: int | None = Field(None, ge=2)
    dp: DP | None = None


class CreateBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    task: Task = Field(default_factory=Task)
    schema_: dict[str, Any] | None = Field(None, alias="schema")
    privacy: Privacy = Field(default_factory=Privacy)
    dataset: str = Field(min_length=1, max_length=255)
    #: platform admins: the tenant the federation is created for
    tenant: str | None = None


def _validate(model: type[BaseModel], body: Any, what: str) -> BaseModel:
    if not isinstance(body, dict):
        raise InvalidRequest(f"the request body must be a JSON object ({what})")
    try:
        return model.model_validate(body)
    except ValidationError as e:
        problems, fields = [], []
        for err in e.errors():
            field = ".".join(str(p) for p in err["loc"]).replace("schema_", "schema") or what
            msg = "unknown field" if err["type"] == "extra_forbidden" else err["msg"]
            problems.append(f"{field}: {msg.removeprefix('Value error, ')}")
            fields.append(field)
        raise InvalidRequest("; ".join(problems), details={"fields": fields}) from None


def parse_create(body: Any) -> CreateBody:
    """A validated creation request, or :class:`InvalidRequest` naming each bad field."""
    spec = _validate(CreateBody, body, "the federation")
    check_task(spec.task)
    return spec


def check_task(task: Task) -> None:
    """Unknown model or strategy, or parameters out of their bounds: a 400 now, not a
    failure minutes later in the runner."""
    from fedhub import fl
    from fedhub.fl.registry import ParameterError

    for field, name, params, registry in (
        ("task.model", task.model, task.model_params, fl.models.registry),
        ("task.strategy", task.strategy, task.strategy_params, fl.strategies.registry),
    ):
        if name.lower() not in registry.names():
            raise InvalidRequest(
                f"{field}: unknown {field.split('.')[1]} {name!r}; known: "
                f"{', '.join(registry.names())}",
                details={"field": field},
            )
        try:
            registry.check(name, params)
        except ParameterError as e:
            raise InvalidRequest(str(e), details={"field": e.field, **e.bound}) from None


def plan_kwargs(task: dict, privacy: dict, schema: dict) -> dict:
    """The :class:`~fedhub.fl.federation.FederationPlan` fields of a stored federation; the
    model's input and output sizes come from the schema every member's data matches (what
    the task says of them is overridden)."""
    model_params = dict(task.get("model_params") or {})
    model_params["in_features"] = len(schema["features"])
    model_params["num_classes"] = int(schema["label"]["num_classes"])
    return {
        "model": task["model"],
        "model_params": model_params,
        "strategy": task["strategy"],
        "strategy_params": dict(task.get("strategy_params") or {}),
        "rounds": task["rounds"],
        "local_epochs": task["local_epochs"],
        "batch_size": task["batch_size"],
        "lr": task["lr"],
        "seed": task["seed"],
        "secure_aggregation": privacy["secure_aggregation"],
        "secagg_threshold": privacy.get("secagg_threshold"),
        "dp": dict(privacy["dp"]) if privacy.get("dp") else None,
    }
