"""Print the FL benchmark figures from benchmarks/results/fl_*.json as Markdown tables
(pasted into docs/benchmarks.md): ``.venv/bin/python benchmarks/fl_report.py``."""

from __future__ import annotations

import json
import statistics
from collections.abc import Iterable

from fl_common import RESULTS


def load(name):
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def table(headers: list[str], rows: Iterable[list]) -> None:
    """One Markdown table, as docs/benchmarks.md shows the figures."""
    print("| " + " | ".join(headers) + " |")
    print("|" + "---|" * len(headers))
    for row in rows:
        print("| " + " | ".join(str(cell) for cell in row) + " |")


def runs(results: dict) -> list[tuple[str, dict]]:
    """A results file's runs, without its load-average entry."""
    return [(k, r) for k, r in results.items() if k != "loadavg_at_end"]


def overhead_rows(ov: dict):
    for k, r in runs(ov):
        f = r["fedhub"]
        yield [
            k,
            f"{r['sequential']['mean_s']:.4f}",
            f"{f['mean_s']:.4f}",
            f"{r['ratio']:.2f}x",
            f"{f['startup_s']:.2f} s / {f['startup_warm_s']:.2f} s",
        ]


def flower_rows(fw: dict):
    for k, r in runs(fw):
        f, s = r["fedhub"], r["sequential"]
        row = [k, f"{s['mean_s']:.4f}", f"{f['mean_s']:.4f}"]
        if "flower" in r:
            w = r["flower"]
            first = f["runs"][0]["startup_s"] + f["runs"][0]["per_round"][0]
            row += [
                f"{w['mean_s']:.4f}",
                f"{r['speedup_vs_flower']:.1f}x",
                f"{first:.1f} s / {w['startup_s'] + w['per_round'][0]:.1f} s",
            ]
        else:
            row += ["n/a", "n/a", "n/a"]
        yield row


def main() -> None:
    ov = load("fl_overhead")
    if ov:
        headers = ["clients / per round", "sequential s/round", "fedhub s/round", "ratio"]
        table([*headers, "fedhub start-up"], overhead_rows(ov))
        print(f"\nload average at end: {ov.get('loadavg_at_end')}\n")
    fw = load("fl_flower")
    if fw:
        headers = ["clients / per round", "sequential s/round", "fedhub s/round"]
        headers += ["Flower s/round", "fedhub faster by", "round 1 done: fedhub / Flower"]
        table(headers, flower_rows(fw))
        print(f"\nload average at end: {fw.get('loadavg_at_end')}\n")
    sc = load("fl_scaling")
    if sc:
        rows = [
            [1000, cpr, f"{st['mean_s']:.4f}"] for cpr, st in sc["vs_clients_per_round"].items()
        ]
        rows += [[total, 10, f"{st['mean_s']:.4f}"] for total, st in sc["vs_total_clients"].items()]
        table(["total clients", "per round", "fedhub s/round"], rows)
        print(f"\nload average at end: {sc.get('loadavg_at_end')}\n")
    fp = load("fl_fedprox")
    if fp:
        print(f"rounds {fp['rounds']}, seeds {fp['seeds']}\n")
        table(
            ["configuration", "mean final test accuracy", "per seed"],
            (
                [name, f"{statistics.fmean(accs):.3f}", ", ".join(f"{a:.3f}" for a in accs)]
                for name, accs in ((n, r["final_accuracy"]) for n, r in fp["results"].items())
            ),
        )
        print(f"\npaper ordering holds: {fp['paper_ordering_holds']}\n")
    mn = load("fl_fedavg_mnist")
    if mn:
        print(f"target {mn['target']:.0%}, cap {mn['max_rounds']} rounds\n")
        rows = []
        for key, r in mn["results"].items():
            part, e, b = key.split()
            n = r["rounds"] if r["rounds"] is not None else f"> {mn['max_rounds']}"
            rows.append([part, e[2:], b[2:], n, f"{r['best_accuracy']:.3f}"])
        table(["partition", "E", "B", "rounds to target", "best accuracy"], rows)


if __name__ == "__main__":
    main()
