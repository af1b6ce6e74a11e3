#!/usr/bin/env bash
# Fills .whl/ (git-ignored) with what benchmarks/gpu_check.sh needs on a GPU machine that has
# PyTorch but reaches no package registry: the wheels of the "carried" block of
# benchmarks/gpu_requirements.txt for CPython 3.11 and 3.12 on x86-64 Linux, and MNIST's four
# files when found here (.whl/mnist/MNIST/raw/). Run it where pip reaches a registry; carry .whl/
# with the working tree (everything stays under 64 MiB; the script fails otherwise).
#
#   bash benchmarks/gpu_wheels.sh
#   PYTHON_VERSIONS="3.12" MNIST_DIR=~/data bash benchmarks/gpu_wheels.sh
#
# PYTHON (default python3) runs pip; MNIST_DIR (default $DLTRAIN_DATA_DIR, else
# ../shared/data/mnist) is a data root that holds MNIST/raw/.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
dest=.whl
limit=$((64 * 1024 * 1024))

# The carried block, without comments; antlr4's runtime 4.9 is published as an sdist only.
mapfile -t carried < <(sed -n '/^# carried/,/^# expected/p' benchmarks/gpu_requirements.txt |
    grep -v '^#' | grep . || true)
binary=()
for requirement in "${carried[@]}"; do
    [[ $requirement == antlr4-python3-runtime* ]] || binary+=("$requirement")
done

rm -rf "$dest"
mkdir -p "$dest"
for version in ${PYTHON_VERSIONS:-3.11 3.12}; do
    echo "wheels for CPython $version"
    # pip matches manylinux tags exactly: name the ones the wheels here are published with.
    "$python" -m pip download --quiet --no-deps --only-binary=:all: --dest "$dest" \
        --implementation cp --python-version "$version" \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
        --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 --platform manylinux1_x86_64 \
        "${binary[@]}"
done
for requirement in "${carried[@]}"; do
    if [[ $requirement == antlr4-python3-runtime* ]]; then
        echo "building a wheel of $requirement (pure Python)"
        "$python" -m pip wheel --quiet --no-deps --wheel-dir "$dest" "$requirement"
    fi
done

for root in "${MNIST_DIR:-}" "${DLTRAIN_DATA_DIR:-}" ../shared/data/mnist; do
    raw=$root/MNIST/raw
    if [[ -n $root && -f $raw/train-images-idx3-ubyte.gz && -f $raw/t10k-labels-idx1-ubyte.gz ]]; then
        mkdir -p "$dest/mnist/MNIST/raw"
        cp "$raw"/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz "$dest/mnist/MNIST/raw/"
        echo "MNIST from $raw"
        break
    fi
done
[[ -d $dest/mnist ]] || echo "no MNIST files found: gpu_check.sh will train on digits instead"

size=$(du -sb "$dest" | cut -f1)
echo "$(find "$dest" -name '*.whl' | wc -l) wheels; $dest holds $((size / 1024 / 1024)) MiB ($size bytes)"
if ((size > limit)); then
    echo "gpu_wheels.sh: $dest is over 64 MiB: carry fewer Python versions (PYTHON_VERSIONS)" >&2
    exit 1
fi
