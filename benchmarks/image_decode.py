"""Images/s of dltrain's image path (torchvision.io decode, uint8 resize) against the textbook
torchvision ImageFolder + PIL + ToTensor DataLoader, same workers; then one cnn_large epoch.

    python benchmarks/image_decode.py [--folder DIR] [--images 20000] [--workers 2]

The JPEG folder (Fashion-MNIST upscaled to 64x64 RGB) is made from ../shared/data/fashion-mnist
into --folder (default: a temp dir), never into the repo.
"""

from __future__ import annotations

import argparse
import gzip
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader

FASHION = Path(__file__).resolve().parents[2] / "shared/data/fashion-mnist/FashionMNIST/raw"


def make_folder(folder: Path, n: int) -> None:
    """n Fashion-MNIST training images as 64x64 RGB JPEGs in class folders (train/<class>/)."""
    with gzip.open(FASHION / "train-images-idx3-ubyte.gz") as f:
        images = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)[:n]
    with gzip.open(FASHION / "train-labels-idx1-ubyte.gz") as f:
        labels = np.frombuffer(f.read(), np.uint8, offset=8)[:n]
    for i, (image, label) in enumerate(zip(images, labels, strict=True)):
        path = folder / "train" / f"class{label}" / f"{i:05d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).convert("RGB").resize((64, 64)).save(path, quality=90)


def rate(loader: DataLoader) -> float:
    """Images per second over one pass (the workers' start-up included)."""
    start, count = time.perf_counter(), 0
    for x, _ in loader:
        count += len(x)
    return count / (time.perf_counter() - start)


def machine() -> str:
    info = Path("/proc/cpuinfo").read_text()
    cpu = next(
        (line.split(":", 1)[1].strip() for line in info.splitlines() if "model name" in line),
        platform.processor(),
    )
    flags = sorted(set(re.findall(r"avx512_bf16|amx_bf16", info)))
    load = " ".join(f"{v:.2f}" for v in os.getloadavg())
    return f"{cpu}, {os.cpu_count()} CPUs, flags [{' '.join(flags) or 'none'}], load {load}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--folder", type=Path)
    parser.add_argument("--images", type=int, default=20_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--no-train", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as temp:
        folder = args.folder or Path(temp)
        if not (folder / "train").is_dir():
            make_folder(folder, args.images)
        print(f"{args.images} JPEGs 64x64 in {folder}; {machine()}")
        from torchvision import datasets, transforms

        from dltrain.data.image_folder import ImageFiles, scan

        classes = sorted(d.name for d in (folder / "train").iterdir())
        ours = ImageFiles(*scan(folder / "train", classes), 64)
        textbook = datasets.ImageFolder(folder / "train", transform=transforms.ToTensor())
        common = {"batch_size": args.batch_size, "num_workers": args.workers, "shuffle": True}
        theirs_rate = rate(DataLoader(textbook, **common))
        ours_rate = rate(DataLoader(ours, **common, persistent_workers=args.workers > 0))
        print(f"textbook ImageFolder+PIL+ToTensor: {theirs_rate:,.0f} images/s")
        print(f"dltrain image_folder (torchvision.io, uint8): {ours_rate:,.0f} images/s "
              f"({ours_rate / theirs_rate:.2f}x), {args.workers} workers")  # fmt: skip
        if not args.no_train:
            command = [
                sys.executable, "-m", "dltrain", "model=cnn_large", "dataset=image_folder",
                f"dataset.root={folder}",
                "dataset.image_size=64", "trainer.epochs=1", f"trainer.num_workers={args.workers}",
                f"trainer.batch_size={args.batch_size}", "trainer.device=cpu",
                f"hydra.run.dir={Path(temp) / 'run'}",
            ]  # fmt: skip
            start = time.perf_counter()
            subprocess.run(command, check=True, capture_output=True)
            print(f"cnn_large, 1 epoch on {folder}: {time.perf_counter() - start:.1f} s (with "
                  f"start-up, val and test); load {os.getloadavg()[0]:.2f}")  # fmt: skip


if __name__ == "__main__":
    torch.set_num_threads(max(1, (os.cpu_count() or 2) // 2))
    main()
