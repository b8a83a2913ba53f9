"""The tutorial notebook runs top to bottom (papermill, real kernel, real LocalCluster)."""

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
NOTEBOOK = REPO / "notebooks" / "tutorials" / "federated-learning.ipynb"


@pytest.mark.slow
def test_tutorial_notebook_executes(tmp_path, monkeypatch):
    import papermill

    monkeypatch.setenv("PYTHONPATH", str(REPO))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    out = tmp_path / "out.ipynb"
    papermill.execute_notebook(
        str(NOTEBOOK),
        str(out),
        parameters={"rounds": 8, "num_clients": 12},
        kernel_name="python3",
        cwd=str(tmp_path),
        progress_bar=False,
    )
    text = out.read_text()
    assert "FedProx mu=1, partial work" in text
    assert "identical to the uninterrupted run" in text
