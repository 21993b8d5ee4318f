"""Build script: the package plus its torch extension ``adaskip_ext._C`` (sources in csrc/).

Install with ``pip install --no-build-isolation -e .`` so the build compiles against the
installed torch. The CUDA kernels are optional: they are built when torch has CUDA and a CUDA
toolkit (nvcc and libcudart) of torch's CUDA major version is found (no GPU is needed), and a
CUDA compile that fails falls back to the CPU kernels alone. Either way the outcome is recorded
in ``adaskip_ext/_build_info.json`` and shown by ``python -m adaskip_ext.info``. Environment:

* ``ADASKIP_FORCE_CUDA=1``: any reason not to build the CUDA kernels is an error.
* ``ADASKIP_SKIP_CUDA=1``: build the CPU kernels only, even where CUDA could be built.
* ``TORCH_CUDA_ARCH_LIST``: architectures to compile for (default ``8.0;9.0`` with no GPU visible).
* ``CUDA_HOME``: the toolkit; checked, and replaced by ``/usr/local/cuda`` if it lacks nvcc/libcudart.
* ``MAX_JOBS``: parallel compile jobs (with ninja).
"""
from __future__ import annotations

import contextlib
import glob
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Iterator

from setuptools import setup

ROOT = Path(__file__).resolve().parent
SOURCE_LIST = ROOT / "csrc" / "sources.txt"
BUILD_INFO = Path("adaskip_ext") / "_build_info.json"
DEFAULT_ARCH_LIST = "8.0;9.0"
# The composite ops (csrc/*.cpp) register their CUDA implementations only under this macro.
CUDA_MACRO = "-DADASKIP_WITH_CUDA"


def warn(message: str) -> None:
    print(f"adaskip setup: warning: {message}", file=sys.stderr)


def read_sources() -> list[str]:
    """The extension's sources, relative to the repository root, in csrc/sources.txt order."""
    lines = SOURCE_LIST.read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def is_toolkit(path: str | None) -> bool:
    """True when ``path`` holds nvcc and libcudart (a wrapper directory like /usr/local is not)."""
    if not path:
        return False
    libraries = glob.glob(os.path.join(path, "lib64", "libcudart.so*"))
    libraries += glob.glob(os.path.join(path, "lib", "libcudart.so*"))
    libraries += glob.glob(os.path.join(path, "targets", "*", "lib", "libcudart.so*"))
    return os.path.isfile(os.path.join(path, "bin", "nvcc")) and bool(libraries)


def find_cuda_toolkit(guessed: str | None) -> str | None:
    """The first real toolkit among $CUDA_HOME, $CUDA_PATH, torch's guess and /usr/local/cuda."""
    candidates = [os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), guessed,
                  "/usr/local/cuda"]
    for candidate in candidates:
        if is_toolkit(candidate):
            return candidate
    return None


def nvcc_version(toolkit: str) -> str:
    """nvcc's ``release X.Y``, e.g. ``13.0``; raises RuntimeError with one line when unreadable."""
    nvcc = os.path.join(toolkit, "bin", "nvcc")
    try:
        result = subprocess.run([nvcc, "--version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as error:
        raise RuntimeError(f"`{nvcc} --version` failed: {error}") from None
    found = re.search(r"release (\d+\.\d+)", result.stdout)
    if result.returncode != 0 or not found:
        output = (result.stderr or result.stdout).strip().splitlines()
        raise RuntimeError(f"`{nvcc} --version` failed (exit {result.returncode})"
                           + (f": {output[0]}" if output else ""))
    return found.group(1)


def major(version: str) -> str:
    return version.split(".")[0]


def library_headers(toolkit: str) -> list[str]:
    """Include folders for the CUDA math library headers torch's headers include (cusparse.h, ...)
    when the toolkit lacks them: torch's CUDA wheels bring them as ``nvidia/*/include``.

    They are searched after the toolkit's own folder (``-isystem``): those wheel folders also
    hold a CUDA runtime of torch's CUDA version, and the toolkit's compiler needs its own.
    """
    if os.path.isfile(os.path.join(toolkit, "include", "cusparse.h")):
        return []
    try:
        import nvidia
    except ImportError:
        return []
    return sorted({os.path.dirname(header) for root in nvidia.__path__
                   for header in glob.glob(os.path.join(root, "*", "include", "cusparse.h"))})


def first_error_line(log: str, error: BaseException) -> str:
    """The compiler's first error message in a build log, else the exception's first line."""
    lines = [line.strip() for line in log.splitlines()]
    for pattern in (r"(error|fatal)\b.*", r"\berror\b"):
        for line in lines:
            if line and not line.startswith(("[", "FAILED:", "ninja:")) and re.search(pattern, line, re.I):
                return line[:300]
    text = str(error).strip().splitlines()
    return (text[0] if text else type(error).__name__)[:300]


@contextlib.contextmanager
def captured_output(log: Path) -> Iterator[None]:
    """Send this process's stdout/stderr (and its compilers') to ``log``, then replay it."""
    log.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    try:
        with open(log, "wb") as handle:
            os.dup2(handle.fileno(), 1)
            os.dup2(handle.fileno(), 2)
            try:
                yield
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os.dup2(saved[0], 1)
                os.dup2(saved[1], 2)
    finally:
        os.close(saved[0])
        os.close(saved[1])
        if log.exists():
            sys.stdout.buffer.write(log.read_bytes())
            sys.stdout.flush()


class CudaPlan:
    """Whether to try the CUDA kernels, with the facts ``info`` reports either way."""

    def __init__(self) -> None:
        import torch
        from torch.utils import cpp_extension

        self.force = os.environ.get("ADASKIP_FORCE_CUDA", "0") == "1"
        self.torch_cuda: str | None = torch.version.cuda
        self.toolkit: str | None = None
        self.nvcc: str | None = None
        self.reason: str | None = None  # why the CUDA kernels are not (to be) built
        self.error: str | None = None   # the first error line of a failed CUDA compile
        if os.environ.get("ADASKIP_SKIP_CUDA", "0") == "1":
            self.reason = "ADASKIP_SKIP_CUDA=1 was set at install time"
        elif self.torch_cuda is None:
            self.reason = "this torch has no CUDA"
        else:
            self.toolkit = find_cuda_toolkit(cpp_extension.CUDA_HOME)
            if self.toolkit is None:
                self.reason = "no CUDA toolkit (nvcc + libcudart) was found; set CUDA_HOME"
            else:
                try:
                    self.nvcc = nvcc_version(self.toolkit)
                except RuntimeError as error:
                    self.reason = str(error)
                else:
                    if major(self.nvcc) != major(self.torch_cuda):
                        self.reason = (f"nvcc {self.nvcc} ({self.toolkit}) cannot build for torch's "
                                       f"CUDA {self.torch_cuda}: the major versions differ")
        if self.reason is not None:
            self.refuse_or_warn()

    @property
    def with_cuda(self) -> bool:
        return self.reason is None

    def refuse_or_warn(self) -> None:
        hint = (f"; for CUDA kernels install a CUDA {major(self.torch_cuda)}.x toolkit and "
                "reinstall" if self.torch_cuda and not self.reason.startswith("ADASKIP") else "")
        if self.force:
            raise SystemExit(f"adaskip setup: ADASKIP_FORCE_CUDA=1 but {self.reason}")
        warn(f"building the CPU kernels only: {self.reason}{hint}")

    def fail(self, error: BaseException, log: str) -> None:
        """Record a failed CUDA build; raises under ADASKIP_FORCE_CUDA."""
        self.error = first_error_line(log, error)
        self.reason = f"the CUDA build failed: {self.error}"
        self.refuse_or_warn()

    def info(self) -> dict:
        """The facts ``_build_info.json`` keeps."""
        import torch

        return {"torch": torch.__version__, "torch_cuda": self.torch_cuda, "nvcc": self.nvcc,
                "toolkit": self.toolkit, "cuda": self.with_cuda,
                "cuda_version": self.torch_cuda if self.with_cuda else None,
                "arch_list": (os.environ.get("TORCH_CUDA_ARCH_LIST", "visible GPUs")
                              if self.with_cuda else None),
                "cuda_reason": self.reason, "cuda_error": self.error}


# torch adds the C++ standard it was built with; no FP traps lets GCC vectorise clamps;
# at::parallel_for is only parallel when the extension itself is compiled with OpenMP (the
# runtime is the libgomp torch already loaded).
CXX_FLAGS = ["-O3", "-fno-trapping-math", "-fopenmp", "-Wno-psabi"]
LINK_FLAGS = ["-fopenmp"]


def cpu_extension():
    from torch.utils import cpp_extension

    sources = [s for s in read_sources() if s.endswith(".cpp")]
    return cpp_extension.CppExtension("adaskip_ext._C", sources, include_dirs=[str(ROOT / "csrc")],
                                      extra_compile_args={"cxx": list(CXX_FLAGS)},
                                      extra_link_args=list(LINK_FLAGS))


def cuda_extension(plan: CudaPlan):
    from torch.utils import cpp_extension

    # torch resolves CUDA_HOME at import; point it at the toolkit we checked.
    cpp_extension.CUDA_HOME = plan.toolkit
    os.environ["CUDA_HOME"] = plan.toolkit
    import torch

    if not os.environ.get("TORCH_CUDA_ARCH_LIST") and not torch.cuda.is_available():
        os.environ["TORCH_CUDA_ARCH_LIST"] = DEFAULT_ARCH_LIST
    fill_in = [flag for folder in library_headers(plan.toolkit) for flag in ("-isystem", folder)]
    # The .cu files first: ninja starts them first, the longest jobs, and the first to fail.
    sources = sorted(read_sources(), key=lambda source: not source.endswith(".cu"))
    return cpp_extension.CUDAExtension(
        "adaskip_ext._C", sources, include_dirs=[str(ROOT / "csrc")],
        extra_compile_args={"cxx": CXX_FLAGS + [CUDA_MACRO] + fill_in,
                            "nvcc": ["-O3", CUDA_MACRO] + fill_in},
        extra_link_args=list(LINK_FLAGS))


def build_command(plan: CudaPlan):
    """torch's build_ext, which falls back to the CPU kernels when the CUDA build fails."""
    from torch.utils.cpp_extension import BuildExtension

    class BuildWithCudaFallback(BuildExtension):
        compiling = False

        def finalize_options(self) -> None:
            super().finalize_options()
            if self.editable_mode:
                # An editable install builds in a new temporary folder each time; a fixed one
                # lets ninja recompile only what changed when the install is repeated.
                self.build_temp = str(ROOT / "build" / "editable")

        def build_extensions(self) -> None:
            try:
                super().build_extensions()
            except Exception as error:
                # torch's own checks (nvcc's version, the host compiler) run before any compile;
                # a failure there leaves the compiler unwrapped, so the CPU build can start anew.
                if not plan.with_cuda or self.compiling:
                    raise
                plan.fail(error, "")
                self.extensions = [self.as_cpu_only(ext) for ext in self.extensions]
                super().build_extensions()
            self.write_build_info()

        def build_extension(self, ext) -> None:
            self.compiling = True
            if not plan.with_cuda:
                super().build_extension(ext)
                return
            log = Path(self.build_temp) / "cuda-build.log"
            try:
                with captured_output(log):
                    super().build_extension(ext)
            except Exception as error:
                plan.fail(error, log.read_text(errors="replace") if log.exists() else "")
                super().build_extension(self.as_cpu_only(ext))

        def as_cpu_only(self, ext):
            """``ext`` rebuilt as the CPU-only extension (setuptools keeps state on the object)."""
            cpu = cpu_extension()
            for field in ("sources", "include_dirs", "library_dirs", "runtime_library_dirs",
                          "libraries", "define_macros", "extra_compile_args", "extra_link_args",
                          "language"):
                setattr(ext, field, getattr(cpu, field))
            self._add_compile_flag(ext, "-DTORCH_API_INCLUDE_EXTENSION_H")
            self._define_torch_extension_name(ext)
            return ext

        def write_build_info(self) -> None:
            text = json.dumps(plan.info(), indent=2) + "\n"
            (ROOT / BUILD_INFO).write_text(text)
            built = Path(self.build_lib) / BUILD_INFO  # build_py copied the planned one there
            if built.parent.is_dir():
                built.write_text(text)

    return BuildWithCudaFallback.with_options(use_ninja=True)


def main() -> None:
    plan = CudaPlan()
    (ROOT / BUILD_INFO).write_text(json.dumps(plan.info(), indent=2) + "\n")
    module = cuda_extension(plan) if plan.with_cuda else cpu_extension()
    setup(ext_modules=[module], cmdclass={"build_ext": build_command(plan)})


if __name__ == "__main__":
    main()
