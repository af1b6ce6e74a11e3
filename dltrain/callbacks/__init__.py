"""dltrain's own callbacks: checkpoints, schedule stepping, weight averaging, the profiler.

Importing this package registers the selectable ones (callbacks=[ema], [swa], [profiler]).
"""

from dltrain.callbacks import averaging, profiler  # noqa: F401  (registers them)
