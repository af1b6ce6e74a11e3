"""Importing this registers dltrain's logger backends (LOGGERS' populate module)."""

from dltrain.tracking import csv_file, tensorboard  # noqa: F401
