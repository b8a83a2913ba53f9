"""benchmarks/load.py runs end to end for a few seconds: every endpoint answered, 0 errors.

The load test starts its own PostgreSQL, a fedhub hub with its services and a plain
JupyterHub; this runs it at a size that fits the suite's budget and reads back the JSON
it writes and the table it prints.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


def test_load_benchmark_runs_with_no_errors(tmp_path):
    out = tmp_path / "load.json"
    cmd = [
        sys.executable, str(ROOT / "benchmarks" / "load.py"),
        "--duration", "3", "--slice", "1.5", "--compare-slice", "0.75",
        "--users", "20", "--tenants", "4", "--concurrency", "8", "--output", str(out),
    ]  # fmt: skip
    run = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=150)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["errors"] == 0, report["error_samples"]
    mix = report["phases"]["mix"]
    # every endpoint of the mix was called and timed (each client goes through all of them
    # first; the cancel follows each submission)
    assert set(mix) == {
        "GET /hub/api/users",
        "GET /hub/api/user",
        "GET experiments/quota",
        "GET experiments (list)",
        "POST experiments (submit)",
        "POST experiments/<id>/cancel",
        "GET billing/usage",
        "GET audit/events",
    }, sorted(mix)
    assert (
        mix["POST experiments (submit)"]["requests"]
        == mix["POST experiments/<id>/cancel"]["requests"]
    )
    for label, row in mix.items():
        assert row["requests"] > 0 and row["errors"] == 0, (label, row)
        assert 0 < row["p50_ms"] <= row["p99_ms"], (label, row)
    # both hubs answered the same hub API workload, and the ratios are computed from them
    for label in ("GET /hub/api/users", "GET /hub/api/user"):
        overhead = report["overhead"][label]
        assert overhead["fedhub"]["requests"] > 0 and overhead["plain"]["requests"] > 0
        assert overhead["p50_ratio"] == pytest.approx(
            overhead["fedhub"]["p50_ms"] / overhead["plain"]["p50_ms"], abs=0.001
        )
    # the printed table has a row per endpoint and the overhead rows
    assert "| GET audit/events |" in run.stdout
    assert "errors in all phases: 0" in run.stdout
    assert run.stdout.count("| GET /hub/api/user ") == 2
