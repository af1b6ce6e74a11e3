"""dltrain-export: a trained model as TorchScript, ONNX or safetensors, checked against PyTorch.

The whole-model pickle (`torch.save(model)`) is not offered: loading it runs arbitrary code, and
it breaks as soon as the model's classes move or change. The state_dict plus the resolved config
(checkpoints, model.pt), safetensors weights, TorchScript and ONNX replace it. Every export takes
the model's own input: preprocessed features or images, or token ids (0 = padding) for text.
"""

from __future__ import annotations

import io
import json
import sys
import warnings
from collections.abc import Sequence
from importlib.util import find_spec
from pathlib import Path

import torch
from torch import nn

from dltrain import __version__
from dltrain.command_line import parse_args, plugin_options
from dltrain.data.splits import DataMeta
from dltrain.errors import ConfigError, did_you_mean
from dltrain.failures import command
from dltrain.files import atomic_write, read_regular, seal, verified_zip
from dltrain.finished_run import FinishedRun, load_run, rebuild_model
from dltrain.modalities.lookup import modality_of
from dltrain.safetensors_files import load_safetensors, save_safetensors

FORMATS = {
    "torchscript": "model.torchscript.pt",
    "onnx": "model.onnx",
    "safetensors": "model.safetensors",
}
ONNX_PACKAGES = ("onnx", "onnxruntime")  # the `export` extra
TOLERANCE = 1e-4  # absolute and relative: kernels differ between runtimes, weights do not


def example_batch(meta: DataMeta, size: int, length: int, seed: int) -> torch.Tensor:
    """Random model inputs of the run's modality (`length`: of variable-length inputs)."""
    generator = torch.Generator().manual_seed(seed)
    return modality_of(meta).example_batch(meta, size, length, generator)


def export_torchscript(model: nn.Module, example: torch.Tensor, path: Path) -> None:
    """Trace the model on `example` and save the TorchScript module."""
    with warnings.catch_warnings():  # torch.jit's deprecation notices; export() checks the result
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(model, example, check_trace=False)
        buffer = io.BytesIO()
        torch.jit.save(traced, buffer)
    blob = seal(buffer.getvalue())  # a zip, like a checkpoint: its SHA-256 in the comment
    atomic_write(path, lambda f: f.write(blob))


def load_torchscript(path: Path) -> torch.jit.ScriptModule:
    """A saved TorchScript module, checksum verified (without torch.jit's deprecation notice)."""
    data = verified_zip(path, read_regular(path, "TorchScript file"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return torch.jit.load(io.BytesIO(data), map_location="cpu")


def export_onnx(model: nn.Module, example: torch.Tensor, path: Path, variable_length: bool) -> None:
    """ONNX via the TorchScript-based exporter, batch (and length) axis dynamic."""
    axes = {0: "batch", 1: "length"} if variable_length else {0: "batch"}
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (example,),
            buffer,
            dynamo=False,
            input_names=["input"],
            output_names=["output"],
            dynamic_axes={"input": axes, "output": {0: "batch"}},
        )
    atomic_write(path, lambda f: f.write(buffer.getvalue()))


def onnx_outputs(path: Path, x: torch.Tensor) -> torch.Tensor:
    """Run an ONNX file with onnxruntime on the CPU."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return torch.from_numpy(session.run(None, {"input": x.numpy()})[0])


def export(run: FinishedRun, fmt: str, path: Path) -> tuple[float, bool]:
    """Write `fmt` to `path`, reload it and compare with PyTorch on a differently shaped batch.

    Returns the max absolute difference of the outputs and whether they agree within TOLERANCE.
    """
    model, meta = run.model.float().eval(), run.meta
    example = example_batch(meta, 4, 12, seed=0)
    check = example_batch(meta, 3, 7, seed=1)  # another batch size (and length): dynamic axes
    with torch.no_grad():
        expected = model(check)
        if fmt == "torchscript":
            export_torchscript(model, example, path)
            got = load_torchscript(path)(check)
        elif fmt == "onnx":
            export_onnx(model, example, path, modality_of(meta).variable_length)
            got = onnx_outputs(path, check)
        else:
            save_safetensors(model.state_dict(), path, safetensors_metadata(run))
            got = rebuild_model(run.cfg, meta, load_safetensors(path))(check)
    if got.shape != expected.shape:
        return float("inf"), False
    diff = (got - expected).abs().max().item() if got.numel() else 0.0
    return diff, torch.allclose(got, expected, rtol=TOLERANCE, atol=TOLERANCE)


def safetensors_metadata(run: FinishedRun) -> dict[str, str]:
    """What rebuilds the model around the weights: resolved config and data meta, as JSON."""
    from omegaconf import OmegaConf

    return {
        "format": "pt",
        "dltrain_version": __version__,
        "config": json.dumps(OmegaConf.to_container(run.cfg, resolve=True)),
        "data_meta": json.dumps(run.meta.to_dict()),
    }


def check_format(fmt: str | None) -> str:
    """The format name, or a ConfigError naming the choices (and a missing package)."""
    if fmt not in FORMATS:
        hint = did_you_mean(fmt, FORMATS) if fmt else ""
        raise ConfigError(f"format={fmt or ''}: choose one of {', '.join(FORMATS)}.{hint}")
    if fmt == "onnx" and (absent := [p for p in ONNX_PACKAGES if find_spec(p) is None]):
        missing = " and ".join(absent)
        raise ConfigError(f"format=onnx needs {missing}: pip install 'dltrain[export]'")
    return fmt


def main(argv: Sequence[str] | None = None) -> None:
    """`dltrain-export RUN_DIR|CHECKPOINT format=torchscript|onnx|safetensors [output=PATH]`."""

    def body() -> None:
        usage = "RUN_DIR|CHECKPOINT format=torchscript|onnx|safetensors [output=PATH]"
        defaults = {"format": None, "output": None}
        args = sys.argv[1:] if argv is None else argv
        source, named, overrides = parse_args(args, "dltrain-export", usage, defaults)
        if overrides:
            raise ConfigError(f"{overrides[0]}: dltrain-export takes no overrides")
        fmt = check_format(named["format"])
        # exported from the CPU, in float32
        run = load_run(source, ["trainer.device=cpu"], *plugin_options(named))
        output = Path(named["output"] or run.run_dir / FORMATS[fmt])
        try:
            diff, same = export(run, fmt, output)
        except Exception as e:  # an operation the exporter cannot handle: one line, exit 1
            reason = (str(e).strip().splitlines() or [""])[0][:300]
            print(
                f"dltrain-export: format={fmt} failed for model {run.cfg.model.name}: "
                f"{type(e).__name__}: {reason}",
                file=sys.stderr,
            )
            sys.exit(1)
        verdict = "matches" if same else "DIFFERS FROM"
        print(
            f"wrote {output}; reloaded, it {verdict} the PyTorch model on a check batch "
            f"(max abs difference {diff:.3g}, tolerance {TOLERANCE:g})",
            file=sys.stdout if same else sys.stderr,
        )
        if not same:
            sys.exit(1)

    command("dltrain-export", body)
