"""What users of Lightning, timm and the Lightning-Hydra template type, and dltrain's way to say
it: a config error for one of these names says that instead of a did-you-mean."""

from __future__ import annotations

LIMITS = "trainer.limit_train_batches=N (and limit_val_batches, limit_test_batches)"

KEYS = {
    "trainer.max_epochs": "trainer.epochs",
    "trainer.fast_dev_run": (
        "trainer.dry_run=true (one training and one evaluation batch, shapes printed, nothing "
        f"saved); for a short real run: trainer.epochs=1 {LIMITS}"
    ),
    "trainer.check_val_every_n_epoch": "trainer.val_every_n_epochs",
    "trainer.gradient_clip_val": "regularization=grad_clip regularization.grad_clip.max_norm=V",
    "trainer.profiler": "callbacks=[profiler]",
    "trainer.profile": "callbacks=[profiler]",
    "trainer.auto_lr_find": "the command dltrain-lr-find with the same overrides",
    "trainer.lr_find": "the command dltrain-lr-find with the same overrides",
    "trainer.model_ema": "callbacks=[ema]",
    "trainer.swa": "callbacks=[swa]",
    "trainer.callbacks": "the callbacks group: callbacks=[ema,profiler]",
    "trainer.max_time": "trainer.max_steps (optimiser steps)",
}
OPTIONS = {
    ("regularization", "ema"): "callbacks=[ema]",
    ("regularization", "swa"): "callbacks=[swa]",
    ("regularization", "profiler"): "callbacks=[profiler]",
    ("callbacks", "early_stopping"): "regularization=[early_stopping]",
    ("callbacks", "grad_clip"): "regularization=[grad_clip]",
    ("callbacks", "model_checkpoint"): "trainer.keep_best_k=K (checkpoints are always written)",
    ("callbacks", "lr_finder"): "the command dltrain-lr-find with the same overrides",
}


def dltrain_way(key: str, option: str | None = None) -> str:
    """' dltrain's way: ...' for a key (or group=option) another tool has; '' otherwise."""
    way = OPTIONS.get((key, option)) if option is not None else KEYS.get(key)
    return f" dltrain's way: {way}." if way else ""
