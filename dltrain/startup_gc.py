"""Python's garbage collector while a command starts: off, then on again before training.

Start-up imports torch and much else: it allocates a great many objects and frees almost none,
so the collector's passes over them are wasted (`import torch, torch._dynamo` took 2.0 s with it
off against 2.27 s on, here). Training makes garbage worth collecting, so it is on by then; the
start-up's objects are frozen first (collections skip them, and forked DataLoader workers share
their pages).
"""

from __future__ import annotations

import gc

_PAUSED = [False]  # whether this process's start-up turned the collector off


def pause() -> None:
    """Turn the collector off for the start-up (a command's first step)."""
    if gc.isenabled():
        gc.disable()
        _PAUSED[0] = True


def resume() -> None:
    """Turn it back on if the start-up turned it off (once the run is built, and at the end)."""
    if _PAUSED[0]:
        _PAUSED[0] = False
        gc.freeze()
        gc.enable()
