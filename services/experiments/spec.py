"""The experiment spec a notebook submits, validated before anything is queued.

Bounds are declared here (first layer), the tier's limits are checked against them when
the run is reserved (second layer, :mod:`.quota`), and the runner builds the engine's
objects from the validated spec only (third layer: nothing from the request reaches
``fedhub.fl`` unchecked). Every message names the field that is wrong.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from fedhub.errors import InvalidRequest

#: Models that fit each dataset when the spec names none.
DEFAULT_MODEL = {"sbm": "gcn"}


class ExperimentSpec(BaseModel):
    """What to train, where the data comes from and how the rounds go."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field("", max_length=200)
    dataset: str = "synthetic"
    dataset_params: dict[str, Any] = Field(default_factory=dict)
    partition: str | None = None
    partition_params: dict[str, Any] = Field(default_factory=dict)
    model: str | None = None
    model_params: dict[str, Any] = Field(default_factory=dict)
    strategy: str = "fedavg"
    strategy_params: dict[str, Any] = Field(default_factory=dict)
    rounds: int = Field(10, ge=1, le=10_000)
    clients: int = Field(10, ge=1, le=100_000)
    clients_per_round: int | None = Field(None, ge=1)
    local_epochs: int = Field(1, ge=1, le=1_000)
    batch_size: int | None = Field(10, ge=1)
    lr: float = Field(0.01, gt=0, le=100)
    stragglers: float = Field(0.0, ge=0, le=1)
    straggler_policy: Literal["drop", "partial"] = "drop"
    seed: int = Field(0, ge=0, le=2**31 - 1)

    @model_validator(mode="after")
    def _check(self) -> ExperimentSpec:
        if self.clients_per_round is None:
            self.clients_per_round = min(10, self.clients)
        if self.clients_per_round > self.clients:
            raise ValueError(
                f"clients_per_round ({self.clients_per_round}) must not exceed clients"
                f" ({self.clients})"
            )
        for key in ("num_clients", "seed"):
            if key in self.dataset_params:
                raise ValueError(
                    f"dataset_params.{key}: set it with the top-level field"
                    f" '{'clients' if key == 'num_clients' else key}'"
                )
        return self


def check_names(spec: ExperimentSpec) -> None:
    """Unknown registry names fail at submission, not minutes later in the runner."""
    from fedhub import fl

    checks = [
        ("dataset", spec.dataset, fl.datasets.registry),
        ("strategy", spec.strategy, fl.strategies.registry),
        ("model", spec.model, fl.models.registry),
        ("partition", spec.partition, fl.partition.registry),
    ]
    for field, value, registry in checks:
        if value is not None and value.lower() not in registry.names():
            raise InvalidRequest(
                f"{field}: unknown {field} {value!r}; known: {', '.join(registry.names())}",
                details={"field": field},
            )
    if spec.partition is not None:
        import inspect

        dataset_fn = fl.datasets.registry.constructor(spec.dataset)
        if "partition" not in inspect.signature(dataset_fn).parameters:
            raise InvalidRequest(
                f"partition: dataset {spec.dataset!r} comes already split into clients",
                details={"field": "partition"},
            )
    try:
        fl.strategies.get(spec.strategy, **spec.strategy_params)
    except (TypeError, ValueError) as e:
        raise InvalidRequest(
            f"strategy_params: {e}", details={"field": "strategy_params"}
        ) from None


def parse_spec(body: Any) -> ExperimentSpec:
    """A validated spec, or :class:`InvalidRequest` naming each bad field."""
    if not isinstance(body, dict):
        raise InvalidRequest("the request body must be a JSON object (the experiment spec)")
    try:
        spec = ExperimentSpec.model_validate(body)
    except ValidationError as e:
        problems, fields = [], []
        for err in e.errors():
            field = ".".join(str(p) for p in err["loc"]) or "spec"
            msg = "unknown field" if err["type"] == "extra_forbidden" else err["msg"]
            msg = msg.removeprefix("Value error, ")
            problems.append(f"{field}: {msg}" if field != "spec" else msg)
            fields.append(field)
        raise InvalidRequest("; ".join(problems), details={"fields": fields}) from None
    check_names(spec)
    return spec
