"""MNIST files for the GPU check: the real ones, a shortened copy, or digits in MNIST's layout.

A shortened copy keeps the check quick on a CPU; scikit-learn's bundled 8x8 digits, scaled up to
28x28, stand in where no MNIST files are (no download: the GPU machines reach no network).
"""

from __future__ import annotations

import argparse
import gzip
import struct
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from dltrain.data.files import plain_or_gz
from dltrain.data.vision import IDX_FILES, read_idx_set


def has_mnist(root: Path) -> bool:
    """Whether `root` holds MNIST/raw/ with its four IDX files (.gz or not)."""
    raw = root / "MNIST" / "raw"
    return all(plain_or_gz(raw / stem) for stem, _ in IDX_FILES.values())


def write_idx(path: Path, array: np.ndarray) -> None:
    """A gzipped IDX file of uint8 `array`."""
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(
        f">{array.ndim}I", *array.shape
    )
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def write_mnist(root: Path, arrays: dict[str, np.ndarray]) -> Path:
    """`arrays` (train/test images (N, 28, 28) and labels) as root/MNIST/raw/; returns root."""
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for key, (stem, _) in IDX_FILES.items():
        write_idx(raw / f"{stem}.gz", arrays[key])
    return root


def shortened(source: Path, target: Path, train: int, test: int) -> Path:
    """The first `train` training and `test` test images of the MNIST files under `source`."""
    arrays = read_idx_set("mnist", source / "MNIST" / "raw")  # images (N, 1, 28, 28)
    kept = {"train": train, "test": test}
    first = {key: value[: kept[key.split("_")[0]]] for key, value in arrays.items()}
    return write_mnist(target, {k: v[:, 0] if v.ndim == 4 else v for k, v in first.items()})


def digits_as_mnist(target: Path) -> Path:
    """scikit-learn's 1,797 digits (8x8, 0-16) as 28x28 uint8 MNIST files: 1,497 train, 300 test."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    small = torch.tensor(digits.images, dtype=torch.float32)[:, None] / 16
    large = F.interpolate(small, size=(28, 28), mode="bilinear", align_corners=False)
    images = (large.squeeze(1) * 255).round().clamp(0, 255).to(torch.uint8).numpy()
    labels = digits.target.astype(np.uint8)
    return write_mnist(
        target,
        {
            "train_images": images[:-300],
            "train_labels": labels[:-300],
            "test_images": images[-300:],
            "test_labels": labels[-300:],
        },
    )


def mnist_root(source: Path | None, target: Path, train: int | None, test: int | None) -> Path:
    """A data root with MNIST/raw/: `source` as it is, shortened into `target`, or digits there.

    A root made here says what it holds in ABOUT.txt (see `about`).
    """
    if source is None or not has_mnist(source):
        root, what = digits_as_mnist(target), "scikit-learn's digits scaled to 28x28 (no MNIST)"
    elif train is None and test is None:
        return source
    else:
        root, what = shortened(source, target, train or 60_000, test or 10_000), "MNIST, shortened"
    (root / "ABOUT.txt").write_text(what)
    return root


def about(root: Path) -> str:
    """What a data root holds: its ABOUT.txt, else MNIST."""
    note = root / "ABOUT.txt"
    return note.read_text() if note.is_file() else "MNIST"


def main() -> None:
    """`mnist_files.py TARGET [--source ROOT] [--train N] [--test N]`: prints the data root."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("target", type=Path, help="where a shortened copy or digits go")
    parser.add_argument("--source", type=Path, help="a data root holding MNIST/raw/")
    parser.add_argument("--train", type=int, help="keep the first N training images")
    parser.add_argument("--test", type=int, help="keep the first N test images")
    args = parser.parse_args()
    print(mnist_root(args.source, args.target, args.train, args.test))


if __name__ == "__main__":
    main()
