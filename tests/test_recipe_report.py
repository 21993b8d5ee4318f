"""The digits recipe's report (python/report.py) on synthetic cells."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))
import report  # noqa: E402


def t1_row(variant: str, c: float, fid: float) -> dict:
    return {"variant": variant, "c": c, "fid": fid, "coverage": 10}


def t3_row(variant: str, steps: int, eta: float, seconds: float, fid: float) -> dict:
    return {"variant": variant, "c": 2.0 if variant == "zero" else 0.0, "steps": steps, "eta": eta,
            "seconds": seconds, "fid": fid, "coverage": 10, "samples": 1000}


def test_finding_checks_both_ratios() -> None:
    rows = [t1_row("full-extra", 0.0, 2.0), t1_row("full-extra", 2.0, 8.0),
            t1_row("zero", 0.0, 2.0), t1_row("zero", 2.0, 3.2)]
    plain, zero, against_plain = report.finding(rows)
    assert "4.00×" in plain and "holds" in plain and "does not" not in plain
    assert "1.60×" in zero and "does not hold" in zero
    assert against_plain.endswith(": zero 1.6×")


def test_equal_time_pairs_zero_at_twice_the_plain_steps() -> None:
    rows = [t3_row("full-extra", 10, 0.0, 10, 9.0), t3_row("full-extra", 20, 0.0, 20, 5.0),
            t3_row("full-extra", 20, 1.0, 20, 6.0), t3_row("zero", 20, 0.0, 11, 4.0),
            t3_row("zero", 40, 1.0, 21, 3.0), t3_row("zero", 10, 0.0, 6, 12.0)]
    body = report.equal_time_markdown(rows)[2:]
    assert body == ["| 0 | 10 | 10 | 9.00 | 20 | 11 | 4.00 |",
                    "| 1 | 20 | 20 | 6.00 | 40 | 21 | 3.00 |", "",
                    "The zero model is better in 2 of these 2 pairs, with 1.07× the plain model's time in all."]


def test_write_report_writes_tables_and_plot(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib", reason="matplotlib not installed")
    t1 = [t1_row(v, c, 1.0 + c) for v in ("full-extra", "zero") for c in (0.0, 2.0)]
    t2 = [{"variant": "zero", "c": 2.0, "full_s": 2.0, "skipped_s": 1.4, "saved": 0.3,
           "ideal_flops": 0.35, "ideal_ops": 0.4, "ideal_params": 0.1}]
    t3 = [t3_row("full-extra", 10, 0.0, 10, 9.0), t3_row("zero", 20, 0.0, 11, 4.0)]
    args = argparse.Namespace(out=tmp_path / "out", full_steps=10, fine_tune_steps=3, samples=1000,
                              ddim_steps=100, timing_batch=64, repeats=3)
    report.write_report(args, {"table1": t1, "table2": t2, "table3": t3}, machine="test")
    text = (args.out / "README.md").read_text()
    assert "| zero | 2 | 2.00 | 1.40 | 30.0% | 35.0% | 40.0% | 10.0% |" in text
    assert "| 0 | 10 | 10 | 9.00 | 20 | 11 | 4.00 |" in text
    assert (args.out / "quality_vs_time.png").read_bytes()[:4] == b"\x89PNG"
    assert "x0 clipping: off" in text  # cells that do not record it were drawn unclipped


def test_clipping_is_read_from_the_cells() -> None:
    assert report.clipping({"table1": [{"clip_x0": False}], "table3": [{}]}) == "off"
    assert report.clipping({"table1": [{"clip_x0": True}]}) == "on"
    assert report.clipping({"table1": [{"clip_x0": True}], "table3": [{"clip_x0": False}]}) == "mixed"
