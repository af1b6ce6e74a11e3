"""The default dltrain job written as a minimal PyTorch Lightning script, the peer that
benchmarks/startup.py times (Lightning is a benchmark dependency only, never dltrain's).

digits (scikit-learn), standardised with train statistics, 70/15/15 stratified split; an MLP
64-128-64-10; Adam 1e-3; batch 64; N epochs with validation; a test of the last weights;
TensorBoard logging and Lightning's default checkpointing. Writes {"first_step": wall time after
the first optimiser step, "end": ...} as JSON to the file named by argv[1].

    python benchmarks/lightning_job.py times.json [epochs] [out_dir]
"""

from __future__ import annotations

import json
import sys
import time

import pytorch_lightning as pl
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn
from torch.utils.data import DataLoader, TensorDataset


class Net(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU(), nn.Linear(64, 10)
        )
        self.loss = nn.CrossEntropyLoss()
        self.first_step: float | None = None

    def training_step(self, batch, _):
        x, y = batch
        loss = self.loss(self.net(x), y)
        self.log("train/loss", loss)
        return loss

    def on_train_batch_end(self, *_) -> None:
        if self.first_step is None:
            self.first_step = time.time()

    def validation_step(self, batch, _):
        x, y = batch
        out = self.net(x)
        self.log("val/loss", self.loss(out, y))
        self.log("val/acc", (out.argmax(1) == y).float().mean())

    def test_step(self, batch, _):
        x, y = batch
        self.log("test/acc", (self.net(x).argmax(1) == y).float().mean())

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=1e-3)


def loaders() -> tuple[DataLoader, DataLoader, DataLoader]:
    x, y = load_digits(return_X_y=True)
    x_train, x_rest, y_train, y_rest = train_test_split(
        x, y, test_size=0.3, stratify=y, random_state=0
    )
    x_val, x_test, y_val, y_test = train_test_split(
        x_rest, y_rest, test_size=0.5, stratify=y_rest, random_state=0
    )
    mean, std = x_train.mean(0), x_train.std(0) + 1e-8

    def tensors(a, b):
        return TensorDataset(torch.tensor((a - mean) / std, dtype=torch.float32), torch.tensor(b))

    return (
        DataLoader(tensors(x_train, y_train), batch_size=64, shuffle=True),
        DataLoader(tensors(x_val, y_val), batch_size=256),
        DataLoader(tensors(x_test, y_test), batch_size=256),
    )


def main() -> None:
    out, epochs = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 1
    root = sys.argv[3] if len(sys.argv) > 3 else "lightning_logs"
    pl.seed_everything(0, verbose=False)
    train, val, test = loaders()
    model = Net()
    trainer = pl.Trainer(
        max_epochs=epochs, accelerator="cpu", devices=1, default_root_dir=root,
        enable_model_summary=False, enable_progress_bar=False, log_every_n_steps=1,
    )  # fmt: skip
    trainer.fit(model, train, val)
    trainer.test(model, test, verbose=False)
    with open(out, "w") as f:
        json.dump({"first_step": model.first_step, "end": time.time()}, f)


if __name__ == "__main__":
    main()
