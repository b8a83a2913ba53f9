"""The import contracts of docs/architecture.md ("Dependency rules") hold.

``tools/lint_imports.py`` runs import-linter on ``.importlinter``; these tests run it the way
``make test`` does, check that its graph really holds the packages that live in other folders
(a contract about a package the graph lacks passes without checking anything), and check
the one rule import-linter cannot see: the notebook client loads no widget code until a
notebook asks for a widget.
"""

from __future__ import annotations

import json
import runpy
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "tools" / "lint_imports.py"


def test_import_contracts_are_kept():
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--no-logo"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout, done.stdout


def test_the_graph_holds_the_extensions_and_the_services():
    import grimp

    runpy.run_path(str(SCRIPT))["use_package_dirs"]()
    graph = grimp.build_graph("fedhub", cache_dir=None)
    assert "fedhub.extensions.hub.tier_spawner" in graph.modules
    assert "fedhub.services.billing.app" in graph.modules
    # an import from the composition root into a plug-in is seen, so one from the core would be
    assert graph.direct_import_exists(
        importer="fedhub.cli.doctor", imported="fedhub.extensions.hub.spawner.limits"
    )


def test_the_notebook_client_loads_no_widget_code():
    """Experiment.watch() imports the widgets when called; importing the client does not."""
    code = (
        "import json, sys\n"
        "import fedhub.client, fedhub.client.experiments\n"
        "print(json.dumps(sorted(m for m in sys.modules"
        " if m.startswith(('fedhub.extensions', 'ipywidgets')))))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == []
