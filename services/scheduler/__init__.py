"""The scheduler service: notebooks that run on a schedule as their owner (docs/reports.md).

``fedhub up`` picks it up through :func:`service_spec`. :func:`extra_config` gives the
service its hub role (``tokens``: it asks the hub for a short-lived token of a run's owner,
fedhub.services.scheduler.tokens) and tells user servers where it is
(``FEDHUB_SCHEDULER_URL``, read by ``fedhub.client.scheduler``).
"""

from __future__ import annotations

from fedhub.service import managed_service

NAME = "scheduler"
ROLE = {
    "name": "scheduler-service",
    "description": "the scheduler makes a short-lived token for each run of a user's job",
    "scopes": ["tokens"],
    "services": [NAME],
}
_specs: dict[tuple[str, int], dict] = {}


def service_spec(ctx) -> dict:
    key = (str(ctx.state_dir), ctx.port)
    if key not in _specs:
        spec = managed_service(NAME, "fedhub.services.scheduler", ctx)
        spec["environment"]["FEDHUB_SCHEDULER_URL"] = f"{spec['url']}/services/{NAME}/"
        _specs[key] = spec
    return _specs[key]


def extra_config(ctx, c) -> None:
    c.JupyterHub.load_roles = [*c.JupyterHub.get("load_roles", []), ROLE]
    c.Spawner.environment.update(
        {"FEDHUB_SCHEDULER_URL": service_spec(ctx)["environment"]["FEDHUB_SCHEDULER_URL"]}
    )
