"""The GPU check's own parts, on a CPU: the carried-wheels list and gpu_bench.py's table."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def gpu_deps():
    """benchmarks/gpu_deps.py as a module (benchmarks/ is no package)."""
    spec = importlib.util.spec_from_file_location("gpu_deps", BENCHMARKS / "gpu_deps.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_runtime_dependency_is_carried_or_expected() -> None:
    deps = gpu_deps()
    carried = {r.name.lower() for r in deps.requirements("carried")}
    expected = {r.name.lower() for r in deps.requirements("expected")}
    assert {"hydra-core", "omegaconf", "antlr4-python3-runtime"} <= carried
    assert not carried & expected
    project = tomllib.loads((BENCHMARKS.parent / "pyproject.toml").read_text())["project"]
    needed = {re.split(r"[<>=!~ \[]", d)[0].lower() for d in project["dependencies"]}
    assert needed - {"torch", "torchvision"} <= carried | expected  # they bring numpy, pillow


@pytest.mark.slow
def test_gpu_bench_writes_its_table_on_a_cpu(tmp_path: Path) -> None:
    # No MNIST given: scikit-learn's digits stand in; 16-mixed is not run without CUDA.
    out = tmp_path / "bench.md"
    command = [sys.executable, str(BENCHMARKS / "gpu_bench.py"), "--device", "cpu", "--epochs=1"]
    command += ["--variants", "32,16-mixed", "--out", str(out)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    title, _, header, rule, *rows = out.read_text().splitlines()
    assert title.startswith("experiment=mnist_fast on scikit-learn's digits scaled to 28x28")
    assert "1,422 training and 300 test images" in title  # 5% of 1,497 validate
    assert header.count("|") == rule.count("|") == 8 and len(rows) == 2
    assert rows[0].startswith("| 32 | ") and rows[0].count("|") == 8
    assert "not reached" in rows[0] or " s / " in rows[0]
    assert rows[1].startswith("| 16-mixed | not run: float16 autocast with a GradScaler needs CUDA")
