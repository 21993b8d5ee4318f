#!/usr/bin/env bash
# Everything a lent GPU machine must check, in one call (under 5 minutes on an H100):
# build and install the extension against the machine's torch, run the GPU-marked tests, then
# benchmarks/depth.py, benchmarks/speedup.py (DDIM's x0 clipped, as the sample CLI's default;
# its JSON and table record it) and benchmarks/kernels.py at sizes that fit, each
# stage under its own time limit so one slow stage cannot cost the others' results. Without a
# GPU (or with --cpu) it runs the same stages in CPU mode at small sizes, skipping the build;
# CI runs that.
#   bash benchmarks/device_check.sh OUT_DIR [--cpu]
# OUT_DIR receives at most 8 files: log.txt (every stage's output), tests.txt, the benchmarks'
# JSON files and summary.md (device, every table, then a short summary: test tally, stage times
# and the targets of benchmarks/targets.py), whose short summary is also printed last.
set -uo pipefail
usage="usage: bash benchmarks/device_check.sh OUT_DIR [--cpu]"
[[ $# -ge 1 && $# -le 2 && $1 != -* && ${2:---cpu} == --cpu ]] || { echo "$usage" >&2; exit 2; }
out=$(mkdir -p "$1" && cd "$1" && pwd) || { echo "device_check.sh: cannot create $1" >&2; exit 2; }
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
mode=cuda
if [[ ${2:-} == --cpu ]] || ! $PY -c "import torch, sys; sys.exit(not torch.cuda.is_available())"; then
  mode=cpu
fi
# Stage limits are sized for the GPU machine; a shared 2-core CPU gets four times as long.
slack=$([[ $mode == cuda ]] && echo 1 || echo 4)
log="$out/log.txt"
: > "$log"
failed=()

# stage NAME SECONDS COMMAND...: run one stage for at most SECONDS, its output appended to
# log.txt, its time noted (SECONDS times $slack).
stage() {
  local name=$1 limit=$(($2 * slack)) start=$SECONDS; shift 2
  echo "== $name: $*" >> "$log"
  if timeout "$limit" "$@" >> "$log" 2>&1; then echo "== $name: ok in $((SECONDS - start)) s" >> "$log"
  else echo "== $name: FAILED in $((SECONDS - start)) s" >> "$log"; failed+=("$name"); fi
}

{
  echo "# Device check ($mode)"; echo
  $PY -c "import torch, triton, platform; print('torch', torch.__version__, '| triton', triton.__version__, '| python', platform.python_version())"
  [[ $mode == cuda ]] && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo "${ADASKIP_COMMIT:-unknown}")"
} > "$out/summary.md" 2>&1

if [[ $mode == cuda ]]; then
  # Never let pip resolve torch there: build against the one installed.
  stage build 150 env TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-9.0}" MAX_JOBS="${MAX_JOBS:-16}" \
    ADASKIP_FORCE_CUDA=1 $PY -m pip install -q --no-build-isolation --no-deps .
  # -P: import the installed package, not the source tree (which has no compiled _C). Spread
  # over 8 workers where pytest-xdist is there: Triton compiles each specialisation.
  workers=$($PY -c "import xdist" 2>/dev/null && echo "-n 8")
  stage tests 120 $PY -P -m pytest -q -p no:cacheprovider -m gpu -rfE $workers tests
  depth=(--device cuda --compile-batches 1)
  speedup=(--device cuda --dtypes fp32 bf16 --ddim-steps 50 --ddpm-steps 50 --repeats 2 --clip-x0)
  kernels=(--device cuda --batches 128)
else
  stage tests 120 $PY -P -m pytest -q -p no:cacheprovider -m gpu tests
  depth=(--device cpu --batches 1 --skip-types zero --repeats 3 --compile-batches)
  speedup=(--device cpu --ddim-steps 5 --ddpm-steps 5 --repeats 1 --skip-types zero --clip-x0)
  kernels=(--device cpu --batches 1 --repeats 5 --ops group_norm_silu)
fi
grep -E "[0-9]+ (passed|failed|skipped|deselected|errors?)" "$log" | tail -1 > "$out/tests.txt"
stage depth 150 $PY benchmarks/depth.py "${depth[@]}" --out "$out"
stage speedup 100 $PY benchmarks/speedup.py "${speedup[@]}" --out "$out"
stage kernels 90 $PY benchmarks/kernels.py "${kernels[@]}" --out "$out"

# summary.md: every table, then the short part that is also printed last.
for table in "$out"/*.md; do
  [[ $table == "$out/summary.md" ]] || { echo; cat "$table"; rm "$table"; } >> "$out/summary.md"
done
{
  echo; echo "## Summary"; echo
  echo "tests: $(cat "$out/tests.txt")"
  grep -E "^== .*(ok|FAILED) in" "$log"
  echo "failed stages: ${failed[*]:-none}"; echo
  $PY benchmarks/targets.py "$out"
} > "$out/short.md" 2>&1
cat "$out/short.md" >> "$out/summary.md"
rm "$out/short.md"
sed -n '/^## Summary/,$p' "$out/summary.md"
[[ ${#failed[@]} -eq 0 ]]
