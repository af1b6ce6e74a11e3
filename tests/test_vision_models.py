from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchvision
from torch import nn

from dltrain.errors import ConfigError
from dltrain.registry import MODELS


def _linears(model: nn.Module) -> list[nn.Linear]:
    return [m for m in model.modules() if isinstance(m, nn.Linear)]


def _forward_backward(model: nn.Module, shape: tuple[int, ...], out_features: int) -> None:
    out = model(torch.randn(2, *shape))
    assert out.shape == (2, out_features)
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32)])
def test_cnn_forward_and_backward(shape: tuple[int, int, int]) -> None:
    model = MODELS.build("cnn", {"dropout": 0.2}, input_shape=shape, out_features=10)
    _forward_backward(model, shape, 10)
    assert any(isinstance(m, nn.BatchNorm2d) for m in model)
    assert any(isinstance(m, nn.Dropout) for m in model)


def test_cnn_matches_the_mnist_reference() -> None:
    model = MODELS.build("cnn", {}, input_shape=(1, 28, 28), out_features=10)
    fc1, fc2 = _linears(model)
    assert (fc1.in_features, fc1.out_features, fc2.out_features) == (1568, 128, 10)


def test_cnn_options_shape_the_layers() -> None:
    options = {"channels": [4, 8, 8], "kernel_size": 5, "hidden": 16, "batch_norm": False}
    model = MODELS.build("cnn", options, input_shape=(3, 33, 20), out_features=2)
    convs = [m for m in model if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [4, 8, 8]
    assert convs[0].kernel_size == (5, 5) and convs[0].bias is not None
    assert not any(isinstance(m, nn.BatchNorm2d | nn.Dropout) for m in model)
    assert _linears(model)[0].in_features == 8 * 4 * 2  # 33x20 pooled three times: 4x2
    _forward_backward(model, (3, 33, 20), 2)


def test_cnn_large_matches_the_cats_vs_dogs_reference() -> None:
    model = MODELS.build("cnn_large", {}, input_shape=(3, 224, 224), out_features=2)
    convs = [m for m in model if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [16, 32, 64, 128]
    assert _linears(model)[0].in_features == 25088
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model)
    _forward_backward(
        MODELS.build("cnn_large", {"dropout": 0.5}, input_shape=(3, 40, 48), out_features=2),
        (3, 40, 48),
        2,
    )


def test_cnn_large_rejects_too_small_images() -> None:
    with pytest.raises(ConfigError, match="must be at least 16x16") as err:
        MODELS.build("cnn_large", {}, input_shape=(3, 12, 64), out_features=2)
    assert len(err.value.problems) == 1 and "\n" not in str(err.value)


@pytest.mark.parametrize("name", ["cnn", "cnn_large"])
def test_impossible_cnn_options_name_their_key(name: str) -> None:
    options = {"dropout": 1.0, "channels": [8, 0], "hidden": 0}
    if name == "cnn":
        options["kernel_size"] = 4
    with pytest.raises(ConfigError) as err:
        MODELS.build(name, options, input_shape=(1, 28, 28), out_features=2)
    keys = sorted(p.split(":")[0] for p in err.value.problems)
    expected = ["model.channels", "model.dropout", "model.hidden"]
    assert keys == sorted(expected + (["model.kernel_size"] if name == "cnn" else []))
    with pytest.raises(ConfigError, match="model.channels: must be a non-empty list"):
        MODELS.build(name, {"channels": []}, input_shape=(1, 28, 28), out_features=2)


@pytest.mark.parametrize("name", ["cnn", "cnn_large", "tv_model"])
def test_image_models_reject_flat_inputs(name: str) -> None:
    assert MODELS.info(name).input == "image"
    assert MODELS.accepts(name, "dropout")
    with pytest.raises(ConfigError, match=r"needs images shaped \(C, H, W\).*\(6,\)"):
        MODELS.build(name, {}, input_shape=(6,), out_features=3)


def _head(model: nn.Module) -> nn.Module:
    return [m for m in model.modules() if isinstance(m, nn.Linear | nn.Conv2d)][-1]


@pytest.mark.parametrize(
    ("arch", "shape"),
    [
        ("resnet18", (1, 32, 32)),
        ("resnet18", (3, 32, 32)),
        ("mobilenet_v3_small", (1, 32, 32)),
        ("squeezenet1_1", (3, 64, 64)),
    ],
)
def test_tv_model_forward_and_backward(arch: str, shape: tuple[int, int, int]) -> None:
    model = MODELS.build("tv_model", {"arch": arch}, input_shape=shape, out_features=5)
    head = _head(model)
    assert getattr(head, "out_features", getattr(head, "out_channels", None)) == 5
    stem = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    assert stem.in_channels == shape[0]
    _forward_backward(model, shape, 5)


def test_tv_model_dropout_goes_before_the_new_head() -> None:
    model = MODELS.build("tv_model", {"dropout": 0.3}, input_shape=(3, 32, 32), out_features=2)
    assert isinstance(model.fc, nn.Sequential)
    assert isinstance(model.fc[0], nn.Dropout) and model.fc[0].p == 0.3
    assert model.fc[1].out_features == 2
    with pytest.raises(ConfigError, match=r"model.dropout: must be in \[0, 1\)"):
        MODELS.build("tv_model", {"dropout": -0.1}, input_shape=(3, 32, 32), out_features=2)


def test_tv_model_suggests_a_known_arch() -> None:
    with pytest.raises(ConfigError, match="model.arch: .*'resnet19'. Did you mean 'resnet18'?"):
        MODELS.build("tv_model", {"arch": "resnet19"}, input_shape=(3, 32, 32), out_features=2)
    with pytest.raises(ConfigError, match="takes 224x224 images only"):
        MODELS.build("tv_model", {"arch": "vit_b_32"}, input_shape=(3, 32, 32), out_features=2)


def test_tv_model_lists_the_weights_names() -> None:
    with pytest.raises(ConfigError, match="Did you mean 'IMAGENET1K_V1'.*IMAGENET1K_V1, DEFAULT"):
        MODELS.build(
            "tv_model", {"weights": "IMAGENET_V1"}, input_shape=(3, 32, 32), out_features=2
        )


def _cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    url = torchvision.models.ResNet18_Weights.IMAGENET1K_V1.url
    return tmp_path / "checkpoints" / url.rsplit("/", 1)[-1]


def test_tv_model_never_downloads_missing_weights(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = _cache(monkeypatch, tmp_path)

    def no_download(*args: object, **kwargs: object) -> None:
        raise AssertionError("tried to download")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_download)
    with pytest.raises(ConfigError) as err:
        MODELS.build("tv_model", {"weights": "DEFAULT"}, input_shape=(3, 32, 32), out_features=2)
    assert f"expected the file {path}" in str(err.value)
    assert "does not download weights" in str(err.value)


@pytest.mark.parametrize("channels", [3, 1])
def test_tv_model_loads_weights_from_the_local_cache(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, channels: int
) -> None:
    path = _cache(monkeypatch, tmp_path)
    path.parent.mkdir(parents=True)
    reference = torchvision.models.resnet18()
    torch.save(reference.state_dict(), path)
    model = MODELS.build(
        "tv_model",
        {"weights": "IMAGENET1K_V1", "freeze_backbone": True},
        input_shape=(channels, 32, 32),
        out_features=3,
    )
    assert torch.equal(model.layer1[0].conv1.weight, reference.layer1[0].conv1.weight)
    stem = reference.conv1.weight
    expected = stem if channels == 3 else stem.sum(dim=1, keepdim=True)  # gray = summed RGB
    assert torch.allclose(model.conv1.weight, expected, atol=1e-6)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"fc.weight", "fc.bias"} | ({"conv1.weight"} if channels == 1 else set())
    _forward_backward(model, (channels, 32, 32), 3)
