"""setup.py's toolkit detection: a wrapper folder with only an nvcc script is not a toolkit."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

SETUP = Path(__file__).resolve().parents[1] / "setup.py"


@pytest.fixture(scope="module")
def setup_module():
    spec = importlib.util.spec_from_file_location("adaskip_setup", SETUP)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # defines functions only: main() runs as __main__
    return module


def fake_toolkit(root: Path, runtime: str | None = "lib64/libcudart.so.13") -> Path:
    (root / "bin").mkdir(parents=True)
    (root / "bin" / "nvcc").write_text("#!/bin/sh\n")
    if runtime:
        (root / runtime).parent.mkdir(parents=True, exist_ok=True)
        (root / runtime).write_text("")
    return root


def test_toolkit_needs_nvcc_and_libcudart(setup_module, tmp_path):
    assert setup_module.is_toolkit(str(fake_toolkit(tmp_path / "full")))
    assert setup_module.is_toolkit(str(fake_toolkit(tmp_path / "targets",
                                                    "targets/x86_64-linux/lib/libcudart.so")))
    assert not setup_module.is_toolkit(str(fake_toolkit(tmp_path / "wrapper", None)))
    assert not setup_module.is_toolkit(None)


def test_bad_cuda_home_falls_through_to_a_real_toolkit(setup_module, tmp_path, monkeypatch):
    wrapper = fake_toolkit(tmp_path / "wrapper", None)
    real = fake_toolkit(tmp_path / "real")
    monkeypatch.setenv("CUDA_HOME", str(wrapper))
    monkeypatch.delenv("CUDA_PATH", raising=False)
    assert setup_module.find_cuda_toolkit(str(real)) == str(real)
    monkeypatch.setenv("CUDA_HOME", str(real))
    assert setup_module.find_cuda_toolkit(str(wrapper)) == str(real)


def test_source_list_is_shared_with_cmake(setup_module):
    sources = setup_module.read_sources()
    assert sources and all((SETUP.parent / s).is_file() for s in sources)
    assert any(s.endswith(".cu") for s in sources) and any(s.endswith(".cpp") for s in sources)
    assert "csrc/sources.txt" in (SETUP.parent / "CMakeLists.txt").read_text()
