"""Run every fedhub benchmark, one after another (``make bench``).

Each benchmark measures fedhub and its baseline in the same run and prints the
ratio; the figures and the commands are recorded in docs/benchmarks.md. Pass
``--quick`` for smaller sizes (a smoke run, not figures to record).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def commands(quick: bool) -> list[list[str]]:
    py = sys.executable
    if quick:
        return [
            [
                py,
                str(HERE / "spawn_overhead.py"),
                "--spawns",
                "1",
                "--tenants",
                "100",
                "--users",
                "1000",
                "--samples",
                "100",
            ],
            [py, str(HERE / "audit_ingest.py"), "--append", "5000", "--verify", "20000"],
            [py, str(HERE / "billing_ingest.py"), "--events", "5000", "--tenants", "20"],
            [py, str(HERE / "run_fl.py"), "--quick"],
            [py, str(HERE / "fl_federation.py"), "--quick"],
            [py, str(HERE / "rate_limit.py"), "--tenants", "50", "--requests", "300"],
            [py, str(HERE / "load.py"), "--duration", "20", "--users", "100", "--tenants", "10"],
            [py, str(HERE / "marketplace_search.py"), "--engine", "sqlite", "--assets", "1000"],
            [py, str(HERE / "marketplace_strategy.py"), "--pairs", "1", "--rounds", "5"],
        ]
    return [
        [py, str(HERE / "spawn_overhead.py"), "--spawns", "4"],
        [py, str(HERE / "audit_ingest.py")],
        [py, str(HERE / "billing_ingest.py")],
        [py, str(HERE / "run_fl.py")],
        [py, str(HERE / "fl_federation.py")],
        [py, str(HERE / "rate_limit.py")],
        [py, str(HERE / "load.py")],
        [py, str(HERE / "marketplace_search.py")],
        [py, str(HERE / "marketplace_strategy.py")],
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    args = parser.parse_args()
    failed = []
    for cmd in commands(args.quick):
        name = Path(cmd[1]).name
        print(f"\n=== {name} ===", flush=True)
        started = time.monotonic()
        if subprocess.run(cmd, cwd=HERE.parent).returncode != 0:
            failed.append(name)
        print(f"=== {name}: {time.monotonic() - started:.0f} s ===", flush=True)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
