"""``adaskip_ext.timing``: calls taken in turn, warm-up untimed, medians per function."""
from __future__ import annotations

from adaskip_ext import timing


def test_medians_in_turn_alternates_and_leaves_the_warmup_out(monkeypatch) -> None:
    calls: list[str] = []
    seconds = iter([1.0, 10.0, 3.0, 30.0, 2.0, 20.0])
    monkeypatch.setattr(timing, "elapsed", lambda fn, device: (fn(), next(seconds))[1])
    medians = timing.medians_in_turn([lambda: calls.append("a"), lambda: calls.append("b")],
                                     repeats=3, warmup=2)
    assert calls == ["a", "b"] * 5
    assert medians == [2.0, 20.0]


def test_cpu_timer_reports_milliseconds() -> None:
    (ms,) = timing.timer("cpu", repeats=3)(lambda: sum(range(1000)))
    assert 0 < ms < 1e3
