"""Build script: the package plus its torch extension ``adaskip_ext._C`` (sources in csrc/).

Install with ``pip install --no-build-isolation .`` so the build compiles against the installed
torch. CUDA kernels are built when torch has CUDA and a CUDA toolkit (nvcc and libcudart) is
found; no GPU is needed. Environment:

* ``ADASKIP_FORCE_CUDA=1``: a missing CUDA build is an error instead of a warning.
* ``ADASKIP_SKIP_CUDA=1``: build the CPU kernels only, even where CUDA could be built.
* ``TORCH_CUDA_ARCH_LIST``: architectures to compile for (default ``8.0;9.0`` with no GPU visible).
* ``CUDA_HOME``: the toolkit; checked, and replaced by ``/usr/local/cuda`` if it lacks nvcc/libcudart.
* ``MAX_JOBS``: parallel compile jobs.
"""
from __future__ import annotations

import glob
import json
import os
import sys
from pathlib import Path

from setuptools import setup

ROOT = Path(__file__).resolve().parent
SOURCE_LIST = ROOT / "csrc" / "sources.txt"
BUILD_INFO = ROOT / "adaskip_ext" / "_build_info.json"
DEFAULT_ARCH_LIST = "8.0;9.0"


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
    if any(candidates[:3]):
        warn(f"no CUDA toolkit (nvcc + libcudart) under {[c for c in candidates if c]}")
    return None


def library_headers(toolkit: str) -> list[str]:
    """Include folders for the CUDA math libraries torch's headers include (cusparse.h, ...).

    A minimal toolkit may ship nvcc and the runtime only; torch's CUDA wheels then bring the
    library headers as ``nvidia/*/include`` packages, which we use instead.
    """
    if os.path.isfile(os.path.join(toolkit, "include", "cusparse.h")):
        return []
    try:
        import nvidia
    except ImportError:
        return []
    return sorted({os.path.dirname(header) for root in nvidia.__path__
                   for header in glob.glob(os.path.join(root, "*", "include", "cusparse.h"))})


def extension_modules() -> tuple[list, dict]:
    """The ``_C`` extension (CUDA or CPU-only) and the build facts ``adaskip.info`` reports."""
    import torch
    from torch.utils import cpp_extension

    sources = read_sources()
    cpp_sources = [s for s in sources if s.endswith(".cpp")]
    cuda_sources = [s for s in sources if s.endswith(".cu")]
    force_cuda = os.environ.get("ADASKIP_FORCE_CUDA", "0") == "1"
    skip_cuda = os.environ.get("ADASKIP_SKIP_CUDA", "0") == "1"

    toolkit = (find_cuda_toolkit(cpp_extension.CUDA_HOME)
               if torch.version.cuda and not skip_cuda else None)
    with_cuda = toolkit is not None
    if not with_cuda:
        reason = ("ADASKIP_SKIP_CUDA=1" if skip_cuda
                  else "this torch has no CUDA" if torch.version.cuda is None
                  else "no CUDA toolkit was found (set CUDA_HOME)")
        if force_cuda:
            raise SystemExit(f"adaskip setup: ADASKIP_FORCE_CUDA=1 but {reason}")
        warn(f"building the CPU kernels only: {reason}")

    # torch adds the C++ standard it was built with; no FP traps lets GCC vectorise clamps;
    # at::parallel_for is only parallel when the extension itself is compiled with OpenMP (the
    # runtime is the libgomp torch already loaded).
    cxx_flags = ["-O3", "-fno-trapping-math", "-fopenmp", "-Wno-psabi"]
    link_flags = ["-fopenmp"]
    info = {"torch": torch.__version__, "cuda": with_cuda, "cuda_version": None,
            "arch_list": None}
    if with_cuda:
        # torch resolves CUDA_HOME at import; point it at the toolkit we checked.
        cpp_extension.CUDA_HOME = toolkit
        os.environ["CUDA_HOME"] = toolkit
        if not os.environ.get("TORCH_CUDA_ARCH_LIST") and not torch.cuda.is_available():
            os.environ["TORCH_CUDA_ARCH_LIST"] = DEFAULT_ARCH_LIST
        info.update(cuda_version=torch.version.cuda,
                    arch_list=os.environ.get("TORCH_CUDA_ARCH_LIST", "visible GPUs"))
        module = cpp_extension.CUDAExtension(
            "adaskip_ext._C", cpp_sources + cuda_sources,
            include_dirs=[str(ROOT / "csrc")] + library_headers(toolkit),
            extra_compile_args={"cxx": cxx_flags, "nvcc": ["-O3"]},
            extra_link_args=link_flags,
        )
    else:
        module = cpp_extension.CppExtension("adaskip_ext._C", cpp_sources,
                                            include_dirs=[str(ROOT / "csrc")],
                                            extra_compile_args={"cxx": cxx_flags},
                                            extra_link_args=link_flags)
    return [module], info


def main() -> None:
    from torch.utils.cpp_extension import BuildExtension

    modules, info = extension_modules()
    BUILD_INFO.write_text(json.dumps(info, indent=2) + "\n")
    setup(ext_modules=modules,
          cmdclass={"build_ext": BuildExtension.with_options(use_ninja=True)})


if __name__ == "__main__":
    main()
