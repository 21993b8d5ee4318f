"""The digits metric: the shipped classifier, its training, and what the score says."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("pytorch_fid", reason="pytorch-fid not installed")

from adaskip_ext.metrics import digits_classifier as digits_metric  # noqa: E402
from adaskip_ext.data import digits_images  # noqa: E402
from adaskip_ext.images import to_uint8  # noqa: E402


def test_shipped_classifier_is_accurate_on_the_held_out_split():
    _, _, test_x, test_y = digits_metric.digits_split()
    assert digits_metric.accuracy(digits_metric.load_classifier(), test_x, test_y) >= 0.97


def test_training_learns_the_digits():
    _, held_out = digits_metric.train_classifier(epochs=3)
    assert held_out >= 0.8


def test_real_digits_score_perfectly_and_noise_does_not():
    real = digits_metric.score(to_uint8(digits_images(16)))
    assert abs(real.fid) < 1e-6 and real.coverage == 10 and real.confidence > 0.95
    assert sum(real.class_shares) == pytest.approx(1.0, abs=1e-3)
    noise = digits_metric.score(np.random.default_rng(0).integers(0, 256, (300, 16, 16, 1), dtype=np.uint8))
    assert noise.fid > 100 * max(real.fid, 1.0) and noise.confidence < real.confidence


def test_one_repeated_digit_covers_one_class():
    images = to_uint8(digits_images(16))
    ones = np.repeat(images[1:2], 200, axis=0)  # the second image is a 1
    result = digits_metric.score(ones)
    assert result.coverage == 1 and result.fid > 1.0


def test_rgb_samples_score_like_grey_ones():
    grey = to_uint8(digits_images(16))[:300]
    rgb = np.repeat(grey, 3, axis=-1)
    assert digits_metric.score(rgb).fid == pytest.approx(digits_metric.score(grey).fid, rel=1e-6)


def test_wrong_size_is_a_clear_error():
    from adaskip_ext.io_utils import UserFacingError

    with pytest.raises(UserFacingError, match="needs 16×16 images, got \\(32, 32\\)"):
        digits_metric.score(np.zeros((2, 32, 32, 3), np.uint8))
