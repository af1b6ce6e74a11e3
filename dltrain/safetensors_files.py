"""safetensors files a run writes and reads back: written atomically, their SHA-256 in their
metadata, and read only once it holds (files dltrain wrote all carry one: a missing one is
damage too). No code runs on load.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dltrain.files import UnreadableFile, atomic_write, read_regular

if TYPE_CHECKING:  # torch is imported where a file is saved or loaded
    import torch

SAFETENSORS_SEAL = "dltrain_sha256"


def save_safetensors(
    state_dict: dict[str, torch.Tensor], path: Path, metadata: dict[str, str] | None = None
) -> None:
    """Write a state_dict as safetensors atomically, its SHA-256 in the metadata."""
    from safetensors.torch import save

    tensors, storages = {}, set()
    for name, value in state_dict.items():
        tensor = value.detach().cpu().contiguous()
        storage = tensor.untyped_storage().data_ptr()
        if storage in storages and tensor.numel():  # safetensors refuses tensors sharing memory
            tensor = tensor.clone()
        storages.add(storage)
        tensors[name] = tensor
    header, body = _safetensors_parts(save(tensors, metadata=metadata))
    sealed = {**(metadata or {}), SAFETENSORS_SEAL: _safetensors_digest(header, body)}
    blob = save(tensors, metadata=sealed)
    atomic_write(Path(path), lambda f: f.write(blob))


def load_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """A verified safetensors file's tensors (no code runs on load)."""
    return load_safetensors_bytes(read_regular(path, "weights file"), path)


def load_safetensors_bytes(data: bytes, path: Path) -> dict[str, torch.Tensor]:
    """The tensors of the safetensors file `path`, read as `data`, once its checksum holds
    (files dltrain wrote all carry one: a missing one is damage too)."""
    from safetensors.torch import load

    try:
        header, body = _safetensors_parts(data)
    except ValueError as e:
        raise UnreadableFile(f"{path} is not a safetensors file ({e})") from None
    meta = header.get("__metadata__")
    expected = meta.get(SAFETENSORS_SEAL) if isinstance(meta, dict) else None
    if expected != _safetensors_digest(header, body):  # dltrain reads only files it sealed
        damage = "does not match" if expected else "is missing"
        raise UnreadableFile(f"{path} is corrupted: its SHA-256 checksum {damage}")
    try:
        return load(data)
    except Exception as e:  # safetensors' own checks of offsets and sizes
        raise UnreadableFile(f"{path} is not a valid safetensors file ({e})") from None


def _safetensors_parts(data: bytes) -> tuple[dict[str, Any], bytes]:
    """The parsed JSON header and the tensor bytes of a safetensors file."""
    size = int.from_bytes(data[:8], "little")
    if len(data) < 8 or size > len(data) - 8:
        raise ValueError("its header length is beyond the end of the file")
    try:
        header = json.loads(data[8 : 8 + size])
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"its header is not JSON: {e}") from None
    if not isinstance(header, dict):
        raise ValueError("its header is not a JSON object")
    return header, data[8 + size :]


def _safetensors_digest(header: dict[str, Any], body: bytes) -> str:
    """SHA-256 of the header (as canonical JSON, without the seal) and the tensor bytes."""
    meta = header.get("__metadata__")
    meta = (
        {k: v for k, v in meta.items() if k != SAFETENSORS_SEAL} if isinstance(meta, dict) else {}
    )
    canonical = json.dumps({**header, "__metadata__": meta}, sort_keys=True).encode()
    return hashlib.sha256(canonical + b"\0" + body).hexdigest()
