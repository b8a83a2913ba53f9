"""Run the five FL benchmarks in one go: ``.venv/bin/python benchmarks/run_fl.py [--quick]``.

Figures go to stdout and to benchmarks/results/fl_*.json. The Flower comparison needs
``bash benchmarks/setup_flower_venv.sh`` once (it creates .venv-flower).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import fl_fedavg_mnist  # noqa: E402
import fl_fedprox  # noqa: E402
import fl_flower  # noqa: E402
import fl_overhead  # noqa: E402
import fl_scaling  # noqa: E402

BENCHMARKS = {
    "overhead": fl_overhead,
    "flower": fl_flower,
    "scaling": fl_scaling,
    "fedprox": fl_fedprox,
    "fedavg_mnist": fl_fedavg_mnist,
}

if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--quick", action="store_true", help="fewer rounds and seeds")
    p.add_argument("--only", nargs="*", choices=sorted(BENCHMARKS), help="run a subset")
    args = p.parse_args()
    logging.getLogger("distributed").setLevel(logging.WARNING)
    for name in args.only or BENCHMARKS:
        t0 = time.perf_counter()
        BENCHMARKS[name].main(args.quick)
        print(f"[{name}: {time.perf_counter() - t0:.0f} s]\n", flush=True)
