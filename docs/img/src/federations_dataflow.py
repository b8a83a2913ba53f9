"""Draw docs/img/federations-dataflow.png: a federation's data flow and trust model.

    .venv/bin/python docs/img/src/federations_dataflow.py   # rewrites the PNG

Matplotlib only (no Graphviz on the build machines), so the picture is reproducible from
this file; edit the boxes here and run it again rather than editing the PNG.
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch  # noqa: E402

OUT = Path(__file__).resolve().parents[1] / "federations-dataflow.png"

DATA, UPDATE, MODEL, CONTROL, RECORD = "#c0392b", "#1f77b4", "#2ca02c", "#7f7f7f", "#8e44ad"
TENANTS = [("acme", "#fdf2e9"), ("globex", "#eaf2f8"), ("initech", "#eafaf1")]


def box(ax, x, y, w, h, text, *, face="white", edge="#333", style="round,pad=0.004",
        dashed=False, size=9, weight="normal", va="center", lw=1.2):  # fmt: skip
    ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle=style, facecolor=face, edgecolor=edge,
                                linewidth=lw, linestyle="--" if dashed else "-"))  # fmt: skip
    ty = y + h / 2 if va == "center" else y + h - 0.012
    ax.text(x + w / 2, ty, text, ha="center", va=va, fontsize=size, weight=weight,
            linespacing=1.35)  # fmt: skip


def arrow(ax, start, end, color, label="", *, dashed=False, rad=0.0, offset=(0, 0), size=8):
    ax.add_patch(FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=13, color=color,
                                 linewidth=1.6, linestyle="--" if dashed else "-",
                                 connectionstyle=f"arc3,rad={rad}"))  # fmt: skip
    if label:
        mx, my = (start[0] + end[0]) / 2 + offset[0], (start[1] + end[1]) / 2 + offset[1]
        ax.text(mx, my, label, fontsize=size, color=color, ha="center", va="center",
                bbox={"facecolor": "white", "edgecolor": "none", "pad": 1.0})  # fmt: skip


def draw(out: Path = OUT) -> Path:
    fig = plt.figure(figsize=(14, 9.2), dpi=110)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.axis("off")
    ax.text(0.5, 0.975, "A federation between tenants: where data, updates and models go, and "
            "which Unix account can read what", ha="center", fontsize=13, weight="bold")  # fmt: skip

    # the admins' notebooks (each its own account, like every hub user's server)
    box(ax, 0.03, 0.82, 0.27, 0.11,
        "acme-admin's notebook (account fedhub-acme-admin)\n"
        "fedhub.datasets.register('churn', df)\n"
        "fedhub.federations.create(..., dataset='churn')\n"
        ".invite('globex') · .run() · .watch()", face="#fdf2e9", size=8.5)  # fmt: skip
    box(ax, 0.33, 0.82, 0.24, 0.11,
        "globex-admin's notebook (fedhub-globex-admin)\n"
        "fedhub.datasets.register('churn-eu', ...)\n"
        "fedhub.federations.join(id, dataset='churn-eu')\n"
        ".watch() · .my_metrics() · .model()", face="#eaf2f8", size=8.5)  # fmt: skip
    box(ax, 0.60, 0.82, 0.17, 0.11,
        "a tenant that is not a member\n\nevery federation endpoint:\n404, as if it did not exist",
        face="#f4f4f4", size=8.5, dashed=True)  # fmt: skip

    # the experiments service (the hub's account): APIs, runner and coordinator
    box(ax, 0.03, 0.44, 0.74, 0.34, "", face="#fbfbfb", edge="#555", lw=1.6)
    ax.text(0.045, 0.772, "experiments service — the hub's account (root on the embedded "
            "default), trusted by every member", fontsize=9.5, weight="bold", va="top")  # fmt: skip
    box(ax, 0.05, 0.645, 0.22, 0.095,
        "datasets API: POST /datasets/<name>\nchecks, checksums and writes the\n"
        "upload into the tenant's store (once)", size=8.2)  # fmt: skip
    box(ax, 0.30, 0.645, 0.25, 0.095,
        "federations API + runner\ncreate · invite · join · run · rounds\n"
        "per-member metrics → that member only", size=8.2)  # fmt: skip
    box(ax, 0.05, 0.455, 0.70, 0.165, "", face="#eef5fb", size=8.6)
    ax.text(0.065, 0.608, "coordinator (fedhub.fl.federation): receives only masked vectors, "
            "example counts, client seconds and metrics", fontsize=8.8, weight="bold",
            va="top")  # fmt: skip
    ax.text(0.065, 0.578,
            "1  SecAgg+ server: unmask → the SUM of the round's clipped updates; no single\n"
            "    member's update can be recovered (pairwise X25519 masks + self masks)\n"
            "2  a member dropped mid-round: its masks rebuilt from survivors' Shamir shares",
            fontsize=8.4, va="top", linespacing=1.4)  # fmt: skip
    ax.text(0.425, 0.578,
            "3  strategy step (FedAvg ...) on the sum\n"
            "4  DP: + Gaussian noise (σ = z · clip) → the new global model\n"
            "5  ε accountant (dp_accounting, RDP): stop before the budget",
            fontsize=8.4, va="top", linespacing=1.4)  # fmt: skip
    arrow(ax, (0.425, 0.645), (0.425, 0.62), CONTROL)

    # the audit chains and billing
    box(ax, 0.80, 0.62, 0.18, 0.31,
        "audit: one event per member\nin each member's own chain\n\nfederation.created\n"
        ".invited · .joined · .declined\n.dataset_bound\n.round_completed\n"
        ".finished · .failed", face="#f5eef8", size=8.4)  # fmt: skip
    box(ax, 0.80, 0.44, 0.18, 0.15,
        "billing: each member's\nclient seconds metered as\nFL_CLIENT_SECONDS to that\n"
        "member's tenant only\n(key fed:<id>:<round>:<tenant>)", face="#f5eef8", size=8.4)  # fmt: skip
    arrow(ax, (0.55, 0.70), (0.80, 0.73), RECORD, "events", offset=(0.0, 0.015))
    arrow(ax, (0.75, 0.52), (0.80, 0.52), RECORD)

    # the silos: one Unix account per tenant, its store and its own Dask workers
    xs = [0.03, 0.285, 0.54]
    for (tenant, face), x in zip(TENANTS, xs, strict=True):
        box(ax, x, 0.05, 0.235, 0.33, "", face=face, edge="#444", dashed=True, lw=1.6)
        ax.text(x + 0.012, 0.368, f"{tenant}'s silo — Unix account fedhub_t_{tenant}",
                fontsize=9, weight="bold", va="top")  # fmt: skip
        box(ax, x + 0.015, 0.07, 0.205, 0.10,
            f"store tenant-data/{tenant}/ (0700, files 0600)\n"
            "arrays.npz · schema.json · card.md\nmanifest.json (sha256)", size=8)  # fmt: skip
        box(ax, x + 0.015, 0.215, 0.205, 0.12,
            f"{tenant}'s Dask worker(s)\nload_arrays (checks sha256)\n"
            "train locally · clip · SecAgg+ mask\nevaluate on own test split", size=8)  # fmt: skip
        arrow(ax, (x + 0.08, 0.17), (x + 0.08, 0.215), DATA, "raw data", offset=(0.04, 0))
        arrow(ax, (x + 0.06, 0.335), (x + 0.06, 0.455), UPDATE, "masked update",
              offset=(0.0, 0.0))  # fmt: skip
        arrow(ax, (x + 0.175, 0.455), (x + 0.175, 0.335), MODEL, "global model",
              offset=(0.0, 0.0))  # fmt: skip

    # uploads: the admin's notebook → datasets API → the tenant's store (as that account)
    arrow(ax, (0.12, 0.82), (0.12, 0.74), DATA)
    ax.text(0.125, 0.80, "upload (own token)", fontsize=8, color=DATA, ha="left")
    arrow(ax, (0.05, 0.66), (0.033, 0.11), DATA, "", dashed=True, rad=0.08)
    ax.text(0.0035, 0.30, "files\nowned\nby\nfedhub_\nt_acme", fontsize=7, color=DATA)
    arrow(ax, (0.26, 0.82), (0.34, 0.74), CONTROL)
    ax.text(0.31, 0.80, "create · invite · run", fontsize=8, color=CONTROL, ha="left")
    arrow(ax, (0.45, 0.82), (0.45, 0.74), CONTROL)
    ax.text(0.455, 0.80, "join · watch", fontsize=8, color=CONTROL, ha="left")
    arrow(ax, (0.66, 0.82), (0.55, 0.73), CONTROL, dashed=True)

    # the trust model, in words
    notes = (
        "What each party can learn\n"
        "• a member's workers: that member's data\n"
        "   and the global model of each round\n"
        "• the coordinator: masked vectors (random\n"
        "   to it), counts, metrics and the round's\n"
        "   SUM of clipped updates (before noise);\n"
        "   never data, never one member's update\n"
        "• every member: the (noised) global model,\n"
        "   aggregate metrics and ε; its own metrics\n"
        "• another tenant: nothing (404)\n"
        "• root, the operator: everything (trusted,\n"
        "   as for any hosted service)"
    )
    ax.text(0.795, 0.38, notes, fontsize=7.6, va="top", ha="left", linespacing=1.45,
            bbox={"facecolor": "#fffdf0", "edgecolor": "#b7950b", "boxstyle": "round,pad=0.5"})  # fmt: skip

    legend = [(DATA, "raw data (stays in the silo)"), (UPDATE, "masked model update"),
              (MODEL, "global model"), (CONTROL, "API call"), (RECORD, "audit / metering")]  # fmt: skip
    for i, (color, label) in enumerate(legend):
        y = 0.025 - 0.0 * i
        x = 0.03 + 0.155 * i
        ax.plot([x, x + 0.025], [y, y], color=color, linewidth=2.2)
        ax.text(x + 0.03, y, label, fontsize=8.2, va="center")
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


if __name__ == "__main__":
    print(draw(Path(sys.argv[1]) if len(sys.argv) > 1 else OUT))
