"""The experiment spec a notebook submits, validated before anything is queued.

Bounds are declared here (first layer), the tier's limits are checked against them when
the run is reserved (second layer, :mod:`.quota`), and the runner builds the engine's
objects from the validated spec only (third layer: nothing from the request reaches
``fedhub.fl`` unchecked). Every message names the field that is wrong.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from fedhub.errors import InvalidRequest

#: "field: ..." or "field.sub: ..." at the start of a cross-field check's message
_NAMED = re.compile(r"^[a-z_]+(\.[a-z_]+)*: ")

#: Models that fit each dataset when the spec names none.
DEFAULT_MODEL = {"sbm": "gcn", "sbm_large": "sage", "road_network": "sage"}

#: Fields that describe supervised FL; a graph_td3 experiment leaves them at their defaults
#: (its data is the simulator, its model the graph actor and critics).
FL_ONLY = ("dataset", "dataset_params", "partition", "partition_params", "model",
           "model_params", "batch_size", "lr", "stragglers", "straggler_policy",
           "init_weights")  # fmt: skip


class TrafficEnvironment(BaseModel):
    """A signalised road grid in SUMO (``fedhub.fl.rl.traffic.TrafficConfig``), bounded so
    that one episode stays a few seconds of simulation on a shared worker. The demand and
    incident seed is the spec's ``seed``."""

    model_config = ConfigDict(extra="forbid")

    name: Literal["traffic-grid"] = "traffic-grid"
    grid: int = Field(4, ge=2, le=8, description="grid x grid intersections")
    length: float = Field(200.0, ge=50, le=1000, description="metres between intersections")
    lanes: int = Field(2, ge=1, le=4, description="lanes per direction")
    episode_seconds: int = Field(900, ge=60, le=3600, description="simulated seconds")
    decision_seconds: int = Field(
        30,
        ge=16,
        le=120,
        description="simulated seconds between two signal decisions (one cycle: at least two "
        "5 s greens and their 3 s yellows)",
    )
    demand: float = Field(0.25, ge=0.01, le=2, description="vehicles per second entering")
    demand_shift: bool = Field(True, description="the main flow changes direction mid-episode")
    incident: bool = Field(True, description="one road blocked for a while each episode")

    @model_validator(mode="before")
    @classmethod
    def _no_seed(cls, data: Any) -> Any:
        if isinstance(data, dict) and "seed" in data:
            raise ValueError("environment.seed: set it with the top-level field 'seed'")
        return data

    @model_validator(mode="after")
    def _check(self) -> TrafficEnvironment:
        if self.decision_seconds > self.episode_seconds:
            raise ValueError(
                f"environment.decision_seconds: {self.decision_seconds} s must not exceed"
                f" environment.episode_seconds ({self.episode_seconds} s)"
            )
        return self


class ExperimentSpec(BaseModel):
    """What to train, where the data comes from and how the rounds go."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field("", max_length=200)
    dataset: str = Field(
        "synthetic",
        max_length=200,
        description="a bundled dataset (synthetic, digits, mnist5k, sbm, sbm_large,"
        " road_network), one of your tenant's own: tenant/<name>@<version>, or a licensed"
        " marketplace dataset: market/<slug>@<version>",
    )
    dataset_params: dict[str, Any] = Field(default_factory=dict)
    partition: str | None = None
    partition_params: dict[str, Any] = Field(default_factory=dict)
    model: str | None = None
    model_params: dict[str, Any] = Field(default_factory=dict)
    init_weights: str | None = Field(
        None,
        max_length=200,
        pattern=r"^market/",
        description="the run's initial weights: a licensed marketplace model, "
        "market/<slug>@<version> (a state dict that fits the run's model)",
    )
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
    algorithm: Literal["fl", "graph_td3"] = Field(
        "fl",
        description="fl: supervised federated learning on 'dataset'; graph_td3: federated "
        "graph-TD3 agents controlling traffic signals in 'environment'",
    )
    environment: TrafficEnvironment | None = Field(
        None, description="graph_td3 only: the simulated road network (default: a 4x4 grid)"
    )
    agents: int | None = Field(
        None,
        ge=1,
        le=10_000,
        description="graph_td3 only (required): agent groups, each a district of the network "
        "trained as one client",
    )

    @model_validator(mode="after")
    def _check(self) -> ExperimentSpec:
        if self.algorithm == "graph_td3":
            self._check_rl()
        else:
            if self.agents is not None:
                raise ValueError(
                    'agents: only graph_td3 experiments have agents (set "algorithm":'
                    " \"graph_td3\"; an FL experiment's are its 'clients')"
                )
            if self.environment is not None:
                raise ValueError(
                    "environment: only graph_td3 experiments run in an environment (set"
                    ' "algorithm": "graph_td3"; an FL experiment trains on its \'dataset\')'
                )
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

    def _check_rl(self) -> None:
        """graph_td3: agents are the clients; FL's data and model fields do not apply."""
        if self.agents is None:
            raise ValueError(
                "agents: a graph_td3 experiment needs 'agents', the number of agent groups"
                " (districts of the network), e.g. 4"
            )
        for field in FL_ONLY:
            if getattr(self, field) != type(self).model_fields[field].get_default(
                call_default_factory=True
            ):
                raise ValueError(
                    f"{field}: a graph_td3 experiment takes none (its data is the simulator"
                    " in 'environment', its model the graph actor and critics)"
                )
        if "clients" in self.model_fields_set and self.clients != self.agents:
            raise ValueError(
                f"clients: a graph_td3 experiment's clients are its agent groups; set"
                f" 'agents' ({self.agents}), not 'clients' ({self.clients})"
            )
        self.clients = self.agents
        if self.environment is None:
            self.environment = TrafficEnvironment()
        intersections = self.environment.grid**2
        if self.agents > intersections:
            raise ValueError(
                f"agents: {self.agents} agent groups cannot split a"
                f" {self.environment.grid}x{self.environment.grid} grid of {intersections}"
                " intersections (environment.grid)"
            )
        if self.clients_per_round is None:
            self.clients_per_round = self.agents


def is_tenant_dataset(spec: ExperimentSpec) -> bool:
    """The spec trains on one of the tenant's own datasets (``tenant/<name>@<version>``)."""
    return spec.dataset.startswith("tenant/")


def is_market(spec: ExperimentSpec) -> bool:
    """The spec's strategy is a marketplace algorithm (``market/<slug>@<version>``; its
    licence is checked by :mod:`.market_refs`, its source runs on the tenant's workers)."""
    return spec.strategy.startswith("market/")


def is_market_dataset(spec: ExperimentSpec) -> bool:
    """The spec trains on a licensed marketplace dataset (``market/<slug>@<version>``; its
    licence is checked by :mod:`.market_refs`, its rows read on the tenant's workers)."""
    return spec.dataset.startswith("market/")


def check_market_dataset(spec: ExperimentSpec) -> None:
    """A marketplace dataset takes no dataset parameters (its columns, label and default
    partition were fixed when it was published)."""
    if spec.dataset_params:
        raise InvalidRequest(
            "dataset_params: a marketplace dataset takes none (its columns and label were "
            "fixed at publish; choose the clients' split with 'partition')",
            details={"field": "dataset_params"},
        )


def check_tenant_dataset(spec: ExperimentSpec) -> None:
    """A tenant dataset's reference is well formed and takes no dataset parameters (its
    existence in the caller's tenant is checked by the handler, which knows the caller)."""
    from fedhub.datasets import DatasetError, DatasetRef

    try:
        DatasetRef.parse(spec.dataset)
    except DatasetError as e:
        raise InvalidRequest(f"dataset: {e}", details={"field": "dataset"}) from None
    if spec.dataset_params:
        raise InvalidRequest(
            "dataset_params: a tenant dataset takes none (its train/test split was made when "
            "it was registered; choose the clients' split with 'partition')",
            details={"field": "dataset_params"},
        )


def check_names(spec: ExperimentSpec) -> None:
    """Unknown registry names fail at submission, not minutes later in the runner."""
    from fedhub import fl

    if spec.algorithm == "graph_td3":
        _check_strategy(spec)
        return
    tenant_dataset = is_tenant_dataset(spec) or is_market_dataset(spec)
    if is_tenant_dataset(spec):
        check_tenant_dataset(spec)
    elif tenant_dataset:
        check_market_dataset(spec)
    checks = [
        ("dataset", None if tenant_dataset else spec.dataset, fl.datasets.registry),
        ("strategy", None if is_market(spec) else spec.strategy, fl.strategies.registry),
        ("model", spec.model, fl.models.registry),
        ("partition", spec.partition, fl.partition.registry),
    ]
    for field, value, registry in checks:
        if value is not None and value.lower() not in registry.names():
            raise InvalidRequest(
                f"{field}: unknown {field} {value!r}; known: {', '.join(registry.names())}",
                details={"field": field},
            )
    if spec.partition is not None and not tenant_dataset:
        import inspect

        dataset_fn = fl.datasets.registry.constructor(spec.dataset)
        if "partition" not in inspect.signature(dataset_fn).parameters:
            raise InvalidRequest(
                f"partition: dataset {spec.dataset!r} comes already split into clients",
                details={"field": "partition"},
            )
    check_params(spec)
    if not tenant_dataset:
        _check_clients_fit_the_graph(spec)


def _check_strategy(spec: ExperimentSpec) -> None:
    """A graph_td3 spec names only a strategy of the engine's registry (and its bounds)."""
    from fedhub import fl
    from fedhub.fl.registry import ParameterError

    if spec.strategy.lower() not in fl.strategies.registry.names():
        raise InvalidRequest(
            f"strategy: unknown strategy {spec.strategy!r};"
            f" known: {', '.join(fl.strategies.registry.names())}",
            details={"field": "strategy"},
        )
    try:
        fl.strategies.registry.check(spec.strategy, spec.strategy_params)
    except ParameterError as e:
        raise InvalidRequest(str(e), details={"field": e.field, **e.bound}) from None


def _check_clients_fit_the_graph(spec: ExperimentSpec) -> None:
    """A graph split over more clients than it has nodes fails at submission (400)."""
    import inspect

    from fedhub import fl

    parameter = inspect.signature(fl.datasets.registry.constructor(spec.dataset)).parameters
    if "num_nodes" not in parameter:
        return
    nodes = spec.dataset_params.get("num_nodes", parameter["num_nodes"].default)
    if isinstance(nodes, int) and spec.clients > nodes:
        raise InvalidRequest(
            f"clients: {spec.clients} clients cannot split a graph of {nodes} nodes "
            "(dataset_params.num_nodes)",
            details={"field": "clients"},
        )


def model_name(spec: ExperimentSpec) -> str:
    """The model the run will build: the spec's, else the one that fits its dataset."""
    return spec.model or DEFAULT_MODEL.get(spec.dataset.lower(), "logistic_regression")


def check_params(spec: ExperimentSpec) -> None:
    """Every registry parameter against the bounds declared beside its constructor.

    Unknown parameters are refused; the error names the field (``model_params.hidden``)
    and carries the bound in ``details``. The engine checks the same table again when it
    builds each object (:meth:`fedhub.fl.registry.Registry.get`).
    """
    from fedhub import fl
    from fedhub.fl.registry import ParameterError

    if "partition" in spec.dataset_params:
        raise InvalidRequest(
            "dataset_params.partition: set it with the top-level fields 'partition' and"
            " 'partition_params'",
            details={"field": "dataset_params.partition"},
        )
    if spec.partition_params and spec.partition is None:
        raise InvalidRequest(
            'partition_params: name the partition too (e.g. "partition": "dirichlet")',
            details={"field": "partition_params"},
        )
    checks = [
        (fl.datasets.registry, spec.dataset, spec.dataset_params),
        (fl.models.registry, model_name(spec), spec.model_params),
        (fl.strategies.registry, spec.strategy, spec.strategy_params),
    ]
    if is_market(spec):  # bounds declared by its source: checked on the tenant's worker
        checks.pop()
    if is_tenant_dataset(spec) or is_market_dataset(spec):
        checks = checks[1:]  # its reference was checked by check_tenant/market_dataset
    if spec.partition is not None:
        checks.append((fl.partition.registry, spec.partition, spec.partition_params))
    for registry, name, params in checks:
        try:
            registry.check(name, params)
        except ParameterError as e:
            raise InvalidRequest(str(e), details={"field": e.field, **e.bound}) from None


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
            if field in ("spec", "environment") and _NAMED.match(msg):
                # a cross-field check's message starts with the field it blames
                field, msg = msg.split(": ", 1)
            problems.append(f"{field}: {msg}" if field != "spec" else msg)
            fields.append(field)
        raise InvalidRequest("; ".join(problems), details={"fields": fields}) from None
    check_names(spec)
    return spec
