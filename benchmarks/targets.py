"""The issue's speed targets, read from the JSON results of depth.py, speedup.py and kernels.py.

    python benchmarks/targets.py DIR     # prints a markdown table: target, measured, met?

Every number is a ratio within one run of one benchmark (the machines are noisy).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

PAPER_SAVING = 0.475  # the paper's measured saving at c = 2


def load(folder: Path, stem: str) -> dict | None:
    matches = sorted(folder.glob(f"{stem}-*.json"))
    return json.loads(matches[0].read_text()) if matches else None


def speedup_rows(speedup: dict) -> list[tuple[str, str, str]]:
    rows = []
    gpu = speedup.get("graphs", False)
    for r in speedup["rows"]:
        if r["c"] != 2.0 or r["skip_type"] != "zero":
            continue
        # Runs from before speedup.py took --dtypes (the committed CPU one) were fp32.
        where = f"c = 2, zero, {r.get('dtype', 'fp32')}, {r['sampler']}-{r['steps']}, batch {speedup['batch']}"
        if gpu:
            goal, met = PAPER_SAVING, r["saved"] >= PAPER_SAVING
            text = f"≥ {goal:.1%} saved (op ideal {r['ideal_ops']:.1%})"
        else:
            met = r["saved"] >= 0.30
            text = f"≥ 30% saved (FLOP ideal {r['ideal_flops']:.1%})"
        rows.append((where, text, f"{r['saved']:.1%} {'met' if met else 'MISSED'}"))
    return rows


def depth_rows(depth: dict) -> list[tuple[str, str, str]]:
    rows = []
    for s in depth.get("c2_savings", []):
        if s["skip_type"] == "zero" and s["batch"] == max(depth["batches"]) and s["mode"] != "reference":
            gap = s["ideal_flops"] - s["saved"]
            rows.append((f"c = 2 from per-k times, zero, {s['dtype']}, batch {s['batch']}, {s['mode']}",
                         f"within 5 points of the FLOP ideal {s['ideal_flops']:.1%}",
                         f"{s['saved']:.1%} {'met' if gap <= 0.05 else 'MISSED'}"))
    full = {(r["dtype"], r["batch"], r["mode"]): r["ms"] for r in depth["rows"]
            if r["k"] == 0 and r["skip_type"] == "zero"}
    compiled = {(r["dtype"], r["batch"]): r["ms"] for r in depth.get("compile", [])}
    for (dtype, batch, mode), ms in sorted(full.items()):
        if batch != 1 or mode != "graphs":
            continue
        eager = full[dtype, batch, "reference"]
        rows.append((f"k = 0, {dtype}, batch 1, fused + graphs vs PyTorch eager", "≥ 2×",
                     f"{eager / ms:.2f}× {'met' if eager / ms >= 2 else 'MISSED'}"))
        if (dtype, batch) in compiled:
            ratio = compiled[dtype, batch] / ms
            rows.append((f"k = 0, {dtype}, batch 1, fused + graphs vs torch.compile reduce-overhead",
                         "> 1×", f"{ratio:.2f}× {'met' if ratio > 1 else 'MISSED'}"))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, metavar="DIR",
                        help="the benchmarks' JSON results (e.g. benchmarks/results)")
    folder = parser.parse_args(argv).folder
    rows = []
    if (speedup := load(folder, "speedup")) is not None:
        rows += speedup_rows(speedup)
    if (depth := load(folder, "depth")) is not None:
        rows += depth_rows(depth)
    if (kernels := load(folder, "kernels")) is not None:
        rows += [("kernels: " + line.split(":")[0], "see kernels table", line.split(":", 1)[1].strip())
                 for line in kernels.get("targets", [])]
    print("| where | target | measured |\n|---|---|---|")
    for where, target, measured in rows:
        print(f"| {where} | {target} | {measured} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
