"""Refresh docs/img/federations-monitor.png and federations-monitor-dp.png from a real run.

    FEDHUB_ACCOUNT_PREFIX=fhdoc- .venv/bin/python docs/img/src/federations_monitor.py

Starts a hub as the tests do (``tests.harness.HubProcess``, demo tenants, free loopback
ports, run as root so members' workers run as their tenants' accounts), then plays the
tutorial (``notebooks/tutorials/federations.ipynb``) through the notebook client: acme's
and globex's admins each register their share of the digits, acme creates a federation
and invites globex, globex joins, acme runs it; then a second federation with differential
privacy, which stops at its ε budget. Each one's ``watch()`` widget is rendered by Voila
(with acme-admin's token) and screenshotted by headless Chromium. It prints what it
measured (rounds, accuracies, ε) and stops everything it started. Set
``FEDHUB_ACCOUNT_PREFIX`` so its Unix accounts are not those of a test run.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))

from tests.browser import CHROMIUM, DOCS_IMG, FLAGS  # noqa: E402
from tests.harness import HubProcess, free_port, wait_for  # noqa: E402

TUTORIAL = ROOT / "notebooks" / "tutorials" / "federations.ipynb"
DP = {"noise_multiplier": 1.0, "clip_norm": 2.0, "delta": 1e-5, "epsilon_budget": 12.5}


def organisation_data():
    """The tutorial's own ``organisation_data`` (its set-up cell), so both stay the same."""
    cells = json.loads(TUTORIAL.read_text())["cells"]
    source = next(
        "".join(c["source"]) for c in cells if "def organisation_data" in "".join(c["source"])
    )
    namespace: dict = {}
    exec(source, namespace)  # noqa: S102 - our own notebook's cell
    return namespace["organisation_data"]


def play(hub: HubProcess) -> tuple[str, str, str]:
    """The tutorial through the client; returns (federation id, DP federation id, token)."""
    import fedhub
    from fedhub import client

    url = f"{hub.url}/services/experiments/"
    tokens = {u: hub.token(u) for u in ("acme-admin", "globex-admin")}

    def as_user(user: str) -> None:
        client.configure(url=url, token=tokens[user])

    as_user("acme-admin")
    wait_for(lambda: fedhub.federations.list() is not None, 120, 0.5, "the service")
    org = organisation_data()
    fedhub.datasets.register("digits", org([0, 1, 2, 3, 4], seed=1), label="digit")
    fed = fedhub.federations.create(
        "digits across acme and globex", dataset="digits", model="mlp",
        model_params={"hidden": 64}, rounds=8, local_epochs=2, lr=0.05,
        compare_local_only=True, invite=["globex"],
    )  # fmt: skip
    as_user("globex-admin")
    fedhub.datasets.register("digits-eu", org([5, 6, 7, 8, 9], seed=2), label="digit")
    fedhub.federations.join(fed.id, dataset="digits-eu")
    as_user("acme-admin")
    started = time.monotonic()
    fed.run()
    print("status:", fed.wait(timeout=900, interval=1), f"({time.monotonic() - started:.1f} s)")
    print(fed.rounds()[["round", "accuracy", "loss", "duration_s"]].to_string(index=False))
    for user in ("acme-admin", "globex-admin"):
        as_user(user)
        mine = fedhub.federations.get(fed.id)
        print(f"{user}: federated {mine.my_metrics()['accuracy'].iloc[-1]:.3f},"
              f" local-only {mine.local_only()['accuracy']:.3f}")  # fmt: skip

    as_user("acme-admin")
    dp = fedhub.federations.create(
        "digits with DP", dataset="digits", model="mlp", model_params={"hidden": 64},
        rounds=15, local_epochs=2, lr=0.05, dp=DP, invite=["globex"],
    )  # fmt: skip
    as_user("globex-admin")
    fedhub.federations.join(dp.id, dataset="digits-eu")
    as_user("acme-admin")
    dp.run()
    print("DP status:", dp.wait(timeout=900, interval=1), "-", dp.info.get("error"))
    print(dp.rounds()[["round", "epsilon", "accuracy"]].to_string(index=False))
    return fed.id, dp.id, tokens["acme-admin"]


def screenshot(folder: Path, url: str, token: str, fed_id: str, name: str) -> None:
    """``fedhub.federations.get(fed_id).watch()`` in Voila, as acme-admin, to docs/img/."""
    import nbformat
    import requests
    from playwright.sync_api import sync_playwright

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        f"import fedhub\nfedhub.federations.get({fed_id!r}).watch()")])  # fmt: skip
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}  # fmt: skip
    path = folder / f"{name}.ipynb"
    nbformat.write(nb, path)
    port = free_port()
    env = dict(os.environ, JUPYTERHUB_API_TOKEN=token, FEDHUB_EXPERIMENTS_URL=url)
    with open(folder / f"{name}.voila.log", "w") as log:
        voila = subprocess.Popen(
            [sys.executable, "-m", "voila", "--no-browser", f"--port={port}",
             "--Voila.ip=127.0.0.1", str(path)],
            env=env, cwd=folder, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        page_url = f"http://127.0.0.1:{port}/"
        wait_for(lambda: requests.get(page_url, timeout=5).ok, 60, 0.5, "Voila")
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
            page = browser.new_page(viewport={"width": 900, "height": 800})
            page.goto(page_url)
            page.wait_for_selector(".fedhub-federation-monitor .fedhub-status", timeout=120_000)
            out = DOCS_IMG / f"{name}.png"
            page.locator(".fedhub-federation-monitor").screenshot(path=str(out))
            browser.close()
        print("wrote", out)
    finally:
        voila.terminate()
        voila.wait(10)


def main() -> None:
    folder = Path(tempfile.mkdtemp(prefix="fedhub-doc-shots-"))
    folder.chmod(0o711)  # user servers' accounts must reach their homes under it
    (folder / "state").mkdir()
    hub = HubProcess(folder / "state", env={"FEDHUB_EXPERIMENTS_WORKERS": "1"},
                     password="Fedhub-docs-password-1")  # fmt: skip
    hub.start()
    try:
        fed_id, dp_id, token = play(hub)
        url = f"{hub.url}/services/experiments/"
        screenshot(folder, url, token, fed_id, "federations-monitor")
        screenshot(folder, url, token, dp_id, "federations-monitor-dp")
    finally:
        hub.stop()
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
