"""dltrain's start-up against a minimal PyTorch Lightning script doing the same job.

Alternating in rounds (each round runs every contender once, in a shuffled order):
  dltrain      `dltrain trainer.epochs=1` (the default job: an MLP on digits) — the time to its
               first optimiser step (the wall time of metrics.jsonl's first train/loss record)
               and to the end of the process
  lightning    benchmarks/lightning_job.py: the same job in Lightning (first step, end)
  import       `python -c "import torch, torchvision"`: the floor every contender pays
  help         `dltrain --help`
Prints each round, the medians, the median of the per-round ratios, the machine (CPU model,
bf16 flags, CPUs, load average), and the top 10 imports of the dltrain job by cumulative time.

    .venv/bin/python benchmarks/startup.py --rounds 7
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent
HERE = Path(__file__).resolve().parent
JOB = ["trainer.epochs=1", "trainer.device=cpu", "trainer.log_every_n_steps=1"]


def timed(command: list[str]) -> tuple[float, float]:
    """(start wall time, seconds to the end) of a command run to completion."""
    start = time.time()
    subprocess.run(command, check=True, capture_output=True)
    return start, time.time() - start


def dltrain() -> dict[str, float]:
    run_dir = Path(tempfile.mkdtemp(prefix="startup-"))
    start, total = timed([str(BIN / "dltrain"), *JOB, f"hydra.run.dir={run_dir}"])
    with open(run_dir / "metrics.jsonl") as lines:
        first = next(json.loads(line) for line in lines if '"train/loss"' in line)
    return {"first_step": first["wall_time"] - start, "end": total}


def lightning() -> dict[str, float]:
    folder = Path(tempfile.mkdtemp(prefix="startup-"))
    times = folder / "times.json"
    start, total = timed(
        [sys.executable, str(HERE / "lightning_job.py"), str(times), "1", str(folder)]
    )
    return {"first_step": json.loads(times.read_text())["first_step"] - start, "end": total}


def bare_import() -> dict[str, float]:
    return {"end": timed([sys.executable, "-c", "import torch, torchvision"])[1]}


def help_text() -> dict[str, float]:
    return {"end": timed([str(BIN / "dltrain"), "--help"])[1]}


def machine() -> str:
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = re.search(r"model name\s*:\s*(.+)", info)
    flags = sorted(set(re.findall(r"\b(avx512_bf16|amx_bf16)\b", info))) or ["no bf16 flags"]
    cpus = len(os.sched_getaffinity(0))
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return f"{model[1] if model else 'unknown CPU'}, {', '.join(flags)}, {cpus} CPUs, load {load}"


def top_imports(n: int = 10) -> list[tuple[float, str]]:
    """The top-level imports of the dltrain job by cumulative seconds (-X importtime)."""
    run_dir = tempfile.mkdtemp(prefix="startup-")
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "dltrain", *JOB, f"hydra.run.dir={run_dir}"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    found = []
    for line in done.stderr.splitlines():
        match = re.match(r"import time:\s+\d+ \|\s+(\d+) \| (\s*)(\S+)", line)
        if match and len(match[2]) <= 1:  # imported by the program itself, not by a module
            found.append((int(match[1]) / 1e6, match[3]))
    return sorted(found, reverse=True)[:n]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    contenders = {
        "dltrain": dltrain,
        "lightning": lightning,
        "import": bare_import,
        "help": help_text,
    }
    results: dict[str, list[dict[str, float]]] = {name: [] for name in contenders}
    order = random.Random(0)
    print(f"machine: {machine()}")
    for round_ in range(args.rounds):
        for name in order.sample(list(contenders), len(contenders)):
            results[name].append(contenders[name]())
            shown = ", ".join(f"{k} {v:.2f} s" for k, v in results[name][-1].items())
            print(f"round {round_ + 1}: {name:<9} {shown}", flush=True)

    def median(name: str, key: str) -> float:
        return statistics.median(r[key] for r in results[name])

    def paired(a: str, b: str, key_a: str, key_b: str) -> float:
        pairs = zip(results[a], results[b], strict=True)
        return statistics.median(x[key_a] / y[key_b] for x, y in pairs)

    print(f"\nmachine after: {machine()}")
    print("| measure | median | median of per-round ratios |")
    print("|---|---|---|")
    print(
        f"| dltrain first step | {median('dltrain', 'first_step'):.2f} s | "
        f"{paired('dltrain', 'lightning', 'first_step', 'first_step'):.2f}x Lightning's |"
    )
    print(f"| Lightning first step | {median('lightning', 'first_step'):.2f} s | |")
    print(
        f"| dltrain 1-epoch job | {median('dltrain', 'end'):.2f} s | "
        f"{paired('dltrain', 'import', 'end', 'end'):.2f}x the bare import |"
    )
    print(
        f"| Lightning 1-epoch job | {median('lightning', 'end'):.2f} s | "
        f"{paired('lightning', 'import', 'end', 'end'):.2f}x the bare import |"
    )
    print(f"| `import torch, torchvision` | {median('import', 'end'):.2f} s | |")
    print(f"| `dltrain --help` | {median('help', 'end'):.2f} s | |")
    print("\ntop imports of the dltrain job (cumulative s):")
    for seconds, module in top_imports():
        print(f"  {seconds:6.2f}  {module}")


if __name__ == "__main__":
    main()
