#!/usr/bin/env bash
# The GPU check in one command: from a GPU machine that has PyTorch but reaches no package
# registry to a Markdown report, within 8 minutes on one H200. From the repository root:
#   1. installs the carried wheels (.whl/, from benchmarks/gpu_wheels.sh) this Python lacks, with
#      pip --no-index --no-deps --target, and puts them first on PYTHONPATH;
#   2. prints the environment: Python, torch, CUDA, cuDNN, NCCL, the GPUs, dltrain's needs;
#   3. runs the CUDA tests (tests/test_cuda.py, tests/test_device_paths.py);
#   4. times the whole `dltrain experiment=mnist_fast` command;
#   5. measures experiment=mnist_fast in float32, bf16-mixed and 16-mixed, eager and compiled,
#      against a plain loop over GPU tensors (benchmarks/gpu_bench.py), in the time left.
# DLTRAIN_GPU_CHECK_DEVICE=cpu does the same on a CPU, shortened (a few minutes on 2 cores).
#
#   bash benchmarks/gpu_check.sh
#   DLTRAIN_GPU_CHECK_DEVICE=cpu bash benchmarks/gpu_check.sh
#
# Writes gpu_check.md (the report), env.txt, tests.log, command.log and bench.log into
# $DLTRAIN_GPU_CHECK_OUT (default: $OUT where set, else gpu_check/). MNIST: the first of
# $DLTRAIN_DATA_DIR, .whl/mnist, ../shared/data/mnist, shared/data/mnist that holds MNIST/raw/;
# else scikit-learn's digits stand in. PYTHON: the interpreter (python3);
# DLTRAIN_GPU_CHECK_SECONDS: the time budget (480); DLTRAIN_GPU_CHECK_VARIANTS: gpu_bench.py's
# --variants (all six on a GPU). Exits with the tests' exit code.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
device=${DLTRAIN_GPU_CHECK_DEVICE:-cuda}
python=${PYTHON:-python3}
budget=${DLTRAIN_GPU_CHECK_SECONDS:-480}
out=${DLTRAIN_GPU_CHECK_OUT:-${OUT:-gpu_check}}
mkdir -p "$out" && out=$(cd "$out" && pwd)
scratch=$(mktemp -d)
site=${DLTRAIN_GPU_CHECK_SITE:-$scratch/site}  # fresh each run: nothing stale shadows the machine
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg
step() { printf '\n== %s (%d s)\n' "$*" "$SECONDS"; }

step "carried wheels"
if [[ -d .whl ]]; then
    mapfile -t needed < <("$python" benchmarks/gpu_deps.py carried | grep .)
    install=("$python" -m pip install --quiet --no-index --no-deps --no-compile --upgrade
        --find-links .whl --target "$site")
    if ((${#needed[@]})) && ! "${install[@]}" "${needed[@]}"; then
        for requirement in "${needed[@]}"; do  # one at a time: install all that are there
            "${install[@]}" "$requirement" || echo "not installed: $requirement (not in .whl/)"
        done
    fi
    echo "installed into $site: ${needed[*]:-nothing (this Python has them all)}"
else
    echo "no .whl/ here (benchmarks/gpu_wheels.sh makes it): using what this Python has"
fi
export PYTHONPATH="$site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
absent=$("$python" benchmarks/gpu_deps.py expected | grep . | tr '\n' ' ')
[[ -z $absent ]] || echo "WARNING: this machine lacks (and .whl/ does not carry): $absent"

step "environment"
{
    date -u '+%Y-%m-%d %H:%M UTC'
    echo "$(uname -srm), $(nproc) CPUs; check device: $device"
    command -v nvidia-smi >/dev/null && nvidia-smi -L
    "$python" - <<'EOF'
import sys, torch
print(f"Python {sys.version.split()[0]} ({sys.executable}); torch {torch.__version__}")
if torch.cuda.is_available():
    nccl = torch.cuda.nccl.version()  # a tuple; an int in older releases
    nccl = ".".join(map(str, nccl)) if isinstance(nccl, tuple) else nccl
    print(f"CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}, NCCL {nccl}")
    for i in range(torch.cuda.device_count()):
        p = torch.cuda.get_device_properties(i)
        print(f"cuda:{i} {p.name}, {p.total_memory / 2**30:.0f} GiB, sm_{p.major}{p.minor}")
else:
    print("no CUDA device")
EOF
    "$python" benchmarks/gpu_deps.py versions
} 2>&1 | tee "$out/env.txt"

step "CUDA tests"
limit=180
[[ $device == cuda ]] && limit=270
timeout "$limit" "$python" -m pytest -q -p no:cacheprovider \
    tests/test_cuda.py tests/test_device_paths.py 2>&1 | tee "$out/tests.log"
tests=${PIPESTATUS[0]}

step "MNIST"
mnist=
for root in "${DLTRAIN_DATA_DIR:-}" .whl/mnist ../shared/data/mnist shared/data/mnist; do
    [[ -n $root && -d $root/MNIST/raw ]] && mnist=$(cd "$root" && pwd) && break
done
shorten=()
[[ $device == cuda ]] || shorten=(--train 3000 --test 1000)  # a CPU: a few minutes in all
if [[ -z $mnist || ${#shorten[@]} -gt 0 ]]; then
    mnist=$("$python" benchmarks/mnist_files.py "$scratch/mnist" ${mnist:+--source "$mnist"} \
        "${shorten[@]}")
fi
echo "data root: $mnist"

step "the whole command: dltrain experiment=mnist_fast"
started=$SECONDS
timeout 240 "$python" -m dltrain experiment=mnist_fast "dataset.data_dir=$mnist" \
    "trainer.device=$device" "hydra.run.dir=$scratch/run" >"$out/command.log" 2>&1
whole=$("$python" - "$scratch/run/metrics.json" $((SECONDS - started)) <<'EOF'
import json, sys
try:
    summary = json.load(open(sys.argv[1]))
    acc = summary["metrics"]["test/acc"]
    print(f"{summary['status']}, test acc {acc:.2%}, {sys.argv[2]} s wall (start-up, data, "
          f"{summary.get('steps', '?')} steps, validation, checkpoints, test)")
except (OSError, KeyError, ValueError) as e:
    print(f"failed ({type(e).__name__}: {e}); see command.log")
EOF
)
echo "$whole"

step "dltrain's loop against a plain loop"
left=$((budget - SECONDS - 20))
variants=()
[[ $device == cuda ]] || variants=(--variants "32,bf16-mixed,16-mixed,bf16-mixed+compile")
[[ -z ${DLTRAIN_GPU_CHECK_VARIANTS:-} ]] || variants=(--variants "$DLTRAIN_GPU_CHECK_VARIANTS")
timeout $((left > 30 ? left + 30 : 60)) "$python" benchmarks/gpu_bench.py --device "$device" \
    --data-dir "$mnist" --budget "$left" --out "$scratch/bench.md" "${variants[@]}" 2>&1 |
    tee "$out/bench.log"

step "report"
{
    echo "# dltrain GPU check"
    echo
    sed 's/^/    /' "$out/env.txt"
    echo
    echo "CUDA tests (tests/test_cuda.py, tests/test_device_paths.py): $(tail -n 1 "$out/tests.log")"
    echo
    echo "\`dltrain experiment=mnist_fast trainer.device=$device\`: $whole"
    echo
    cat "$scratch/bench.md" 2>/dev/null || echo "no benchmark table: see bench.log"
    echo
    echo "gpu_check.sh took $SECONDS s."
} >"$out/gpu_check.md"
cat "$out/gpu_check.md"
rm -rf "$scratch"
exit "$tests"
