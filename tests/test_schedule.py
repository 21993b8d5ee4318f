"""Skip schedules: Eq. 1 of the paper, k(t) = min(N-1, floor(N - N (1-t)^c)), t = (timestep+1)/T,
and explicit per-step lists."""
from __future__ import annotations

import math
from fractions import Fraction

import pytest

from adaskip_ext.sampling import time_sequence
from adaskip_ext.schedule import SkipSchedule, skip_levels_at


def exact_k(timestep: int, num_levels: int, c: int, num_timesteps: int) -> int:
    """Eq. 1 in exact rational arithmetic (integer c only)."""
    if c == 0:
        return 0
    t = Fraction(timestep + 1, num_timesteps)
    return min(num_levels - 1, math.floor(num_levels - num_levels * (1 - t) ** c))


@pytest.mark.parametrize("c", [0, 1, 2, 3, 5])
@pytest.mark.parametrize("num_levels", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("num_timesteps", [1000, 10, 8])
def test_matches_exact_eq1_for_every_timestep(c, num_levels, num_timesteps):
    for timestep in range(num_timesteps):
        assert skip_levels_at(timestep, num_levels, c, num_timesteps) == \
            exact_k(timestep, num_levels, c, num_timesteps), timestep


@pytest.mark.parametrize("timestep, c, expected", [
    # N = 4, T = 1000, worked by hand:
    (0, 1, 0),      # t = 0.001: 4 - 4 * 0.999 = 0.004
    (248, 1, 0),    # t = 0.249: 4 * 0.249 = 0.996
    (249, 1, 1),    # t = 0.25:  4 * 0.25 = 1
    (999, 1, 3),    # t = 1:     4 - 0 = 4 -> min(3, 4)
    (0, 2, 0),      # (0.999)^2 = 0.998001; 4 - 3.992004 = 0.007996
    (132, 2, 0),    # t = 0.133: (0.867)^2 = 0.751689; 4 - 3.006756 = 0.993244
    (133, 2, 1),    # t = 0.134: (0.866)^2 = 0.749956; 4 - 2.999824 = 1.000176
    (291, 2, 1),    # t = 0.292: (0.708)^2 = 0.501264; 4 - 2.005056 = 1.994944
    (292, 2, 2),    # t = 0.293: (0.707)^2 = 0.499849; 4 - 1.999396 = 2.000604
    (498, 2, 2),    # t = 0.499: (0.501)^2 = 0.251001; 4 - 1.004004 = 2.995996
    (499, 2, 3),    # t = 0.5:   (0.5)^2 = 0.25; 4 - 1 = 3
    (0, 3, 0),      # (0.999)^3 = 0.997002999; 4 - 3.988011996 = 0.011988
    (99, 3, 1),     # t = 0.1: (0.9)^3 = 0.729; 4 - 2.916 = 1.084
    (99, 5, 1),     # t = 0.1: (0.9)^5 = 0.59049; 4 - 2.36196 = 1.63804
    (299, 5, 3),    # t = 0.3: (0.7)^5 = 0.16807; 4 - 0.67228 = 3.32772 -> min(3, 3)
    (249, 0.5, 0),  # t = 0.25: sqrt(0.75) = 0.8660254; 4 - 3.4641016 = 0.5358984
    (499, 0.5, 1),  # t = 0.5:  sqrt(0.5) = 0.7071068; 4 - 2.8284271 = 1.1715729
    (899, 0.5, 2),  # t = 0.9:  sqrt(0.1) = 0.3162278; 4 - 1.2649111 = 2.7350889
    (499, 2.5, 3),  # t = 0.5:  0.5^2.5 = 0.1767767; 4 - 0.7071068 = 3.2928932 -> 3
    (199, 2.5, 1),  # t = 0.2:  0.8^2.5 = 0.5724334; 4 - 2.2897335 = 1.7102665
])
def test_hand_computed_values(timestep, c, expected):
    assert skip_levels_at(timestep, 4, c, 1000) == expected


def test_c0_is_the_full_network():
    assert all(skip_levels_at(t, 4, 0, 1000) == 0 for t in range(1000))
    assert SkipSchedule(4).levels(list(range(999, -1, -1)), 1000) == [0] * 1000


@pytest.mark.parametrize("c", [0, 0.1, 0.5, 1, 2, 2.5, 3, 5, 12])
@pytest.mark.parametrize("num_levels", [2, 3, 4])
def test_monotone_and_noisiest_step_is_shallowest(c, num_levels):
    ks = [skip_levels_at(t, num_levels, c, 1000) for t in range(1000)]
    assert all(a <= b for a, b in zip(ks, ks[1:]))
    assert set(ks) <= set(range(num_levels))
    assert ks[-1] == (num_levels - 1 if c > 0 else 0)


@pytest.mark.parametrize("timestep", [-1, 1000])
def test_timestep_out_of_range(timestep):
    with pytest.raises(ValueError, match="outside"):
        skip_levels_at(timestep, 4, 2.0, 1000)


@pytest.mark.parametrize("c", [-1.0, math.inf, math.nan])
def test_bad_c(c):
    with pytest.raises(ValueError, match="c must be"):
        SkipSchedule(4, c=c)


def test_levels_follow_the_sampler_order():
    """levels() gets timesteps noisiest first and returns k for each, in that order."""
    timesteps = list(reversed(time_sequence("uniform", 10, 1000)))  # 900, 800, ..., 0
    # c = 2, N = 4: 900 -> 3, 800 -> 3, ..., 500 -> 3 (t >= 0.5), 400 -> 2 (t = 0.401:
    # 4 - 4 * 0.599^2 = 2.564796), 300 -> 2 (t = 0.301: 4 - 4 * 0.699^2 = 2.045596),
    # 200 -> 1 (t = 0.201: 4 - 4 * 0.799^2 = 1.446396), 100 -> 0 (t = 0.101: 4 - 4 * 0.899^2 = 0.767196),
    # 0 -> 0
    assert SkipSchedule(4, c=2.0).levels(timesteps, 1000) == [3, 3, 3, 3, 3, 2, 2, 1, 0, 0]


def test_shares_hand_computed():
    """c = 2, N = 4 over all 1000 timesteps: the boundaries worked out above are 133, 292, 499, so
    k = 0 covers 133 timesteps, k = 1: 292 - 133 = 159, k = 2: 499 - 292 = 207, k = 3: 501."""
    shares = SkipSchedule(4, c=2.0).shares(list(range(999, -1, -1)), 1000)
    assert shares == pytest.approx({0: 0.133, 1: 0.159, 2: 0.207, 3: 0.501})


@pytest.mark.parametrize("c", [0, 1, 2, 3, 5])
@pytest.mark.parametrize("kind, steps", [("uniform", 10), ("uniform", 1000), ("quad", 20), ("quad", 100)])
def test_shares_sum_to_one(c, kind, steps):
    timesteps = list(reversed(time_sequence(kind, steps, 1000)))
    schedule = SkipSchedule(4, c=float(c))
    shares = schedule.shares(timesteps, 1000)
    assert sorted(shares) == [0, 1, 2, 3]
    assert sum(shares.values()) == pytest.approx(1.0)
    levels = schedule.levels(timesteps, 1000)
    for k, share in shares.items():
        assert share == pytest.approx(levels.count(k) / len(timesteps))


# ---------------------------------------------------------------------------------------------
# Explicit lists


def test_parse_list():
    schedule = SkipSchedule.parse_list("2, 2,1 ,0", num_levels=3)
    assert schedule.levels([900, 600, 300, 0], 1000) == [2, 2, 1, 0]
    assert schedule.shares([900, 600, 300, 0], 1000) == {0: 0.25, 1: 0.25, 2: 0.5}
    assert schedule.describe() == "explicit list"


@pytest.mark.parametrize("text", ["1,2,1", "1,2,1,0,0"])
def test_list_length_must_match_steps(text):
    schedule = SkipSchedule.parse_list(text, num_levels=3)
    with pytest.raises(ValueError, match="steps"):
        schedule.levels([900, 600, 300, 0], 1000)


@pytest.mark.parametrize("text", ["3,2,1,0", "2,2,1,-1"])
def test_list_values_out_of_range(text):
    with pytest.raises(ValueError, match=r"\[0, 2\]"):
        SkipSchedule.parse_list(text, num_levels=3)


@pytest.mark.parametrize("text", ["2,1.5,1,0", "2,x,1,0", "2;1;1;0", "", " , "])
def test_list_must_be_integers(text):
    with pytest.raises(ValueError):
        SkipSchedule.parse_list(text, num_levels=3)
