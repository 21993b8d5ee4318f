"""The digits recipe's report: markdown tables and PNG plots from its finished cells."""
from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

PLAIN, ZERO = "full-extra", "zero"


def _command(args: argparse.Namespace) -> str:
    return "python python/digits_recipe.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])


CLIPPING_NOTES = {"off": "DDIM's x0 prediction unclipped, as in the DDIM paper's code",
                  "on": "DDIM's x0 prediction clipped to [-1, 1] at every step",
                  "mixed": "some cells clipped DDIM's x0 prediction, some did not"}


def clipping(results: dict[str, list[dict]]) -> str:
    """Whether DDIM clipped its x0 prediction in the cells: on, off or mixed (cells written
    before the recipe recorded it were drawn unclipped)."""
    values = {r.get("clip_x0", False) for rows in results.values() for r in rows}
    return "mixed" if len(values) > 1 else ("on" if values == {True} else "off")


def table1_markdown(rows: list[dict]) -> list[str]:
    cs = sorted({r["c"] for r in rows})
    lines = ["| variant | " + " | ".join(f"c = {c:g}" for c in cs) + " |",
             "|---|" + "---:|" * len(cs)]
    for variant in dict.fromkeys(r["variant"] for r in rows):
        by_c = {r["c"]: r for r in rows if r["variant"] == variant}
        lines.append(f"| {variant} | " + " | ".join(
            f"{by_c[c]['fid']:.2f} ({by_c[c]['coverage']}/10)" for c in cs) + " |")
    return lines


def finding(rows: list[dict]) -> list[str]:
    """The paper's qualitative claim, checked: plain ≥ 3× its c = 0 at c = 2; zero ≤ 1.5×."""
    fid = {(r["variant"], r["c"]): r["fid"] for r in rows}
    plain = fid[PLAIN, 2.0] / fid[PLAIN, 0.0]
    zero = fid[ZERO, 2.0] / fid[ZERO, 0.0]
    against_plain = ", ".join(f"{variant} {fid[variant, 2.0] / fid[PLAIN, 0.0]:.1f}×"
                              for variant in dict.fromkeys(r["variant"] for r in rows)
                              if variant != PLAIN and (variant, 2.0) in fid)
    return [f"- plain model: digits-FID at c = 2 is {plain:.2f}× its c = 0 value (target ≥ 3×): "
            f"{'holds' if plain >= 3 else 'does not hold'}",
            f"- zero skip-trained model: {zero:.2f}× its own c = 0 value (target ≤ 1.5×): "
            f"{'holds' if zero <= 1.5 else 'does not hold'}",
            f"- each skip-trained model at c = 2 against the plain model at c = 0: {against_plain}"]


def table2_markdown(rows: list[dict]) -> list[str]:
    lines = ["| skip type | c | c = 0 (s) | c (s) | saved | ideal FLOPs | ideal ops | ideal params |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['variant']} | {r['c']:g} | {r['full_s']:.2f} | {r['skipped_s']:.2f} | "
                     f"{r['saved']:.1%} | {r['ideal_flops']:.1%} | {r['ideal_ops']:.1%} | "
                     f"{r['ideal_params']:.1%} |")
    return lines


def table3_markdown(rows: list[dict]) -> list[str]:
    lines = ["| model | DDIM steps | η | digits-FID | classes | s per 1,000 samples |",
             "|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['variant']} (c = {r['c']:g}) | {r['steps']} | {r['eta']:g} | {r['fid']:.2f} | "
                     f"{r['coverage']}/10 | {r['seconds'] * 1000 / r['samples']:.0f} |")
    return lines


def equal_time_pairs(rows: list[dict]) -> list[tuple[dict, dict]]:
    """(plain at s steps, zero at 2s steps) with the same η: the paper's equal wall-clock pairs."""
    by_key = {(r["variant"], r["steps"], r["eta"]): r for r in rows}
    return [(plain, by_key[ZERO, 2 * steps, eta]) for (variant, steps, eta), plain in by_key.items()
            if variant == PLAIN and (ZERO, 2 * steps, eta) in by_key]


def equal_time_markdown(rows: list[dict]) -> list[str]:
    pairs = equal_time_pairs(rows)
    lines = ["| η | plain: steps | plain: s | plain: digits-FID | zero c = 2: steps | zero: s | "
             "zero: digits-FID |", "|---:|---:|---:|---:|---:|---:|---:|"]
    for plain, ours in pairs:
        lines.append(f"| {plain['eta']:g} | {plain['steps']} | {plain['seconds']:.0f} | {plain['fid']:.2f} | "
                     f"{ours['steps']} | {ours['seconds']:.0f} | {ours['fid']:.2f} |")
    better = sum(ours["fid"] < plain["fid"] for plain, ours in pairs)
    return [*lines, "", f"The zero model is better in {better} of these {len(pairs)} pairs, "
            f"with {sum(o['seconds'] for _, o in pairs) / sum(p['seconds'] for p, _ in pairs):.2f}× "
            "the plain model's time in all."]


def plot_quality_vs_saving(table1: list[dict], table2: list[dict], path: Path) -> None:
    """digits-FID against measured time saved, one curve per variant in order of c (c = 0 at 0%)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    saved = {(r["variant"], r["c"]): r["saved"] for r in table2}
    fig, ax = plt.subplots(figsize=(6, 4))
    for variant in dict.fromkeys(r["variant"] for r in table1):
        skip_type = variant if variant in {"zero", "duplicate", "interpolate"} else "zero"
        points = [(0.0 if r["c"] == 0 else saved.get((skip_type, r["c"]), float("nan")), r["fid"])
                  for r in sorted(table1, key=lambda r: r["c"]) if r["variant"] == variant]
        ax.plot([100 * p[0] for p in points], [p[1] for p in points], marker="o", label=variant)
    ax.set_xlabel("time saved (%)")
    ax.set_ylabel("digits-FID (lower is better)")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_report(args: argparse.Namespace, results: dict[str, list[dict]], machine: str) -> None:
    args.out.mkdir(parents=True, exist_ok=True)
    t1, t2, t3 = results["table1"], results["table2"], results["table3"]
    plot_quality_vs_saving(t1, t2, args.out / "quality_vs_time.png")
    lines = [
        "# The paper's tables at digits scale", "",
        f"Made by `{_command(args)}` on {machine}, {time.strftime('%Y-%m-%d', time.gmtime())}; "
        f"seed 0 everywhere. Plain model: {args.full_steps} steps; each variant: "
        f"{args.fine_tune_steps} more from it (`full-extra` continues the plain scheme). Metric: "
        "digits-FID of the shipped digits classifier against all 1,797 real digits (a small-scale "
        "proxy, not CIFAR-10 FID), and the classes covered.", "",
        f"x0 clipping: {clipping(results)} ({CLIPPING_NOTES[clipping(results)]})", "",
        f"## Table 1: digits-FID (classes covered), DDIM-{args.ddim_steps} uniform, η = 0, "
        f"{args.samples} samples per cell", "", *table1_markdown(t1), "", *finding(t1), "",
        "![digits-FID against time saved](quality_vs_time.png)", "",
        "Each curve runs through c = 0, 1, 2, 3, 5 in order; time saved is Table 2's measurement for "
        "that skip type (the plain model and the random scheme use the zero skip's).", "",
        "Sample grids (first 64 of each cell): `grids/<variant>-c<c>.png`.", "",
        f"## Table 2: time saved, DDIM-{args.ddim_steps}, batch {args.timing_batch}, median of "
        f"{args.repeats} runs at c and at c = 0 taken in turn", "", *table2_markdown(t2), "",
        f"## Table 3: the zero model at c = 2 against the plain model, DDIM uniform, {args.samples} "
        "samples per cell", "", *table3_markdown(t3), "",
        "Equal wall-clock, as the paper compares (\"two of ours ≈ one full step\"): each row sets the "
        "zero model at c = 2 at twice the plain model's steps, with the measured seconds for "
        f"{args.samples} samples.", "", *equal_time_markdown(t3), ""]
    (args.out / "README.md").write_text("\n".join(lines))
    print(f"wrote {args.out / 'README.md'}")
