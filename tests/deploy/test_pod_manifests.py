"""What a user of each tier gets on Kubernetes: KubeSpawner's pod and PVC manifests.

No cluster: the tier spawner runs its real ``start`` (membership, the atomic reservation
of :mod:`fedhub.quotas` on a real database, the profile and the tier mapped onto
KubeSpawner) over a KubeSpawner whose only replaced part is the Kubernetes API: instead of
sending the pod and the claim, it keeps the manifests KubeSpawner's own
``get_pod_manifest()`` and ``get_pvc_manifest()`` make, after KubeSpawner's own
``load_user_options()`` applied the Helm chart's ``profile_list``. ``kubectl create
--dry-run=client`` then checks each pod manifest against the Kubernetes API types.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from types import SimpleNamespace

import pytest
from kubernetes_asyncio.client import ApiClient
from kubernetes_asyncio.config import kube_config
from kubespawner import KubeSpawner
from traitlets.config import Config

from fedhub import db as fedhub_db
from fedhub.deploy import helm
from fedhub.extensions.hub.spawner import kubernetes
from fedhub.extensions.hub.tier_spawner import TierSpawner
from fedhub.quotas import GIB
from fedhub.tenancy.store import TenantStore
from fedhub.tiers import load_tiers

CATALOG = load_tiers()
API_TOKEN = "fedhub-test-token-d41d8cd98f00b204e9800998ecf8427e"
KUBECTL = shutil.which("kubectl")


class ManifestKubeSpawner(KubeSpawner):
    """KubeSpawner up to the Kubernetes API: its start keeps the manifests it would send.

    The first steps of ``KubeSpawner._start``: apply the user options (the profile list),
    make the claim when ``storage_pvc_ensure`` asks for one, make the pod.
    """

    async def start(self):
        await self.load_user_options()
        self.sent_pvc = self.get_pvc_manifest() if self.storage_pvc_ensure else None
        self.sent_pod = await self.get_pod_manifest()
        return ("10.0.0.7", 8888)


def as_dict(obj) -> dict:
    return ApiClient().sanitize_for_serialization(obj)


KUBECONFIG = """\
apiVersion: v1
kind: Config
clusters: [{name: offline, cluster: {server: "https://127.0.0.1:9"}}]
users: [{name: offline, user: {}}]
contexts: [{name: offline, context: {cluster: offline, user: offline}}]
current-context: offline
"""


@pytest.fixture(scope="module", autouse=True)
def kubeconfig(tmp_path_factory):
    """A kubeconfig naming an API server that is never called (KubeSpawner loads one)."""
    path = tmp_path_factory.mktemp("kube") / "config"
    path.write_text(KUBECONFIG)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(path))
        yield path


@pytest.fixture(scope="module", autouse=True)
async def _kubernetes_clients_closed():
    """KubeSpawner shares one API client per event loop and closes it when JupyterHub stops
    its tasks; with no hub, close them here (no "Unclosed client session" at exit)."""
    yield
    from kubespawner import clients

    for client in list(clients._client_cache.values()):
        await client.api_client.close()
    clients._client_cache.clear()


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    url = f"sqlite:///{tmp_path_factory.mktemp('k8s') / 'fedhub.sqlite'}"
    fedhub_db.upgrade(url)
    store = TenantStore(url)
    for tier in CATALOG.tiers:
        store.create_tenant(f"org-{tier}", tier=tier)
        store.add_user(f"user-{tier}", f"org-{tier}")
    store.create_tenant("big", tier="starter", overrides={"storage_gb": 40})
    store.add_user("big-user", "big")
    yield store
    fedhub_db.dispose_engines()


@pytest.fixture(scope="module")
def values():
    return helm.values(CATALOG)


def make_spawner(store, username: str, profile: str | None, profile_list=()):
    c = Config()
    c.TierSpawner.backend_class = ManifestKubeSpawner
    c.TierSpawner.reconcile_interval = 0
    c.KubeSpawner.image = "fedhub-user:0.1.0"
    c.KubeSpawner.profile_list = list(profile_list)
    user = SimpleNamespace(name=username, id=7, url=f"/user/{username}/", settings={})
    hub = SimpleNamespace(
        public_host="", url="http://hub:8081/hub/", base_url="/", api_url="http://hub:8081/hub/api"
    )
    spawner = TierSpawner(config=c, user=user, hub=hub, _mock=True, api_token=API_TOKEN)
    spawner.__dict__["store"] = store  # the cached property: this test's database
    spawner.user_options = {"profile": profile} if profile else {}
    return spawner


async def spawn(store, username, profile=None, profile_list=()):
    spawner = make_spawner(store, username, profile, profile_list)
    spawner.apply_tier_options(spawner.user_options)
    await spawner.start()
    await spawner.run_post_stop_hook()  # frees the reservation for the next case
    return spawner, as_dict(spawner.sent_pod), as_dict(spawner.sent_pvc)


CASES = [
    (tier, profile)
    for tier, spec in CATALOG.tiers.items()
    for profile in spec.profiles
    if profile in (spec.profiles[0], spec.profiles[-1])
]


@pytest.fixture(autouse=True)
def _state(tmp_path, monkeypatch):
    monkeypatch.setenv("FEDHUB_STATE_DIR", str(tmp_path))


@pytest.mark.parametrize("with_profile_list", [False, True], ids=["tier-only", "helm-profiles"])
@pytest.mark.parametrize("tier, profile", CASES)
async def test_pod_and_claim_of_each_tier(store, values, tier, profile, with_profile_list):
    profile_list = values["singleuser"]["profileList"] if with_profile_list else ()
    spawner, pod, pvc = await spawn(store, f"user-{tier}", profile, profile_list)
    size = CATALOG.profiles[profile]
    container = pod["spec"]["containers"][0]
    resources = container["resources"]
    mem = int(size.memory_gb * GIB)
    # KubeSpawner writes byte counts (numbers); kubectl checks them as quantities below
    assert int(resources["limits"]["memory"]) == mem
    assert int(resources["requests"]["memory"]) == mem // 2
    assert float(resources["limits"]["cpu"]) == size.cpu
    assert float(resources["requests"]["cpu"]) == size.cpu / 2
    if size.gpu:
        assert resources["limits"]["nvidia.com/gpu"] == str(size.gpu)
    else:
        assert "nvidia.com/gpu" not in resources["limits"]
    assert container["image"] == (size.image or "fedhub-user:0.1.0")
    assert (pod["spec"].get("nodeSelector") or {}) == size.node_selector

    labels = pod["metadata"]["labels"]
    assert labels[kubernetes.LABEL_TENANT] == f"org-{tier}"
    assert labels[kubernetes.LABEL_TIER] == tier
    assert labels[kubernetes.LABEL_PROFILE] == profile

    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["FEDHUB_TENANT"] == f"org-{tier}"
    assert env["FEDHUB_TIER"] == tier
    assert env["FEDHUB_PROFILE"] == profile
    assert env["JUPYTERHUB_USER"] == f"user-{tier}"

    # the claim: one per user, the tier's storage, the same tenant labels
    assert (
        pvc["spec"]["resources"]["requests"]["storage"] == f"{CATALOG.tiers[tier].storage_gb:g}Gi"
    )
    assert pvc["metadata"]["labels"][kubernetes.LABEL_TENANT] == f"org-{tier}"
    assert pvc["metadata"]["name"] == spawner.pvc_name
    assert f"user-{tier}" in pvc["metadata"]["name"]

    # the server's token is in its environment (KubeSpawner's way), never in metadata
    for manifest in (pod, pvc):
        metadata = json.dumps(
            {k: manifest["metadata"].get(k) for k in ("labels", "annotations", "name")}
        )
        assert API_TOKEN not in metadata
        assert "token" not in metadata.lower()


async def test_a_tenant_override_sizes_the_claim(store):
    _, _, pvc = await spawn(store, "big-user")
    assert pvc["spec"]["resources"]["requests"]["storage"] == "40Gi"


async def test_the_tier_wins_over_a_stale_profile_list(store):
    stale = [
        {
            "slug": "small",
            "display_name": "old small",
            "kubespawner_override": {"cpu_limit": 64.0, "extra_labels": {"team": "x"}},
        }
    ]
    _, pod, _ = await spawn(store, "user-free", "small", stale)
    assert float(pod["spec"]["containers"][0]["resources"]["limits"]["cpu"]) == 1.0
    # what the list adds (a label here, tolerations in practice) stays
    assert pod["metadata"]["labels"]["team"] == "x"
    # a profile missing from the list: the tier's values alone, no "No such profile" error
    _, pod, _ = await spawn(store, "user-starter", "medium", stale)
    assert float(pod["spec"]["containers"][0]["resources"]["limits"]["cpu"]) == 2.0


async def test_each_start_of_one_server_gets_only_its_own_profile(store):
    """JupyterHub keeps one spawner per server: a gpu start must not leak into the next."""
    spawner = make_spawner(store, "user-enterprise", "gpu")
    sizes = {}
    for profile in ("gpu", "small"):
        spawner.user_options = {"profile": profile}
        spawner.apply_tier_options(spawner.user_options)
        await spawner.start()
        await spawner.run_post_stop_hook()
        sizes[profile] = as_dict(spawner.sent_pod)
    gpu, small = sizes["gpu"], sizes["small"]
    assert gpu["spec"]["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert "nvidia.com/gpu" in gpu["spec"]["containers"][0]["resources"]["limits"]
    assert not small["spec"].get("nodeSelector")
    assert "nvidia.com/gpu" not in small["spec"]["containers"][0]["resources"]["limits"]
    assert small["metadata"]["labels"][kubernetes.LABEL_PROFILE] == "small"


async def test_a_profile_outside_the_tier_is_refused(store):
    from jupyterhub.spawner import SpawnException

    spawner = make_spawner(store, "user-free", "gpu")
    with pytest.raises(SpawnException) as e:
        spawner.apply_tier_options({"profile": "gpu"})
    assert "gpu" in str(e.value).lower()


async def test_the_spawn_form_is_the_tiers_not_the_profile_list(store, values):
    spawner = make_spawner(store, "user-starter", None, values["singleuser"]["profileList"])
    form = spawner.options_form(spawner)
    assert 'value="small"' in form and 'value="medium"' in form
    assert 'value="large"' not in form  # a profile of other tiers, present in the list


def kubectl_decode(path) -> subprocess.CompletedProcess:
    """kubectl reads the file into the Kubernetes API's Go types, with no cluster.

    ``kubectl create --dry-run=client`` needs the API server's discovery even in client
    mode (it fails here with "connection refused"); ``kubectl set env --local --list``
    decodes the objects the same way offline: a wrong type or a malformed quantity
    ("2 GB", a string for a ResourceList) is refused, unknown fields are dropped.
    """
    return subprocess.run(
        [KUBECTL, "set", "env", "--local", "--list", "-f", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed on this machine")
async def test_kubectl_decodes_every_pod_and_claim(store, tmp_path):
    docs = []
    for tier, profile in CASES:
        _, pod, pvc = await spawn(store, f"user-{tier}", profile)
        docs += [pod, pvc]
    for i, doc in enumerate(docs):
        path = tmp_path / f"{i}.json"
        path.write_text(json.dumps(doc))
        out = kubectl_decode(path)
        assert out.returncode == 0, (doc["kind"], out.stderr)
    # the check can fail: a pod with a malformed memory limit, a claim with a bad size
    bad_pod = json.loads(json.dumps(docs[0]))
    bad_pod["spec"]["containers"][0]["resources"]["limits"]["memory"] = "2 GB"
    bad_pvc = json.loads(json.dumps(docs[1]))
    bad_pvc["spec"]["resources"]["requests"] = "5Gi"
    for bad in (bad_pod, bad_pvc):
        path = tmp_path / "bad.json"
        path.write_text(json.dumps(bad))
        out = kubectl_decode(path)
        assert out.returncode != 0 and "unable to decode" in out.stderr, out.stderr
