from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from dltrain.registry import INITIALIZERS, MODELS, TARGET

INPUT_SHAPES = {"flat": (6,), "image": (3, 32, 32), "sequence": (5, 6), "tokens": (7,)}
VOCAB = ["[PAD]", "[UNK]"] + [f"w{i}" for i in range(18)]


def example_batch(kind: str) -> torch.Tensor:
    """Five inputs of the kind a model declares (token ids for text models)."""
    shape = INPUT_SHAPES[kind]
    return torch.randint(1, len(VOCAB), (5, *shape)) if kind == "tokens" else torch.randn(5, *shape)


@pytest.mark.parametrize("name", [n for n in MODELS.names() if n != TARGET])
def test_every_model_does_forward_and_backward(name: str) -> None:
    kind = MODELS.info(name).input
    shape = INPUT_SHAPES[kind]
    model = MODELS.build(
        name,
        {},
        in_features=math.prod(shape),
        out_features=3,
        input_shape=shape,
        num_classes=3,
        vocab=VOCAB if kind == "tokens" else None,
    )
    x = example_batch(kind)
    out = model(x)
    reconstructs = MODELS.info(name).task == "reconstruction"
    assert out.shape == (x.shape if reconstructs else (5, 3))
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_mlp_layers_follow_options() -> None:
    model = MODELS.build(
        "mlp",
        {
            "hidden_sizes": [8, 4],
            "activation": "tanh",
            "dropout": 0.2,
            "batch_norm": True,
            "input_dropout": 0.1,
        },
        in_features=3,
        out_features=1,
    )
    kinds = [type(m).__name__ for m in model]
    assert kinds == [
        "Flatten",
        "Dropout",
        "Linear",
        "BatchNorm1d",
        "Tanh",
        "Dropout",
        "Linear",
        "BatchNorm1d",
        "Tanh",
        "Dropout",
        "Linear",
    ]


def test_mlp_rejects_impossible_dropout() -> None:
    with pytest.raises(ValueError, match=r"option 'dropout' must be in \[0, 1\)"):
        MODELS.build("mlp", {"dropout": 1.5}, in_features=3, out_features=1)


def _mlp() -> nn.Module:
    torch.manual_seed(0)
    return MODELS.build(
        "mlp", {"hidden_sizes": [64], "batch_norm": True}, in_features=32, out_features=2
    )


def _weights(model: nn.Module) -> torch.Tensor:
    return torch.cat([m.weight.flatten() for m in model if isinstance(m, nn.Linear)])


def _biases(model: nn.Module) -> torch.Tensor:
    return torch.cat([m.bias for m in model if isinstance(m, nn.Linear)])


def test_uniform_init_draws_within_bounds() -> None:
    w = _weights(INITIALIZERS.build("uniform", {"a": -0.2, "b": 0.1}, model=_mlp()))
    assert w.min() >= -0.2 and w.max() <= 0.1 and w.std() > 0.05


def test_normal_init_has_the_requested_moments() -> None:
    model = INITIALIZERS.build("normal", {"mean": 0.5, "std": 0.02}, model=_mlp())
    w = _weights(model)
    assert abs(w.mean().item() - 0.5) < 0.005 and abs(w.std().item() - 0.02) < 0.003
    assert torch.count_nonzero(_biases(model)) == 0
    batch_norm = model[2]
    assert torch.equal(batch_norm.weight, torch.ones(64))  # norm scales keep their defaults


def test_zeros_xavier_kaiming_and_default() -> None:
    assert torch.count_nonzero(_weights(INITIALIZERS.build("zeros", {}, model=_mlp()))) == 0
    before = _weights(_mlp())
    assert torch.equal(_weights(INITIALIZERS.build("default", {}, model=_mlp())), before)
    xavier = _weights(INITIALIZERS.build("xavier", {"distribution": "normal"}, model=_mlp()))
    kaiming = _weights(INITIALIZERS.build("kaiming", {}, model=_mlp()))
    first_layer_kaiming = kaiming[: 64 * 32]
    assert abs(first_layer_kaiming.std().item() - (2 / 32) ** 0.5) < 0.03  # He: sqrt(2 / fan_in)
    assert not torch.equal(xavier, before)
