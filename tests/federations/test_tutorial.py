"""The federations tutorial, as written, on a real hub: part A in a kernel of acme's admin,
part B in a kernel of globex's admin (two tenants, so papermill's one kernel cannot run it);
then the bundled federations dashboard in globex's admin's kernel.

Each code cell is sent to its part's kernel in the order the notebook tells the two people
to run them; only the two "paste the id here" cells get the id the other kernel printed.
This is the notebook client (``fedhub.datasets``, ``fedhub.federations``, the watch widget)
against the real experiments service, with the real tenants' workers.
"""

from __future__ import annotations

import json
import os
import re

import pytest

from tests.harness import ROOT

pytestmark = pytest.mark.slow

NOTEBOOK = ROOT / "notebooks" / "tutorials" / "federations.ipynb"
DASHBOARD = ROOT / "notebooks" / "dashboards" / "federations.ipynb"
ANSI = re.compile("\x1b\\[[0-9;]*m")


@pytest.fixture(scope="module")
def hub(hub_factory):
    global HUB
    HUB = hub_factory(env={"FEDHUB_EXPERIMENTS_WORKERS": "1"})
    return HUB


HUB = None


def service_tracebacks() -> str:
    """The tracebacks in the hub's log (its services log there): what an "internal error"
    answer hides from the notebook."""
    text = HUB.log() if HUB is not None else ""
    found = [block for block in text.split("Traceback (most recent call last):")[1:]]
    return "\n".join("Traceback:" + block[:3000] for block in found[-3:])


@pytest.fixture(scope="module")
def kernels(hub, tmp_path_factory):
    """One kernel per admin, with their own token, as in their own servers."""
    from jupyter_client.manager import start_new_kernel

    started = {}
    cwd = tmp_path_factory.mktemp("tutorial")
    try:
        for user in ("acme-admin", "globex-admin"):
            env = dict(os.environ, JUPYTERHUB_API_TOKEN=hub.token(user), JUPYTERHUB_USER=user,
                       FEDHUB_EXPERIMENTS_URL=f"{hub.url}/services/experiments/")  # fmt: skip
            started[user] = start_new_kernel(kernel_name="python3", env=env, cwd=str(cwd))
        yield {user: kc for user, (_km, kc) in started.items()}
    finally:
        for km, kc in started.values():
            kc.stop_channels()
            km.shutdown_kernel(now=True)


def cells() -> dict[str, str]:
    """Code cells by the first line of their source."""
    nb = json.loads(NOTEBOOK.read_text())
    return {
        "".join(c["source"]).splitlines()[0]: "".join(c["source"])
        for c in nb["cells"]
        if c["cell_type"] == "code"
    }


def run(kc, code: str, **expressions: str) -> dict[str, str]:
    """Execute ``code``; fail with the traceback if it raises; return the expressions."""
    errors: list[str] = []

    def hook(msg):
        if msg["msg_type"] == "error":
            errors.append(ANSI.sub("", "\n".join(msg["content"]["traceback"])))

    reply = kc.execute_interactive(code, timeout=600, output_hook=hook,
                                   user_expressions=expressions)  # fmt: skip
    assert reply["content"]["status"] == "ok", (
        f"{code[:200]}\n{''.join(errors)}\n{service_tracebacks()}"
    )
    values = reply["content"]["user_expressions"]
    for name, value in values.items():
        assert value["status"] == "ok", f"{expressions[name]}: {value}"
    return {k: v["data"]["text/plain"] for k, v in values.items()}


def test_the_tutorial_runs_in_acme_and_globex_admins_kernels(kernels):
    code = cells()
    a, b = kernels["acme-admin"], kernels["globex-admin"]
    part = {
        "A": [k for k in code if k.startswith(("acme_data", "acme_ds", "fed = "))],
        "B": [k for k in code if k.startswith(("globex_data", "invited", "fedhub.federations.join"))],
        "A again": [k for k in code if k.startswith(("fed.", "mine", "compare(fed)", "import torch"))],
    }  # fmt: skip
    assert len(part["A"]) == 3 and len(part["B"]) == 3 and len(part["A again"]) == 8, part
    setup = next(k for k in code if k.startswith("import os"))
    for kc in (a, b):
        run(kc, code[setup])
    for key in part["A"]:
        run(a, code[key])
    fed_id = run(a, "", id="fed.id")["id"].strip("'")
    run(b, f"federation_id = {fed_id!r}")
    for key in part["B"]:
        run(b, code[key])
    for key in part["A again"]:
        run(a, code[key])
    out = run(a, "", status="fed.info['status']", members="len(fed.members)")
    assert out == {"status": "'finished'", "members": "2"}
    # each admin's comparison is of its own tenant's metrics
    acme = run(a, "table = compare(fed)", own="round(table.iloc[0, 0], 4)")["own"]
    globex = run(b, code[next(k for k in code if k.startswith("joined ="))] + "\ntable = compare(joined)",
                 own="round(table.iloc[0, 0], 4)", local="table.iloc[1, 0] is not None")  # fmt: skip
    assert globex["local"] == "True" and globex["own"] != acme

    # optional part: with DP the federation stops when the next round would pass ε 12.5
    dp_id = run(a, code[next(k for k in code if k.startswith("dp_fed ="))],
                id="dp_fed.id")["id"].strip("'")  # fmt: skip
    join = code[next(k for k in code if k.startswith("dp_federation_id"))].splitlines()[-1]
    run(b, f"dp_federation_id = {dp_id!r}\n{join}")
    for key in ("dp_fed.run()", "dp_fed.wait()"):
        run(a, code[key])
    out = run(a, "", status="dp_fed.info['status']",
              eps="[round(e, 2) for e in dp_fed.rounds()['epsilon']]")  # fmt: skip
    assert out == {"status": "'stopped_budget'", "eps": "[4.73, 7.08, 9.01, 10.73, 12.3]"}


def test_the_federations_dashboard_lists_them_and_follows_the_newest(kernels):
    """notebooks/dashboards/federations.ipynb in globex's admin's kernel, after the tutorial:
    both federations acme made (globex joined them), the newest one followed."""
    nb = json.loads(DASHBOARD.read_text())
    b = kernels["globex-admin"]
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            run(b, "".join(cell["source"]))
    out = run(
        b, "", names="sorted(f.name for f in feds)", owners="sorted({f.owner for f in feds})",
        chosen="chosen.name", budget="chosen.watch().epsilon_label.value",
    )  # fmt: skip
    assert out == {
        "names": "['digits across acme and globex', 'digits with DP']",
        "owners": "['acme']",
        "chosen": "'digits with DP'",
        "budget": "'ε 12.30 of 12.5 (δ = 1e-05)'",
    }
