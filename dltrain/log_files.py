"""Records for the log files alone (a run's dltrain.log), for what the console shows its own way."""

from __future__ import annotations

import logging


def to_log_files(record: logging.LogRecord) -> bool:
    """Hand `record` to the root logger's file handlers only; whether there was one."""
    files = [h for h in logging.getLogger().handlers if isinstance(h, logging.FileHandler)]
    for handler in files:
        handler.handle(record)
    return bool(files)


def log_to_files(logger: logging.Logger, message: str, level: int = logging.INFO) -> bool:
    """`message` from `logger` at `level`, to the log files only; whether one took it."""
    if not logger.isEnabledFor(level):
        return False
    return to_log_files(logger.makeRecord(logger.name, level, __file__, 0, message, (), None))
