from __future__ import annotations

import pytest
import torch
from torch import nn

from dltrain.config import fitting
from dltrain.data.splits import DataMeta
from dltrain.losses import num_outputs
from dltrain.metrics import compute_metrics, confusion_matrix
from dltrain.registry import LOSSES


def test_losses_by_task() -> None:
    assert fitting(LOSSES, "regression") == ["huber", "mae", "mse", "smooth_l1"]
    assert fitting(LOSSES, "binary") == ["bce", "bce_with_logits", "cross_entropy", "nll"]
    assert fitting(LOSSES, "multiclass") == ["cross_entropy", "nll"]


def test_output_count_depends_on_task_and_loss() -> None:
    binary = DataMeta("binary", (4,), num_classes=2)
    assert num_outputs(binary, "bce") == 1 and num_outputs(binary, "cross_entropy") == 2
    assert num_outputs(DataMeta("regression", (4,), num_targets=3), "mse") == 3


def test_bce_applies_the_sigmoid_link_and_matches_the_fused_loss() -> None:
    logits, targets = torch.randn(8, 1), torch.randint(0, 2, (8,))
    expected = nn.functional.binary_cross_entropy_with_logits(logits.squeeze(1), targets.float())
    assert torch.allclose(LOSSES.build("bce", {})(logits, targets), expected, atol=1e-6)
    assert torch.allclose(LOSSES.build("bce_with_logits", {})(logits, targets), expected)
    weighted = LOSSES.build("bce_with_logits", {"pos_weight": 3.0})(logits, targets)
    assert not torch.allclose(weighted, expected)


def test_nll_equals_cross_entropy_on_logits() -> None:
    logits, targets = torch.randn(8, 4), torch.randint(0, 4, (8,))
    ce = LOSSES.build("cross_entropy", {})(logits, targets)
    assert torch.allclose(LOSSES.build("nll", {})(logits, targets), ce)
    smoothed = LOSSES.build("cross_entropy", {"label_smoothing": 0.1})(logits, targets)
    assert not torch.allclose(smoothed, ce)


@pytest.mark.parametrize(
    ("name", "expected"), [("mse", 2.5), ("mae", 1.5), ("huber", 1.0), ("smooth_l1", 1.0)]
)
def test_regression_losses(name: str, expected: float) -> None:
    out, target = torch.tensor([[0.0], [0.0]]), torch.tensor([[1.0], [2.0]])
    assert LOSSES.build(name, {})(out, target).item() == pytest.approx(expected)


def test_classification_metrics_by_hand() -> None:
    # true 0,0,1,1,2,2 ; predicted 0,1,1,1,2,0
    logits = torch.eye(3)[[0, 1, 1, 1, 2, 0]] * 5
    targets = torch.tensor([0, 0, 1, 1, 2, 2])
    m = compute_metrics(logits, targets, "multiclass")
    assert m["acc"] == pytest.approx(4 / 6)
    assert m["precision"] == pytest.approx((1 / 2 + 2 / 3 + 1) / 3)
    assert m["recall"] == pytest.approx((1 / 2 + 1 + 1 / 2) / 3)
    assert 0.5 < m["auc"] < 1
    assert confusion_matrix(logits, targets, "multiclass", 3) == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]


def test_binary_metrics_are_of_the_positive_class() -> None:
    logits = torch.tensor([[-2.0], [-1.0], [0.5], [2.0]])  # P(1) = .12 .27 .62 .88
    targets = torch.tensor([0, 1, 0, 1])
    m = compute_metrics(logits, targets, "binary")
    assert m["acc"] == 0.5 and m["precision"] == 0.5 and m["recall"] == 0.5
    assert m["auc"] == pytest.approx(0.75)
    two_logits = torch.cat([torch.zeros(4, 1), logits], 1)  # softmax form gives the same P(1)
    assert compute_metrics(two_logits, targets, "binary") == m


def test_auc_is_left_out_when_a_class_is_missing() -> None:
    m = compute_metrics(torch.tensor([[1.0], [2.0]]), torch.tensor([1, 1]), "binary")
    assert "auc" not in m and m["acc"] == 1.0


def test_regression_metrics() -> None:
    pred = torch.tensor([[1.0], [2.0], [3.0], [4.0]])
    true = torch.tensor([[1.0], [2.0], [3.0], [6.0]])
    m = compute_metrics(pred, true, "regression")
    assert m["mse"] == pytest.approx(1.0) and m["rmse"] == pytest.approx(1.0)
    assert m["mae"] == pytest.approx(0.5)
    assert m["r2"] == pytest.approx(1 - 4 / 14)  # mean 3: SS_tot = 4 + 1 + 0 + 9
