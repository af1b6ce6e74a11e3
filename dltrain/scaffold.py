"""`dltrain init <folder>`: a small project of your own that trains out of the box.

It holds a registered model and dataset (one plugin module), their configs and an experiment,
a pyproject.toml that names the plugin and config folder for dltrain (and declares the
`dltrain.plugins` entry point for when the project is installed), a test, and a README.
"""

from __future__ import annotations

import keyword
import re
import sys
from collections.abc import Sequence
from pathlib import Path

from dltrain.errors import ConfigError
from dltrain.failures import command

COMPONENTS = '''"""{name}'s own model and dataset: plugins of dltrain, registered like its own."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import TensorDataset

from dltrain.registry import DATASETS, MODELS


@MODELS.register("{name}_net", tasks=("binary", "multiclass"))
def {name}_net(in_features: int, out_features: int, width: int = 32) -> nn.Module:
    """Two layers of `width` units: the model of conf/model/{name}_net.yaml."""
    return nn.Sequential(
        nn.Flatten(), nn.Linear(in_features, width), nn.ReLU(), nn.Linear(width, out_features)
    )


@DATASETS.register("{name}_data", task="binary")
def {name}_data(samples: int = 600, features: int = 8, seed: int = 0) -> dict:
    """Points on either side of a plane: a plain torch Dataset per split (dltrain infers the
    input shape, task and classes)."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(samples, features, generator=generator)
    y = (x[:, 0] + x[:, 1] > 0).long()
    cut = [int(samples * 0.7), int(samples * 0.85)]
    return {{
        "train": TensorDataset(x[: cut[0]], y[: cut[0]]),
        "val": TensorDataset(x[cut[0] : cut[1]], y[cut[0] : cut[1]]),
        "test": TensorDataset(x[cut[1] :], y[cut[1] :]),
    }}
'''

FILES = {
    "pyproject.toml": """[project]
name = "{name}"
version = "0.1.0"
dependencies = ["dltrain"]

# Installed (pip install -e .), dltrain loads the plugin wherever it runs.
[project.entry-points."dltrain.plugins"]
{name} = "{name}.components"

# In this folder, dltrain imports the plugin and reads conf/ without being told.
[tool.dltrain]
plugins = ["{name}.components"]
config_dir = "conf"
""",
    "{name}/__init__.py": '"""{name}: models and data of your own, trained with dltrain."""\n',
    "{name}/components.py": COMPONENTS,
    "conf/model/{name}_net.yaml": "name: {name}_net\nwidth: 32\ninit:\n  name: default\n",
    "conf/dataset/{name}_data.yaml": "name: {name}_data\nsamples: 600\nfeatures: 8\nseed: 0\n",
    "conf/experiment/{name}.yaml": """# @package _global_
# dltrain experiment={name}: the project's model on its data
defaults:
  - override /model: {name}_net
  - override /dataset: {name}_data
  - override /loss: cross_entropy

trainer:
  epochs: 5
  batch_size: 32
  seed: 0
  monitor: val/acc
  monitor_mode: max
""",
    "tests/test_{name}.py": '''"""The project trains: its experiment, into a scratch folder."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent


def test_the_experiment_trains(tmp_path: Path) -> None:
    beside = Path(sys.executable).with_name("dltrain")  # the venv's, else the one on PATH
    dltrain = str(beside) if beside.is_file() else shutil.which("dltrain")
    args = ["experiment={name}", "trainer.epochs=1", f"hydra.run.dir={{tmp_path / 'run'}}"]
    result = subprocess.run([dltrain, *args], cwd=PROJECT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert summary["status"] == "completed"
''',
    "README.md": """# {name}

A model and a dataset of your own, trained with dltrain.

```bash
dltrain experiment={name}                      # train (plugin and conf/ come from pyproject.toml)
dltrain experiment={name} model.width=64 trainer.epochs=10
dltrain-eval outputs/<date>/<time>_<model>_<dataset>  # evaluate a run from here
python -m pytest tests                         # the project's test
```

- `{name}/components.py` registers the model `{name}_net` and the dataset `{name}_data`;
  `conf/` holds their configs and the experiment. Add more the same way: a function with
  `@MODELS.register` / `@DATASETS.register` and a YAML of the same name.
- From another folder, name the plugin: `dltrain plugins=[{name}.components] ...` (with this
  folder importable), or `pip install -e .` once: the entry point loads it everywhere.
""",
}


def init_main(argv: Sequence[str]) -> int:
    """`dltrain init <folder>`: write the project; the exit code."""
    command("dltrain init", lambda: _init(argv))
    return 0


def _init(argv: Sequence[str]) -> None:
    if len(argv) != 1 or argv[0].startswith("-"):
        raise ConfigError("usage: dltrain init <folder> (a new folder for your project)")
    folder = Path(argv[0]).expanduser().absolute()
    name = re.sub(r"\W", "_", folder.name.lower()).strip("_") or "project"
    if not name.isidentifier() or keyword.iskeyword(name):
        name = f"project_{name}"
    if folder.exists() and any(folder.iterdir()):
        raise ConfigError(f"init: {folder} exists and is not empty; name a new folder")
    for relative, text in FILES.items():
        path = folder / relative.format(name=name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text.format(name=name), encoding="utf-8")
    print(f"wrote a dltrain project to {folder}; try: cd {folder} && dltrain experiment={name}")
    sys.stdout.flush()
