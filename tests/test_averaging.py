"""Averaged weights and kept checkpoints against independent references: EMA by hand, SWA by
torch's swa_utils, top-k by the logged metric over a resume."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.optim.swa_utils import AveragedModel, update_bn

from dltrain import checkpoints
from dltrain.build.run import build_run
from dltrain.data.batches import make_batches
from dltrain.errors import ConfigError
from dltrain.files import load_torch, save_torch
from dltrain.finished_run import load_run
from dltrain.train import run

from .helpers import FAST, compose_config, events

SMALL = [*FAST, "model.hidden_sizes=[16]", "trainer.limit_train_batches=4"]
EVERY_STEP = ["trainer.checkpoint_every_n_steps=1", "trainer.keep_checkpoints=1000"]


def weights_by_step(run_dir: Path) -> dict[int, dict]:
    """The whole state at every kept step-<step>.pt."""
    kept = sorted((run_dir / "checkpoints").glob("step-*.pt"))
    return {int(p.stem[5:]): checkpoints.load(p) for p in kept}


def averaged_module(state: dict, name: str) -> dict[str, torch.Tensor]:
    saved = state["callbacks"][name]["averaged"]
    return {k.removeprefix("module."): v for k, v in saved.items() if k.startswith("module.")}


@pytest.mark.parametrize("warmup", [False, True])
def test_ema_equals_an_ema_computed_by_hand(warmup: bool, tmp_path: Path) -> None:
    cfg = compose_config(
        *SMALL, *EVERY_STEP, "callbacks=[ema]", "callbacks.ema.decay=0.8",
        f"callbacks.ema.warmup={str(warmup).lower()}",
    )  # fmt: skip
    run(cfg, tmp_path)
    states = weights_by_step(tmp_path)
    assert sorted(states) == list(range(1, 9))
    ema: dict[str, torch.Tensor] = {}
    for step, state in states.items():
        weights = state["model"]
        t = step - 1  # updates before this one
        decay = min(0.8, (1 + t) / (10 + t)) if warmup else 0.8
        ema = {
            k: w.clone() if t == 0 else decay * ema[k] + (1 - decay) * w for k, w in weights.items()
        }
        for name, value in averaged_module(state, "ema").items():
            torch.testing.assert_close(value, ema[name], rtol=1e-5, atol=1e-6)
    best = checkpoints.load(tmp_path / "checkpoints" / "best.pt")
    saved = load_torch(tmp_path / "model.pt")
    assert all(torch.equal(saved[k], v) for k, v in averaged_module(best, "ema").items())
    assert not torch.equal(saved["1.weight"], best["model"]["1.weight"])  # not the raw weights
    evaluated = load_run(tmp_path).model.state_dict()  # what eval / predict / export load
    assert all(torch.equal(evaluated[k], v) for k, v in saved.items())


def test_swa_equals_swa_utils_averaging_with_batchnorm_recomputed(tmp_path: Path) -> None:
    cfg = compose_config(
        *SMALL, "trainer.epochs=5", "trainer.keep_checkpoints=1000", "model.batch_norm=true",
        "callbacks=[swa]", "callbacks.swa.start=3", "callbacks.swa.lr=0.0005",
    )  # fmt: skip
    summary = run(cfg, tmp_path / "run")
    by_epoch = {s["epoch"]: s for s in weights_by_step(tmp_path / "run").values()}
    last = checkpoints.load(tmp_path / "run" / "checkpoints" / "last.pt")
    assert last["callbacks"]["swa"]["averages"] == 3
    assert last["optimizer"]["param_groups"][0]["lr"] == pytest.approx(0.0005)  # annealed to it
    built = build_run(cfg, tmp_path / "reference")  # the same model, data and input transform
    built.tracker.close()

    def swa_of(epochs: range) -> AveragedModel:
        reference = AveragedModel(built.model)
        for epoch in epochs:
            built.model.load_state_dict(by_epoch[epoch]["model"])
            reference.update_parameters(built.model)
        return reference

    averaged = averaged_module(last, "swa")
    for name, value in swa_of(range(3, 6)).module.named_parameters():
        by_hand = sum(by_epoch[e]["model"][name] for e in (3, 4, 5)) / 3
        torch.testing.assert_close(averaged[name], value.detach())
        torch.testing.assert_close(averaged[name], by_hand)

    best = summary["best_epoch"]  # validation judged the average from epoch 3 on
    assert best >= 3, summary
    reference = swa_of(range(3, best + 1))
    train = make_batches(built.data.train, 64, False, 0)
    update_bn((built.context.inputs(x, train=False) for x, _ in train), reference.module)
    saved = load_torch(tmp_path / "run" / "model.pt")
    for name, value in reference.module.state_dict().items():
        torch.testing.assert_close(saved[name], value, msg=name)
    assert not torch.equal(saved["2.running_mean"], by_epoch[best]["model"]["2.running_mean"])


def logged(run_dir: Path, tag: str) -> dict[int, float]:
    """{epoch: value} of an epoch-end scalar."""
    epochs = {e.step: int(e.value) for e in events(run_dir).Scalars("epoch")}
    return {epochs[e.step]: e.value for e in events(run_dir).Scalars(tag)}


def test_top_k_keeps_exactly_the_k_best_across_a_resume(tmp_path: Path) -> None:
    noisy = [*FAST, "optimizer=sgd", "optimizer.lr=0.5", "trainer.keep_best_k=3"]
    run(compose_config(*noisy, "trainer.epochs=4"), tmp_path)
    run(compose_config(*noisy, f"resume={tmp_path}", "trainer.epochs=9"), tmp_path / "ignored")
    val_loss = logged(tmp_path, "val/loss")
    assert sorted(val_loss) == list(range(1, 10))
    best3 = sorted(val_loss, key=lambda e: (val_loss[e], e))[:3]
    kept = sorted((tmp_path / "checkpoints").glob("epoch*.pt"))
    assert [int(p.name[5:9]) for p in kept] == sorted(best3)
    for path in kept:
        epoch = int(path.name[5:9])
        assert path.name == f"epoch{epoch:04d}_val_loss_{val_loss[epoch]:.5g}.pt"
        assert checkpoints.load(path)["epoch"] == epoch
    assert checkpoints.load(tmp_path / "checkpoints" / "best.pt")["epoch"] == best3[0]


def test_a_checkpoint_naming_other_files_as_its_top_k_is_refused(tmp_path: Path) -> None:
    run(compose_config(*FAST, "trainer.epochs=1", "trainer.keep_best_k=1"), tmp_path)
    victim = tmp_path / "keep.txt"
    victim.write_text("mine")
    last = tmp_path / "checkpoints" / "last.pt"
    state = load_torch(last)
    state["callbacks"]["checkpoints"]["best"] = [
        {"file": "../keep.txt", "value": 0.1, "epoch": 1}
    ] * 2
    save_torch(state, last)
    with pytest.raises(ConfigError, match=r"resume: .* the top-k checkpoint name '../keep.txt'"):
        run(compose_config(*FAST, f"resume={tmp_path}", "trainer.epochs=3"), tmp_path / "x")
    assert victim.read_text() == "mine"
