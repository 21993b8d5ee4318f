"""Reading training images from files: CIFAR-10 python batches (restricted unpickler), image folders."""
from __future__ import annotations

import pickle
import random
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from adaskip_ext.data.datasets import (DataSpec, cifar10_images, folder_images, load_dataset, parse_spec,
                                       read_cifar_batch)
from adaskip_ext.io_utils import UserFacingError

Image = pytest.importorskip("PIL.Image", reason="pillow not installed")


def _string(value: bytes) -> bytes:
    """A Python 2 ``str`` (SHORT_BINSTRING / BINSTRING), read back as bytes."""
    if len(value) < 256:
        return b"U" + bytes([len(value)]) + value
    return b"T" + struct.pack("<I", len(value)) + value


def _int(value: int) -> bytes:
    return b"J" + struct.pack("<i", value)


def py2_batch(data: np.ndarray, labels: list[int]) -> bytes:
    """A protocol-2 pickle laid out as Python 2 / NumPy 1 wrote the CIFAR-10 batches.

    data: (N, 3072) uint8. Globals ``numpy.core.multiarray._reconstruct``, ``numpy.ndarray``,
    ``numpy.dtype`` (with the integer flags of old pickles); strings are Python 2 ``str``.
    """
    dtype = (b"cnumpy\ndtype\n" + _string(b"u1") + _int(0) + _int(1) + b"\x87R"
             + b"(" + _int(3) + _string(b"|") + b"NNN" + _int(-1) + _int(-1) + _int(0) + b"tb")
    array = (b"cnumpy.core.multiarray\n_reconstruct\n" + b"cnumpy\nndarray\n" + _int(0) + b"\x85"
             + _string(b"b") + b"\x87R" + b"(" + _int(1) + _int(data.shape[0]) + _int(data.shape[1])
             + b"\x86" + dtype + b"\x89" + _string(data.tobytes()) + b"tb")
    label_list = b"](" + b"".join(_int(label) for label in labels) + b"e"
    return (b"\x80\x02}(" + _string(b"batch_label") + _string(b"training batch 1 of 5")
            + _string(b"data") + array + _string(b"labels") + label_list + b"u.")


def random_batch(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, 3072), dtype=np.uint8)


def test_reads_python2_batch_layout(tmp_path: Path) -> None:
    data = random_batch(3, 0)
    file = tmp_path / "data_batch_1"
    file.write_bytes(py2_batch(data, [1, 2, 3]))
    images = read_cifar_batch(file)
    assert images.shape == (3, 32, 32, 3) and images.dtype == np.uint8
    # rows hold the R plane, then G, then B, each 32×32 row-major
    np.testing.assert_array_equal(images[:, 5, 7, :], data[:, [5 * 32 + 7 + 1024 * c for c in range(3)]])


@pytest.mark.parametrize("protocol", [3, 4])
def test_reads_python3_pickles(tmp_path: Path, protocol: int) -> None:
    data = random_batch(2, 1)
    file = tmp_path / "batch"
    file.write_bytes(pickle.dumps({b"data": data, b"labels": [0, 9], b"filenames": [b"a", b"b"]},
                                  protocol=protocol))
    np.testing.assert_array_equal(read_cifar_batch(file).transpose(0, 3, 1, 2).reshape(2, 3072), data)


class _Payload:
    """Unpickling this would create ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return exec, (f"open({str(self.marker)!r}, 'w').close()",)


@pytest.mark.parametrize("protocol", [2, 4])
def test_malicious_batch_runs_no_code(tmp_path: Path, protocol: int) -> None:
    marker = tmp_path / "marker"
    file = tmp_path / "data_batch_1"
    file.write_bytes(pickle.dumps({b"data": _Payload(marker)}, protocol=protocol))
    pickle.loads(pickle.dumps(_Payload(tmp_path / "control")))  # the payload does work when trusted
    assert (tmp_path / "control").exists()
    with pytest.raises(UserFacingError, match="data_batch_1.*not allowed"):
        read_cifar_batch(file)
    assert not marker.exists()


@pytest.mark.parametrize("content", [
    pickle.dumps([1, 2, 3]),
    pickle.dumps({b"labels": [1]}),
    pickle.dumps({b"data": np.zeros((2, 3072), dtype=np.float32)}),
    pickle.dumps({b"data": np.zeros((2, 100), dtype=np.uint8)}),
    b"",
    b"not a pickle at all",
], ids=["list", "no-data", "float-data", "wrong-width", "empty", "text"])
def test_bad_batches_are_user_errors(tmp_path: Path, content: bytes) -> None:
    file = tmp_path / "data_batch_3"
    file.write_bytes(content)
    with pytest.raises(UserFacingError, match="data_batch_3: not a CIFAR-10 python batch") as error:
        read_cifar_batch(file)
    assert "\n" not in str(error.value)


def test_damaged_batches_are_user_errors(tmp_path: Path) -> None:
    raw = py2_batch(random_batch(2, 2), [0, 1])
    file = tmp_path / "batch"
    rng = random.Random(0)
    damaged = [raw[:cut] for cut in range(0, len(raw), 211)]
    for _ in range(100):
        corrupt = bytearray(raw[:400])
        for _ in range(4):
            corrupt[rng.randrange(len(corrupt))] = rng.randrange(256)
        damaged.append(bytes(corrupt))
    for content in damaged:
        file.write_bytes(content)
        with pytest.raises(UserFacingError):
            read_cifar_batch(file)


def test_cifar10_folder(tmp_path: Path) -> None:
    batches = [random_batch(2, seed) for seed in range(5)]
    for i, data in enumerate(batches, start=1):
        (tmp_path / f"data_batch_{i}").write_bytes(py2_batch(data, [0, 1]))
    images = cifar10_images(tmp_path, resolution=32, channels=3)
    assert images.shape == (10, 3, 32, 32)
    expected = torch.from_numpy(np.concatenate(batches).reshape(10, 3, 32, 32)).float() / 127.5 - 1.0
    torch.testing.assert_close(images, expected)
    assert cifar10_images(tmp_path, resolution=16, channels=1).shape == (10, 1, 16, 16)
    dataset = load_dataset(f"cifar10:{tmp_path}", 32, 3)
    assert dataset.flip and dataset.images.shape == (10, 3, 32, 32)

    (tmp_path / "data_batch_4").unlink()
    with pytest.raises(UserFacingError, match="data_batch_4: CIFAR-10 batch file not found"):
        cifar10_images(tmp_path, 32, 3)


def _solid(path: Path, mode: str, colour: tuple[int, ...] | int, size: int = 6) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, (size, size), colour).save(path)


def test_folder_images(tmp_path: Path) -> None:
    _solid(tmp_path / "a.png", "RGB", (255, 0, 51))
    _solid(tmp_path / "sub" / "b.PNG", "L", 102, size=9)
    _solid(tmp_path / "sub" / "deeper" / "c.bmp", "RGBA", (0, 255, 0, 128))
    (tmp_path / "notes.txt").write_text("ignored")
    images = folder_images(tmp_path, resolution=4, channels=3)
    assert images.shape == (3, 3, 4, 4) and images.dtype == torch.float32
    scale = lambda v: v / 127.5 - 1.0  # noqa: E731
    expected_colours = [(255, 0, 51), (102, 102, 102), (0, 255, 0)]  # sorted paths: a, sub/b, sub/deeper/c
    for image, colour in zip(images, expected_colours):
        torch.testing.assert_close(image, torch.tensor([scale(c) for c in colour])[:, None, None]
                                   .expand(3, 4, 4), atol=1.5 / 127.5, rtol=0)
    grey = folder_images(tmp_path, resolution=4, channels=1)
    assert grey.shape == (3, 1, 4, 4)
    dataset = load_dataset(f"folder:{tmp_path}", 4, 3)
    assert dataset.flip and dataset.images.shape == (3, 3, 4, 4)


def test_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(UserFacingError, match="not a directory"):
        folder_images(tmp_path / "missing", 4, 3)
    with pytest.raises(UserFacingError, match="no image files"):
        folder_images(tmp_path, 4, 3)
    _solid(tmp_path / "good.png", "RGB", (1, 2, 3))
    with pytest.raises(UserFacingError, match="images have 3 channels, the model needs 4"):
        folder_images(tmp_path, 4, 4)
    good = (tmp_path / "good.png").read_bytes()
    (tmp_path / "truncated.png").write_bytes(good[: len(good) // 2])
    with pytest.raises(UserFacingError, match="truncated.png: not a readable image"):
        folder_images(tmp_path, 4, 3)
    (tmp_path / "truncated.png").write_bytes(b"garbage, not a PNG")
    with pytest.raises(UserFacingError, match="truncated.png: not a readable image"):
        folder_images(tmp_path, 4, 3)


@pytest.mark.parametrize("spec", ["folder", "cifar10", "digits:x", "imagenet:/data", ""])
def test_bad_dataset_specs(spec: str) -> None:
    with pytest.raises(UserFacingError, match="expected 'digits', 'folder:PATH' or 'cifar10:PATH'"):
        load_dataset(spec, 16, 1)


@pytest.mark.parametrize("spec, parsed", [
    ("digits", DataSpec("digits", None)),
    ("folder:a/b", DataSpec("folder", Path("a/b"))),
    ("cifar10:/data:x", DataSpec("cifar10", Path("/data:x"))),  # only the first colon separates
    ("folder", None), ("cifar10:", None), ("digits:x", None), ("imagenet:/data", None), ("", None),
])
def test_parse_spec(spec: str, parsed: DataSpec | None) -> None:
    assert parse_spec(spec) == parsed
