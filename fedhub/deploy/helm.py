"""Helm values of a Kubernetes deployment, made from the tiers (never kept by hand).

:func:`values` is what fedhub adds to the Zero to JupyterHub chart (z2jh 4.x):

- ``hub``: the fedhub hub image, PostgreSQL, fedhub's configuration file and the tiers
  file mounted into the hub pod (``hub.extraFiles``) and loaded by ``hub.extraConfig``,
  the tier spawner over KubeSpawner and fedhub's scopes (``hub.config``), fedhub's
  services (``hub.services``: every package under ``fedhub.services`` that the embedded
  ``fedhub up`` starts, found the same way, :func:`fedhub.launcher.service_modules`),
  their ports on the hub's Service and in the network policies;
- ``singleuser``: the user image, a ``profileList`` with one entry per profile of the tiers
  (limits, guarantees, GPUs, image, node selector: the same mapping the tier layer applies,
  :mod:`fedhub.extensions.hub.spawner.kubernetes`), a PersistentVolumeClaim per user whose
  size the tier layer sets from the tier's ``storage_gb``;
- ``cull``: off, because the tier spawner culls by each tier's ``idle_timeout_minutes``.

:func:`dask_gateway_values` is the dask-gateway chart's part: JupyterHub authentication
with the token the z2jh chart generates for the ``dask-gateway`` service, the user image
for schedulers and workers, and workers as large as the largest profile.

Site values (host name, TLS, OIDC provider, image registry, database host) go in a second
values file given after this one (``helm upgrade -f values.yaml -f site.yaml``); secrets in
Kubernetes Secrets. ``docs/deploy-kubernetes.md`` walks through both.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import yaml

from fedhub import __version__
from fedhub.extensions.hub.spawner import kubernetes
from fedhub.launcher import LaunchContext, service_modules
from fedhub.tenancy import scopes
from fedhub.tiers import TierCatalog

#: where fedhub's files live in the hub pod
CONFIG_DIR = "/etc/fedhub"
CONFIG_FILE = f"{CONFIG_DIR}/fedhub_config.py"
TIERS_FILE = f"{CONFIG_DIR}/tiers.yaml"
SECRETS_DIR = f"{CONFIG_DIR}/secrets"
STATE_DIR = "/srv/fedhub"
#: the Secret an operator makes (docs/deploy-kubernetes.md): pgpass, oauth-client-secret, smtp-password
SECRET_NAME = "fedhub-secrets"
#: the PersistentVolumeClaim of the hub's state (audit keys and checkpoints, events spool,
#: experiment checkpoints, the TOTP key), made by deploy/kubernetes/fedhub-state.yaml
STATE_CLAIM = "fedhub-state"
#: the database: the hub's and fedhub's tables in one PostgreSQL database; the password
#: comes from the pgpass file of the Secret, never from these values
DB_URL = "postgresql+psycopg://fedhub@fedhub-postgresql:5432/fedhub"
FIRST_SERVICE_PORT = 10101
IMAGE_REPOSITORY = "registry.example.org/fedhub"
#: labels z2jh puts on the pods that may talk to the hub (proxy, user servers)
HUB_ACCESS_LABEL = {"hub.jupyter.org/network-access-hub": "true"}
HUB_POD_LABELS = {"app.kubernetes.io/component": "hub"}
HOME = "/home/jovyan"
#: the dask-gateway chart's traefik (release "dask-gateway"): its Service and its pods' ports
GATEWAY_SERVICE = "traefik-dask-gateway"
GATEWAY_PREFIX = "/services/dask-gateway"
GATEWAY_ADDRESS = f"http://{GATEWAY_SERVICE}{GATEWAY_PREFIX}"
GATEWAY_POD_LABELS = {
    "app.kubernetes.io/name": "dask-gateway",
    "app.kubernetes.io/component": "traefik",
}
GATEWAY_PORTS = [{"port": 8000, "protocol": "TCP"}, {"port": 8786, "protocol": "TCP"}]
#: the gateway's own pod checks users' tokens with the hub's API (port 8081)
GATEWAY_API_POD_LABELS = {
    "app.kubernetes.io/name": "dask-gateway",
    "app.kubernetes.io/component": "gateway",
}
#: what makes ``dask_gateway.Gateway()`` work with no arguments in a user's server
GATEWAY_ENV = {
    "DASK_GATEWAY__ADDRESS": GATEWAY_ADDRESS,
    "DASK_GATEWAY__PROXY_ADDRESS": f"gateway://{GATEWAY_SERVICE}:80",
    "DASK_GATEWAY__PUBLIC_ADDRESS": f"{GATEWAY_PREFIX}/",
    "DASK_GATEWAY__AUTH__TYPE": "jupyterhub",
}


def profile_list(catalog: TierCatalog, guarantee_fraction: float = 0.5) -> list[dict[str, Any]]:
    """KubeSpawner's ``profile_list``: one entry per profile, its slug the profile's name.

    The tier spawner shows its own form (only the tier's profiles) and has KubeSpawner
    apply the entry of the profile it validated, then sets the tier's values again, so
    this list can add per-profile settings (tolerations, affinity) but not widen a tier.
    """
    entries = []
    for name, profile in catalog.profiles.items():
        tiers = [t for t, spec in catalog.tiers.items() if name in spec.profiles]
        override = kubernetes.profile_settings(profile, guarantee_fraction)
        override["extra_labels"] = {kubernetes.LABEL_PROFILE: kubernetes.label_value(name)}
        entries.append(
            {
                "slug": name,
                "display_name": profile.display_name,
                "description": f"tiers: {', '.join(tiers) or 'none'}",
                "kubespawner_override": override,
            }
        )
    if entries:
        entries[0]["default"] = True
    return entries


def service_port(index: int) -> int:
    return FIRST_SERVICE_PORT + index


def hub_services() -> dict[str, dict[str, Any]]:
    """``hub.services``: each fedhub service as ``fedhub up`` declares it, in the hub pod.

    The spec comes from the service's own ``service_spec``; what changes on Kubernetes is
    where it listens (``http://hub:<port>``, reached by the proxy and user pods through the
    hub's Service, bound to ``0.0.0.0`` in the pod), its interpreter (``python`` of the
    image) and the environment (the pod's paths; values the spec derives from its URL are
    rewritten; nothing of the machine that runs this generator).
    """
    ctx = LaunchContext(
        state_dir=Path(STATE_DIR), db_url=DB_URL, port=8081, ip="hub", config_file=CONFIG_FILE
    )
    services: dict[str, dict[str, Any]] = {}
    for index, module_name in enumerate(service_modules()):
        spec = importlib.import_module(module_name).service_spec(ctx)
        local_url, url = spec["url"], f"http://hub:{service_port(index)}"
        env = {
            "FEDHUB_DB_URL": DB_URL,
            "FEDHUB_STATE_DIR": STATE_DIR,
            "FEDHUB_CONFIG_FILE": CONFIG_FILE,
            "FEDHUB_SERVICE_BIND_HOST": "0.0.0.0",
            "PGPASSFILE": f"{SECRETS_DIR}/pgpass",
            "PYTHONUNBUFFERED": "1",
        }
        for key, value in spec.get("environment", {}).items():
            if isinstance(value, str) and value.startswith(local_url):
                env[key] = url + value[len(local_url) :]
        services[spec["name"]] = {
            "url": url,
            "command": ["python", *spec["command"][1:]],
            "environment": env,
            "oauth_no_confirm": spec.get("oauth_no_confirm", True),
            "oauth_client_allowed_scopes": list(spec.get("oauth_client_allowed_scopes", [])),
            "display": spec.get("display", True),
        }
    # the dask-gateway chart's gateway, behind the hub's authentication; z2jh generates
    # its token and dask-gateway reads it from z2jh's Secret (dask_gateway_values)
    services["dask-gateway"] = {"url": f"http://{GATEWAY_SERVICE}", "display": False}
    return services


def _extra_config(ctx_services: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """What ``extra_config`` of each service adds to the hub's configuration (roles, env)."""
    from traitlets.config import Config

    ctx = LaunchContext(
        state_dir=Path(STATE_DIR), db_url=DB_URL, port=8081, ip="hub", config_file=CONFIG_FILE
    )
    c = Config()
    c.Spawner.environment = {}
    for module_name in service_modules():
        module = importlib.import_module(module_name)
        if hasattr(module, "extra_config"):
            module.extra_config(ctx, c)
    local = {
        spec["url"]: ctx_services[spec["name"]]["url"]
        for spec in (importlib.import_module(m).service_spec(ctx) for m in service_modules())
    }
    environment = {}
    for key, value in c.Spawner.environment.items():
        for before, after in local.items():
            if isinstance(value, str) and value.startswith(before):
                value = after + value[len(before) :]
        environment[key] = value
    roles = {role["name"]: dict(role) for role in c.JupyterHub.get("load_roles", [])}
    token_scopes = list(c.Spawner.get("server_token_scopes", []))
    return {"environment": environment, "roles": roles, "server_token_scopes": token_scopes}


def _port_rule(services: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {"port": int(s["url"].rsplit(":", 1)[1]), "protocol": "TCP"}
        for s in services.values()
        if s["url"].startswith("http://hub:")
    ]


EXTRA_CONFIG = f'''\
# fedhub: the one configuration file of the hub and every service (hub.extraFiles)
load_subconfig("{CONFIG_FILE}")
'''


def fedhub_config(gateway: bool = True) -> str:
    """The fedhub configuration file of the hub pod (``{CONFIG_FILE}``)."""
    lines = [
        "# fedhub on Kubernetes: the one configuration file of the hub and every service.",
        "# Made by `fedhub deploy helm-values`; site settings go in site values (hub.extraFiles).",
        f'c.Fedhub.tiers_file = "{TIERS_FILE}"',
        f'c.AuditLog.audit_dir = "{STATE_DIR}/audit"',
        f'c.TotpSecretBox.key_file = "{STATE_DIR}/keys/totp.key"',
        "# user servers' volumes are Kubernetes claims sized by the tier; nothing to measure",
        'c.TierSpawner.storage_path_template = ""',
    ]
    if gateway:
        lines += [
            "# experiments run on Dask Gateway (the dask-gateway chart), a cluster per tenant",
            'c.DaskClusters.mode = "gateway"',
            f'c.DaskClusters.gateway_address = "{GATEWAY_ADDRESS}"',
        ]
    return "\n".join(lines) + "\n"


def values(
    catalog: TierCatalog,
    *,
    tiers_text: str | None = None,
    guarantee_fraction: float = 0.5,
    image_repository: str = IMAGE_REPOSITORY,
    tag: str = __version__,
) -> dict[str, Any]:
    """The Zero to JupyterHub chart's values for fedhub with ``catalog``'s tiers."""
    services = hub_services()
    extra = _extra_config(services)
    ports = _port_rule(services)
    to_gateway = {
        "to": [{"podSelector": {"matchLabels": GATEWAY_POD_LABELS}}],
        "ports": GATEWAY_PORTS,
    }
    smallest = next(iter(catalog.profiles.values()))
    if tiers_text is None:
        tiers_text = Path(catalog.source).read_text()
    hub = {
        "image": {"name": f"{image_repository}/hub", "tag": tag},
        "db": {"type": "postgres", "url": DB_URL, "upgrade": True},
        "extraEnv": {
            "FEDHUB_CONFIG_FILE": CONFIG_FILE,
            "FEDHUB_STATE_DIR": STATE_DIR,
            "FEDHUB_DB_URL": DB_URL,
            "PGPASSFILE": f"{SECRETS_DIR}/pgpass",
            "OAUTH_CLIENT_SECRET": {
                "valueFrom": {
                    "secretKeyRef": {
                        "name": SECRET_NAME,
                        "key": "oauth-client-secret",
                        "optional": True,
                    }
                }
            },
            "FEDHUB_SMTP_PASSWORD": {
                "valueFrom": {
                    "secretKeyRef": {"name": SECRET_NAME, "key": "smtp-password", "optional": True}
                }
            },
        },
        "extraFiles": {
            "fedhub-config": {"mountPath": CONFIG_FILE, "stringData": fedhub_config()},
            "fedhub-tiers": {"mountPath": TIERS_FILE, "stringData": tiers_text},
        },
        "extraVolumes": [
            {"name": "fedhub-secrets", "secret": {"secretName": SECRET_NAME, "defaultMode": 0o400}},
            {"name": "fedhub-state", "persistentVolumeClaim": {"claimName": STATE_CLAIM}},
        ],
        "extraVolumeMounts": [
            {"name": "fedhub-secrets", "mountPath": SECRETS_DIR, "readOnly": True},
            {"name": "fedhub-state", "mountPath": STATE_DIR},
        ],
        "extraConfig": {"00-fedhub": EXTRA_CONFIG},
        "config": {
            "JupyterHub": {
                "authenticator_class": "fedhub-oidc",
                "spawner_class": "fedhub-tier",
                "cleanup_servers": False,
                "extra_user_scopes": ["access:services"],
                "custom_scopes": scopes.custom_scopes(),
            },
            "TenantAuthenticatorMixin": {"upgrade_db": True, "mirror_interval": 5.0},
            "TierSpawner": {
                "backend_class": "kubespawner.KubeSpawner",
                "guarantee_fraction": guarantee_fraction,
                "install_kernels": False,
            },
            "Spawner": {"server_token_scopes": extra["server_token_scopes"]},
        },
        "services": services,
        "loadRoles": extra["roles"],
        "service": {
            "extraPorts": [
                {"name": f"fedhub-{i}", "port": p["port"], "targetPort": p["port"]}
                for i, p in enumerate(ports)
            ]
        },
        "networkPolicy": {
            "ingress": [
                {"from": [{"podSelector": {"matchLabels": HUB_ACCESS_LABEL}}], "ports": ports},
                {
                    "from": [{"podSelector": {"matchLabels": GATEWAY_API_POD_LABELS}}],
                    "ports": [{"port": 8081, "protocol": "TCP"}],
                },
            ],
            "egress": [to_gateway],
        },
    }
    singleuser = {
        "image": {"name": f"{image_repository}/user", "tag": tag},
        "defaultUrl": "/lab",
        "cpu": {
            "limit": float(smallest.cpu),
            "guarantee": float(smallest.cpu) * guarantee_fraction,
        },
        "memory": {
            "limit": f"{smallest.memory_gb:g}G",
            "guarantee": f"{smallest.memory_gb * guarantee_fraction:g}G",
        },
        "profileList": profile_list(catalog, guarantee_fraction),
        "storage": {
            "type": "dynamic",
            "capacity": kubernetes.quantity_gi(min(t.storage_gb for t in catalog.tiers.values())),
            "homeMountPath": HOME,
            "dynamic": {"storageAccessModes": ["ReadWriteOnce"]},
        },
        "extraEnv": {**extra["environment"], **GATEWAY_ENV},
        "networkPolicy": {
            "egress": [
                {"to": [{"podSelector": {"matchLabels": HUB_POD_LABELS}}], "ports": ports},
                to_gateway,
            ]
        },
    }
    proxy = {
        "chp": {
            "networkPolicy": {
                "egress": [
                    {"to": [{"podSelector": {"matchLabels": HUB_POD_LABELS}}], "ports": ports},
                    to_gateway,
                ]
            }
        }
    }
    return {"hub": hub, "singleuser": singleuser, "proxy": proxy, "cull": {"enabled": False}}


def dask_gateway_values(
    catalog: TierCatalog,
    *,
    image_repository: str = IMAGE_REPOSITORY,
    tag: str = __version__,
) -> dict[str, Any]:
    """The dask-gateway chart's values: JupyterHub auth, fedhub's user image, worker sizes.

    Schedulers and workers run the user image (the same Python, torch and fedhub as the
    notebook that made the cluster). Workers are as large as the largest tier's
    ``gateway_worker_cores`` and ``gateway_worker_memory_gb``, and ``c.ClusterConfig``
    caps a cluster at the largest tier's ``gateway_max_workers``: a ceiling for everyone.
    Each tenant's own tier limits are enforced by fedhub's gateway backend
    (:mod:`fedhub.gateway`), which runs over dask-gateway's local backend, not yet over
    its Kubernetes backend (docs/deploy-kubernetes.md says what that leaves open).
    """
    tiers = list(catalog.tiers.values())
    cores = max(t.gateway_worker_cores for t in tiers)
    memory = max(t.gateway_worker_memory_gb for t in tiers)
    max_workers = max(t.gateway_max_workers for t in tiers)
    idle = max(t.idle_timeout_minutes for t in tiers) * 60
    ceilings = "\n".join(
        [
            "# fedhub: the largest tier's limits, a ceiling for every cluster",
            f"c.ClusterConfig.cluster_max_workers = {max_workers}",
            f"c.ClusterConfig.cluster_max_cores = {max_workers * cores}",
            f'c.ClusterConfig.cluster_max_memory = "{max_workers * memory:g} G"',
            f"c.ClusterConfig.idle_timeout = {idle}",
        ]
    )
    return {
        "gateway": {
            "prefix": GATEWAY_PREFIX,
            "auth": {
                "type": "jupyterhub",
                "jupyterhub": {
                    # the token z2jh generated for hub.services.dask-gateway (same namespace)
                    "apiTokenFromSecretName": "hub",
                    "apiTokenFromSecretKey": "hub.services.dask-gateway.apiToken",
                    "apiUrl": "http://hub:8081/hub/api",
                },
            },
            "backend": {
                "image": {"name": f"{image_repository}/user", "tag": tag},
                "scheduler": {
                    "cores": {"request": 0.5, "limit": 1},
                    "memory": {"request": "1G", "limit": "2G"},
                },
                "worker": {
                    "cores": {"request": cores * 0.5, "limit": cores},
                    "memory": {"request": f"{memory:g}G", "limit": f"{memory:g}G"},
                    "threads": 1,
                },
            },
            "extraConfig": {"00-fedhub-ceilings": ceilings + "\n"},
        },
        "traefik": {"service": {"type": "ClusterIP"}},
    }


HEADER = """\
# {what} for fedhub {version}, made from {source} by
#     fedhub deploy helm-values{flag}
# Do not edit: change the tiers (or fedhub) and regenerate; tests/deploy checks it is current.
# Site settings (host, TLS, OIDC, registry, database host) go in a second values file
# given after this one; docs/deploy-kubernetes.md explains every key.
"""


def render(data: dict[str, Any], *, what: str, source: str, flag: str) -> str:
    """YAML with the header that says where it came from."""
    head = HEADER.format(what=what, version=__version__, source=source, flag=flag)
    return head + yaml.dump(data, Dumper=_NoAliases, sort_keys=False, width=100, allow_unicode=True)


class _NoAliases(yaml.SafeDumper):
    """Every value written out in full: no ``&id001`` anchors for shared lists."""

    def ignore_aliases(self, data):
        return True


def _text(dumper: yaml.SafeDumper, value: str):
    """Multi-line text (configuration files, Python) as a literal block, as written."""
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_NoAliases.add_representer(str, _text)
