"""setup.py: toolkit detection (a wrapper folder with only an nvcc script is not a toolkit), the
decision to build the CUDA kernels, the record of a failed CUDA build, the include order, the
sources each build compiles."""
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


def fake_nvcc(root: Path, script: str) -> Path:
    """A toolkit whose nvcc runs ``script`` (sh)."""
    toolkit = fake_toolkit(root)
    nvcc = toolkit / "bin" / "nvcc"
    nvcc.write_text(f"#!/bin/sh\n{script}\n")
    nvcc.chmod(0o755)
    return toolkit


@pytest.fixture
def cuda_torch(monkeypatch):
    """torch reporting CUDA 13.2, whatever build is installed; no variable of ours set."""
    import torch

    monkeypatch.setattr(torch.version, "cuda", "13.2")
    for name in ("ADASKIP_FORCE_CUDA", "ADASKIP_SKIP_CUDA", "CUDA_PATH"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_every_source_in_csrc_is_compiled(setup_module, cuda_torch, tmp_path):
    """A .cpp or .cu file left out of csrc/sources.txt would silently not be built: both
    extensions setup.py can build get every one (the CPU one every .cpp)."""
    root = SETUP.parent
    on_disk = {path.relative_to(root).as_posix() for path in (root / "csrc").rglob("*")
               if path.suffix in (".cpp", ".cu")}
    assert any(s.endswith(".cu") for s in on_disk) and any(s.endswith(".cpp") for s in on_disk)
    assert set(setup_module.cpu_extension().sources) == {s for s in on_disk if s.endswith(".cpp")}
    toolkit = fake_nvcc(tmp_path / "cuda", 'echo "Cuda compilation tools, release 13.0, V13.0.88"')
    cuda_torch.setenv("CUDA_HOME", str(toolkit))
    cuda_torch.setenv("TORCH_CUDA_ARCH_LIST", "9.0")
    from torch.utils import cpp_extension

    cuda_torch.setattr(cpp_extension, "CUDA_HOME", cpp_extension.CUDA_HOME)  # restored after
    extension = setup_module.cuda_extension(setup_module.CudaPlan())
    assert set(extension.sources) == on_disk


def test_older_minor_toolkit_is_used(setup_module, cuda_torch, tmp_path):
    toolkit = fake_nvcc(tmp_path / "cuda", 'echo "Cuda compilation tools, release 13.0, V13.0.88"')
    cuda_torch.setenv("CUDA_HOME", str(toolkit))
    plan = setup_module.CudaPlan()
    assert plan.with_cuda and plan.nvcc == "13.0" and plan.toolkit == str(toolkit)
    assert plan.info()["cuda"] and plan.info()["cuda_reason"] is None


def test_major_version_mismatch_builds_the_cpu_kernels_without_compiling(setup_module, cuda_torch,
                                                                         tmp_path, capsys):
    toolkit = fake_nvcc(tmp_path / "cuda", 'echo "Cuda compilation tools, release 12.4, V12.4.131"')
    cuda_torch.setenv("CUDA_HOME", str(toolkit))
    plan = setup_module.CudaPlan()
    assert not plan.with_cuda
    assert "nvcc 12.4" in plan.reason and "CUDA 13.2" in plan.reason and "major" in plan.reason
    assert "install a CUDA 13.x toolkit" in capsys.readouterr().err
    cuda_torch.setenv("ADASKIP_FORCE_CUDA", "1")
    with pytest.raises(SystemExit, match="ADASKIP_FORCE_CUDA=1 but nvcc 12.4"):
        setup_module.CudaPlan()


def test_unreadable_nvcc_and_skip_are_reasons(setup_module, cuda_torch, tmp_path):
    toolkit = fake_nvcc(tmp_path / "cuda", 'echo "broken install" >&2; exit 3')
    cuda_torch.setenv("CUDA_HOME", str(toolkit))
    plan = setup_module.CudaPlan()
    assert not plan.with_cuda and "exit 3" in plan.reason and "broken install" in plan.reason
    cuda_torch.setenv("ADASKIP_SKIP_CUDA", "1")
    assert setup_module.CudaPlan().reason == "ADASKIP_SKIP_CUDA=1 was set at install time"


def test_failed_cuda_compile_is_recorded_with_its_first_error(setup_module, cuda_torch, tmp_path):
    toolkit = fake_nvcc(tmp_path / "cuda", 'echo "Cuda compilation tools, release 13.0, V13.0.88"')
    cuda_torch.setenv("CUDA_HOME", str(toolkit))
    plan = setup_module.CudaPlan()
    log = "\n".join([
        "[1/8] /usr/local/cuda/bin/nvcc -c bicubic_resize.cu -Werror=foo -o bicubic_resize.o",
        "FAILED: bicubic_resize.o",
        "/usr/local/cuda/include/cccl/cuda_toolkit.h(39): error: #error \"CUDA compiler and CUDA "
        "toolkit headers are incompatible\"",
        "1 error detected in the compilation of \"bicubic_resize.cu\".",
        "ninja: build stopped: subcommand failed.",
    ])
    plan.fail(RuntimeError("Error compiling objects for extension"), log)
    info = plan.info()
    assert not info["cuda"] and info["cuda_error"].startswith("/usr/local/cuda/include/cccl/cuda_toolkit.h(39): error")
    assert info["cuda_reason"] == f"the CUDA build failed: {info['cuda_error']}"
    assert setup_module.first_error_line("", RuntimeError("no log\nsecond")) == "no log"
    cuda_torch.setenv("ADASKIP_FORCE_CUDA", "1")
    with pytest.raises(SystemExit, match="the CUDA build failed"):
        setup_module.CudaPlan().fail(RuntimeError("x"), log)


def test_wheel_headers_come_after_the_toolkit(setup_module, cuda_torch, tmp_path):
    toolkit = fake_nvcc(tmp_path / "cuda", 'echo "Cuda compilation tools, release 13.0, V13.0.88"')
    cuda_torch.setenv("CUDA_HOME", str(toolkit))
    cuda_torch.setenv("TORCH_CUDA_ARCH_LIST", "9.0")
    wheel_include = tmp_path / "nvidia" / "cu13" / "include"
    wheel_include.mkdir(parents=True)
    (wheel_include / "cusparse.h").write_text("")
    cuda_torch.setattr(setup_module, "library_headers", lambda toolkit: [str(wheel_include)])
    from torch.utils import cpp_extension

    cuda_torch.setattr(cpp_extension, "CUDA_HOME", cpp_extension.CUDA_HOME)  # restored after
    extension = setup_module.cuda_extension(setup_module.CudaPlan())
    assert str(wheel_include) not in extension.include_dirs  # -I folders precede -isystem ones
    for flags in extension.extra_compile_args.values():
        assert flags[flags.index("-isystem") + 1] == str(wheel_include)
        assert setup_module.CUDA_MACRO in flags
