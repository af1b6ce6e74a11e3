"""Where a run reports: TensorBoard (tensorboard.py), the console (console.py), figures."""
