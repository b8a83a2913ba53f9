"""Benchmark 2: fedhub.fl vs Flower's simulation engine (Ray) vs a sequential loop.

The Flower side runs in .venv-flower (created by ``benchmarks/setup_flower_venv.sh``; Flower
and Ray never enter the project's .venv) through ``flwr.simulation.run_simulation`` with
``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``. All three run the same FedAvg workload in the same
invocation. "Until round 1 done" = start-up + first round, for both engines.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from fl_common import command_line, round_stats, save
from fl_overhead import compare

from fedhub import fl

ROOT = Path(__file__).resolve().parents[1]
FLOWER_PY = ROOT / ".venv-flower" / "bin" / "python"


def run_flower(total: int, cpr: int, rounds: int) -> dict | None:
    if not FLOWER_PY.exists():
        print("   Flower venv missing: run benchmarks/setup_flower_venv.sh first")
        return None
    env = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [str(FLOWER_PY), str(Path(__file__).with_name("fl_flower_sim.py")),
         str(total), str(cpr), str(rounds)],
        env=env, capture_output=True, text=True, timeout=1800,
    )  # fmt: skip
    for line in proc.stdout.splitlines():
        if line.startswith("FLOWER_RESULT "):
            return json.loads(line.removeprefix("FLOWER_RESULT "))
    print("   Flower run failed:\n" + proc.stderr[-2000:])
    return None


def main(quick: bool = False) -> dict:
    rounds = 10 if quick else 20
    out = {}
    print(f"== vs Flower: FedAvg Synthetic(1,1), E=1, B=10, {rounds} rounds")
    for total, cpr in [(100, 10), (1000, 100)]:
        data = fl.datasets.synthetic(1.0, 1.0, num_clients=total, seed=0)
        fw = run_flower(total, cpr, rounds)
        cmp = compare(data, rounds, cpr, 1 if quick else 3)
        s, f = cmp["sequential"], cmp["fedhub"]
        fh = f["runs"][0]
        row = {"sequential": s, "fedhub": f}
        fh_first = fh["startup_s"] + fh["per_round"][0]
        line = (
            f"{total:>5}/{cpr:<3} sequential {s['mean_s']:.4f} s/round | fedhub {f['mean_s']:.4f}"
            f" s/round, round 1 done at {fh_first:.1f} s"
        )
        if fw:
            w = round_stats(fw["per_round"])
            fw_first = fw["startup_s"] + fw["per_round"][0]
            row["flower"] = fw | w
            row["speedup_vs_flower"] = w["mean_s"] / f["mean_s"]
            line += (
                f" | Flower {w['mean_s']:.4f} s/round, round 1 done at {fw_first:.1f} s"
                f" | fedhub is {w['mean_s'] / f['mean_s']:.1f}x faster per round"
            )
        print(line)
        out[f"{total}/{cpr}"] = row
    save("fl_flower", out)
    return out


if __name__ == "__main__":
    command_line(main, __doc__)
