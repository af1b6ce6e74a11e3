"""Importing this registers dltrain's logger backends (LOGGERS' populate module). MLflow and W&B
import their packages only when a run selects them."""

from dltrain.tracking import csv_file, mlflow_backend, tensorboard, wandb_backend  # noqa: F401
