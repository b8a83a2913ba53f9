"""schemathesis against every service's served OpenAPI document, on one real hub.

Each operation of each service is called with generated requests, both what the document
allows and what it does not, with the token of every fedhub role in two tenants and of the
platform admin; operations on a record are also called on a seeded record of each tenant.
Every answer must be no 5xx, have a documented status and content type, and match its
schema. The examples are derandomized, so a run is reproducible; every failure is
collected and reported with its curl command (docs/api.md).
"""

from __future__ import annotations

import itertools
import os

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.errors import FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from fedhub.launcher import service_modules
from fedhub.tenancy import scopes
from fedhub.tenancy.models import Role
from tests.access.conftest import PEOPLE, make_key, new_service_account, seed_records
from tests.harness import wait_for

pytestmark = pytest.mark.slow

#: every managed service `fedhub up` runs (each serves its OpenAPI description)
SERVICES = tuple(module.rsplit(".", 1)[1] for module in service_modules())
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
#: generated requests per operation, caller and mode: ~2 minutes for the three services here
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", 8))
#: requests the document allows, and requests it does not (never a 5xx either)
MODES = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
#: one token per caller: the platform admin, and every role in each of two tenants
TENANTS = ("acme", "globex")
PEOPLE_ROLES = (Role.TENANT_ADMIN, Role.MEMBER, Role.ANALYST)
#: path parameters that name a seeded record of a tenant (else generated ids all miss)
RECORD_PARAMETERS = {"invoice_id": "invoice", "exp_id": "experiment"}


@pytest.fixture(scope="module")
def fuzz_hub(hub_factory):
    """A hub of its own: the fuzzing issues credit notes, sets budgets and submits
    experiments, which the package's shared hub (``access_hub``) must not see."""
    hub = hub_factory(
        env={"FEDHUB_EXPERIMENTS_WORKERS": "1", "FEDHUB_EXPERIMENTS_MAX_RUNNING": "1"}
    )
    analyst = ["gina", "--tenant", "globex", "--role", "analyst", "--password", hub.password]
    hub.fedhub("user", "add", *analyst)  # the demo has no analyst in globex
    for service in SERVICES:
        wait_for(
            lambda s=service: hub.api("GET", spec_path(s)).status_code == 200,
            120,
            0.3,
            f"the {service} service's OpenAPI document",
        )
    hub.records = seed_records(hub)
    return hub


@pytest.fixture(scope="module")
def callers(fuzz_hub) -> dict[str, str]:
    """label -> token: people log in; a service account's key comes from the
    keys API, made by its tenant admin with every scope of the role."""
    out = {"platform-admin": fuzz_hub.token("admin")}
    every_scope = sorted(scopes.scope(p) for p in scopes.ROLE_PERMISSIONS[Role.SERVICE_ACCOUNT])
    for tenant in TENANTS:
        for role in PEOPLE_ROLES:
            out[f"{tenant} {role}"] = fuzz_hub.token(PEOPLE[role][tenant])
        account = new_service_account(fuzz_hub, tenant)
        key = make_key(fuzz_hub, PEOPLE[Role.TENANT_ADMIN][tenant], account, every_scope)
        out[f"{tenant} {Role.SERVICE_ACCOUNT}"] = key["token"]
    return out


def spec_path(service: str) -> str:
    return f"/services/{service}/api/v1/openapi.json"


def generated_cases(operation, mode, **path) -> list:
    """The operation's generated requests in ``mode``; ``path`` fixes path parameters (a
    seeded record's id) instead of generating them.

    Derandomized, they are the same whoever sends them: drawn once and sent with every
    caller's token (drawing them again for each of the nine callers was most of the
    test's time, the hub idle meanwhile).
    """
    cases = []

    @given(case=operation.as_strategy(generation_mode=mode, path_parameters=path or None))
    @settings(
        max_examples=EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def draw(case):
        cases.append(case)

    try:
        draw()
    except Unsatisfiable:
        # negative mode and nothing to get wrong (no parameters, no body): no request
        assert mode == GenerationMode.NEGATIVE, f"{operation.label}: no request generated"
    return cases


def send(operation, cases, base_url: str, token: str, failures: list[str]) -> int:
    """Send each case with ``token``; failures are collected (the run reports them all)."""
    headers = {"Authorization": f"token {token}"}
    for generated in cases:
        case = generated.derive(keep_auth=True)  # a copy of its own for each caller
        try:
            case.call_and_validate(base_url=base_url, headers=headers, checks=CHECKS, timeout=60)
        except (FailureGroup, AssertionError) as e:
            failures.append(f"{operation.label}: {e}")
    return len(cases)


@pytest.mark.parametrize("service", SERVICES)
def test_every_operation_answers_every_role_within_its_schema(fuzz_hub, callers, service):
    schema = schemathesis.openapi.from_url(f"{fuzz_hub.url}{spec_path(service)}")
    base_url = f"{fuzz_hub.url}/services/{service}"
    failures: list[str] = []
    calls = 0
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 5  # every service describes its API (tests/access/test_openapi.py)
    for operation in operations:
        # per mode: the generated requests, then valid ones once more on records that
        # exist (each tenant's seeded one)
        batches = {mode: [generated_cases(operation, mode)] for mode in MODES}
        for owner in TENANTS if seeded(operation) else ():
            path = {p: fuzz_hub.records[owner][RECORD_PARAMETERS[p]] for p in seeded(operation)}
            batches[GenerationMode.POSITIVE].append(
                generated_cases(operation, GenerationMode.POSITIVE, **path)
            )
        for (label, token), mode in itertools.product(callers.items(), MODES):
            before = len(failures)
            for cases in batches[mode]:
                calls += send(operation, cases, base_url, token, failures)
            failures[before:] = [f"[{label}] {f}" for f in failures[before:]]
    assert calls >= len(operations) * len(callers)
    assert not failures, f"{len(failures)} of {calls} calls failed:\n" + "\n".join(failures)


def seeded(operation) -> list[str]:
    """The operation's path parameters that name a seeded record."""
    names = [p.name for p in operation.path_parameters]
    return [n for n in names if n in RECORD_PARAMETERS]


def test_every_service_that_describes_its_api_is_fuzzed(fuzz_hub, callers):
    """The services fuzzed are the hub's, each with its description."""
    r = fuzz_hub.api("GET", "/hub/api/services", callers["platform-admin"])
    assert r.status_code == 200, r.text
    described = {s for s in r.json() if fuzz_hub.api("GET", spec_path(s)).status_code == 200}
    assert described == set(SERVICES)
