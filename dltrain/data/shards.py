"""WebDataset `.tar` shards: an index of their samples, and a stream of decoded samples.

A shard is a plain tar in which the files of one sample share a key (`dir/0001.jpg`,
`dir/0001.cls`: key `dir/0001`, as webdataset groups them). The index is built from the tar
headers (the label files, a few bytes each, are read too); the images themselves are read
sequentially while streaming. Only image bytes (decoded by torchvision.io) and integer labels are
ever read: nothing in a shard is unpickled or executed.
"""

from __future__ import annotations

import re
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torchvision.io import ImageReadMode, decode_image
from torchvision.transforms.v2.functional import resize

from dltrain.data.files import regular_file
from dltrain.errors import ConfigError

SOURCE = "dataset webdataset"
KEY = re.compile(r"^((?:.*/|)[^./]+)\.([^/]*)$")  # webdataset's key and extension of a member


@dataclass
class Shard:
    """One tar's samples in file order: where each image lies, its size and its label."""

    path: Path
    offsets: np.ndarray  # int64 byte offset of each sample's image data
    sizes: np.ndarray  # int64 byte size of each image
    labels: np.ndarray  # int64 class index

    def __len__(self) -> int:
        return len(self.labels)


def alternatives(image_key: str) -> list[str]:
    """The image extensions to look for, in order of preference ("jpg;png" -> [jpg, png])."""
    return [k.strip().lower() for k in image_key.split(";") if k.strip()]


def read_label(data: bytes, path: Path, key: str, label_key: str) -> int:
    """An integer label stored as text (webdataset's `.cls`)."""
    try:
        return int(data.decode("ascii").strip())
    except (UnicodeDecodeError, ValueError):
        raise ConfigError(
            f"{SOURCE}: {path}: {key}.{label_key} holds {data[:20]!r}, not an integer label"
        ) from None


def index_shard(path: Path, image_key: str, label_key: str) -> Shard:
    """The samples of one tar; a sample without the image or label key is a ConfigError."""
    regular_file(path, SOURCE)
    images, exts = alternatives(image_key), set()
    members: dict[str, dict[str, tarfile.TarInfo]] = {}
    try:
        with tarfile.open(path, "r:") as tar:  # headers only: the tar module seeks past data
            for info in tar:
                match = KEY.match(info.name) if info.isfile() else None
                if match:
                    members.setdefault(match[1], {})[match[2].lower()] = info
                    exts.add(match[2].lower())
            rows = []
            for key, files in members.items():
                image = next((files[k] for k in images if k in files), None)
                if image is None or label_key not in files:
                    wanted = image_key if image is None else label_key
                    raise ConfigError(
                        f"{SOURCE}: {path}: sample {key} has no '{wanted}' file; the shard's "
                        f"files have extensions {', '.join(sorted(exts))} (set dataset.image_key "
                        "/ dataset.label_key)"
                    )
                data = tar.extractfile(files[label_key]).read()
                label = read_label(data, path, key, label_key)
                rows.append((image.offset_data, image.size, label))
    except tarfile.TarError as e:
        raise ConfigError(f"{SOURCE}: {path} is not a readable tar file ({e})") from None
    if not rows:
        raise ConfigError(f"{SOURCE}: {path} holds no samples")
    table = np.asarray(rows, dtype=np.int64).reshape(-1, 3)
    return Shard(path, table[:, 0].copy(), table[:, 1].copy(), table[:, 2].copy())


def decode(data: bytes, size: int, where: str) -> torch.Tensor:
    """Image bytes (JPEG, PNG, GIF, WebP) as uint8 RGB (3, size, size), resized as uint8."""
    try:
        image = decode_image(
            torch.frombuffer(bytearray(data), dtype=torch.uint8), ImageReadMode.RGB
        )
    except RuntimeError as e:
        message = " ".join(str(e).split())[:120]
        raise ConfigError(f"{SOURCE}: cannot decode image {where} ({message})") from None
    if image.ndim == 4:  # an animated GIF: its first frame
        image = image[0]
    return resize(image, [size, size], antialias=True)


def read_at(shard: Shard, i: int) -> bytes:
    """The image bytes of a shard's sample i (random access, for a few samples)."""
    with open(shard.path, "rb") as f:
        f.seek(int(shard.offsets[i]))
        return f.read(int(shard.sizes[i]))


def shard_samples(shard: Shard):
    """(image bytes, label, where) of each sample, reading the tar front to back."""
    with open(shard.path, "rb") as f:
        for i in range(len(shard)):
            f.seek(int(shard.offsets[i]))  # forward only: the headers between samples
            yield f.read(int(shard.sizes[i])), int(shard.labels[i]), f"{shard.path}#{i}"


def buffered(samples, buffer: int, rng: np.random.Generator | None):
    """webdataset's shuffle buffer: hold up to `buffer` samples, hand out a random one."""
    if rng is None or buffer <= 1:
        yield from samples
        return
    held = []
    for sample in samples:
        held.append(sample)
        if len(held) >= buffer:
            j = int(rng.integers(len(held)))
            held[j], held[-1] = held[-1], held[j]
            yield held.pop()
    rng.shuffle(held)
    yield from held


def worker_shards(shards: list[Shard], workers: int, worker: int, pass_seed: int | None):
    """A rank's shards in this pass's order (seeded shuffle, or as listed), dealt to workers."""
    order = np.arange(len(shards))
    if pass_seed is not None:
        order = np.random.default_rng(pass_seed).permutation(len(shards))
    return [shards[i] for i in order[worker::workers]]


def worker_sizes(shards: list[Shard], workers: int, pass_seed: int | None) -> list[int]:
    """How many samples each worker of a rank streams in a pass."""
    return [sum(map(len, worker_shards(shards, workers, w, pass_seed))) for w in range(workers)]


def resume_skips(sizes: list[int], batch_size: int, taken: int) -> list[int]:
    """Samples of each worker among the first `taken` a rank got from its DataLoader.

    The DataLoader hands out its workers' batches in turn (worker 0, 1, ..., skipping those
    that ran out), which this replays.
    """
    skips, left = [0] * len(sizes), list(sizes)
    while taken > 0 and any(left):
        for w in range(len(sizes)):
            if left[w] and taken > 0:
                got = min(batch_size, left[w], taken)
                skips[w], left[w], taken = skips[w] + got, left[w] - got, taken - got
    return skips
