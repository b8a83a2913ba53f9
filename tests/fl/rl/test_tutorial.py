"""The traffic RL tutorial runs top to bottom (papermill, real kernel, SUMO, LocalCluster)."""

import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
NOTEBOOK = REPO / "notebooks" / "tutorials" / "traffic-rl.ipynb"


@pytest.mark.slow
def test_traffic_tutorial_executes(tmp_path, monkeypatch):
    import papermill

    monkeypatch.setenv("PYTHONPATH", str(REPO))
    out = tmp_path / "out.ipynb"
    papermill.execute_notebook(
        str(NOTEBOOK),
        str(out),
        parameters={
            "grid": 2,
            "episode_seconds": 120,
            "districts": 2,
            "rounds": 2,
            "episodes_per_round": 1,
            "eval_seeds": 1,
        },
        kernel_name="python3",
        cwd=str(tmp_path),
        progress_bar=False,
    )
    cells = json.loads(out.read_text())["cells"]
    text = "\n".join(
        "".join(o.get("text", "")) + json.dumps(o.get("data", {}))
        for c in cells
        if c["cell_type"] == "code"
        for o in c.get("outputs", [])
    )
    assert "4 intersections" in text
    for name in ("fixed-time", "max-pressure", "graph-TD3 (federated)"):
        assert f"{name}: mean delay" in text
    assert "2 rounds, 2 clients in the last" in text
    # the network, the rounds and the comparison were drawn
    assert text.count("image/png") >= 3
