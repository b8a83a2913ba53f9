"""Print the FL benchmark figures from benchmarks/results/fl_*.json as Markdown tables
(pasted into docs/benchmarks.md): ``.venv/bin/python benchmarks/fl_report.py``."""

from __future__ import annotations

import json
import statistics

from fl_common import RESULTS


def load(name):
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def main() -> None:
    ov = load("fl_overhead")
    if ov:
        print(
            "| clients / per round | sequential s/round | fedhub s/round | ratio | fedhub start-up |"
        )
        print("|---|---|---|---|---|")
        for k, r in ov.items():
            if k == "loadavg_at_end":
                continue
            print(
                f"| {k} | {r['sequential']['mean_s']:.4f} | {r['fedhub']['mean_s']:.4f} | "
                f"{r['ratio']:.2f}x | {r['fedhub']['startup_s']:.2f} s / "
                f"{r['fedhub']['startup_warm_s']:.2f} s |"
            )
        print(f"\nload average at end: {ov.get('loadavg_at_end')}\n")
    fw = load("fl_flower")
    if fw:
        print("| clients / per round | sequential s/round | fedhub s/round | Flower s/round |"
              " fedhub faster by | round 1 done: fedhub / Flower |")  # fmt: skip
        print("|---|---|---|---|---|---|")
        for k, r in fw.items():
            if k == "loadavg_at_end":
                continue
            f, s = r["fedhub"], r["sequential"]
            line = f"| {k} | {s['mean_s']:.4f} | {f['mean_s']:.4f} | "
            if "flower" in r:
                w = r["flower"]
                line += (
                    f"{w['mean_s']:.4f} | {r['speedup_vs_flower']:.1f}x | "
                    f"{f['runs'][0]['startup_s'] + f['runs'][0]['per_round'][0]:.1f} s / "
                    f"{w['startup_s'] + w['per_round'][0]:.1f} s |"
                )
            else:
                line += "n/a | n/a | n/a |"
            print(line)
        print(f"\nload average at end: {fw.get('loadavg_at_end')}\n")
    sc = load("fl_scaling")
    if sc:
        print("| total clients | per round | fedhub s/round |")
        print("|---|---|---|")
        for cpr, st in sc["vs_clients_per_round"].items():
            print(f"| 1000 | {cpr} | {st['mean_s']:.4f} |")
        for total, st in sc["vs_total_clients"].items():
            print(f"| {total} | 10 | {st['mean_s']:.4f} |")
        print(f"\nload average at end: {sc.get('loadavg_at_end')}\n")
    fp = load("fl_fedprox")
    if fp:
        print(f"rounds {fp['rounds']}, seeds {fp['seeds']}\n")
        print("| configuration | mean final test accuracy | per seed |")
        print("|---|---|---|")
        for name, r in fp["results"].items():
            accs = r["final_accuracy"]
            print(
                f"| {name} | {statistics.fmean(accs):.3f} | {', '.join(f'{a:.3f}' for a in accs)} |"
            )
        print(f"\npaper ordering holds: {fp['paper_ordering_holds']}\n")
    mn = load("fl_fedavg_mnist")
    if mn:
        print(f"target {mn['target']:.0%}, cap {mn['max_rounds']} rounds\n")
        print("| partition | E | B | rounds to target | best accuracy |")
        print("|---|---|---|---|---|")
        for key, r in mn["results"].items():
            part, e, b = key.split()
            n = r["rounds"] if r["rounds"] is not None else f"> {mn['max_rounds']}"
            print(f"| {part} | {e[2:]} | {b[2:]} | {n} | {r['best_accuracy']:.3f} |")


if __name__ == "__main__":
    main()
