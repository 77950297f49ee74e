"""Numerics facts behind "models return logits, the loss takes logits" (experiments/from_logits)."""
from __future__ import annotations

import functools

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from logitlab.data import load_digits
from logitlab.models import MLP
from logitlab.reporting.scoring import loss_and_accuracy
from logitlab.trainer import Trainer


@pytest.mark.parametrize("k", [2, 3, 4, 10])
def test_softmax_sums_to_one(k):
    torch.manual_seed(k)
    z = 10 * torch.randn(100, k, dtype=torch.float64)
    a = torch.softmax(z, dim=1)
    assert (a >= 0).all()
    torch.testing.assert_close(a.sum(1), torch.ones(100, dtype=torch.float64))


@pytest.mark.parametrize("k", [2, 3, 4, 10])
def test_cross_entropy_of_the_true_class(k):
    torch.manual_seed(k)
    z = 5 * torch.randn(50, k, dtype=torch.float64)
    j = torch.randint(0, k, (50,))
    loss = F.cross_entropy(z, j, reduction="none")
    a_j = torch.softmax(z, 1).gather(1, j[:, None])[:, 0]
    torch.testing.assert_close(loss, -torch.log(a_j))
    torch.testing.assert_close(loss, torch.logsumexp(z, 1) - z.gather(1, j[:, None])[:, 0])


def test_softmax_of_a_small_example():
    a = torch.softmax(torch.tensor([3.0, -1.0, 4.0]), 0)
    torch.testing.assert_close(a, torch.tensor([0.268, 0.005, 0.727]), atol=5e-4, rtol=0)


def test_softmax_of_large_logits():
    z = torch.tensor([200.0, 10.0, -4.0], dtype=torch.float64)
    a = torch.softmax(z, 0)
    assert a[0] == 1.0
    assert a[1] == pytest.approx(3.1e-83, rel=0.02)  # exp(-190)
    assert a[2] == pytest.approx(2.5e-89, rel=0.02)  # exp(-204)
    a32 = torch.softmax(z.float(), 0)  # exp(200) overflows float32, the max-shifted softmax does not
    assert torch.isfinite(a32).all() and a32[0] == 1.0
    assert not torch.isfinite(torch.exp(z.float())).all()  # the naive formula would divide inf by inf


def test_log_of_softmax_is_inf_where_cross_entropy_is_finite():
    z, y = torch.tensor([[0.0, 200.0]]), torch.tensor([0])  # the true class trails by 200
    assert F.cross_entropy(z, y).item() == pytest.approx(200.0)
    assert F.nll_loss(torch.log(torch.softmax(z, 1)), y).item() == float("inf")


def test_two_class_softmax_is_logistic():
    torch.manual_seed(0)
    z = 20 * torch.randn(1000, dtype=torch.float64)
    y = torch.randint(0, 2, (1000,))
    two = torch.stack([z, torch.zeros_like(z)], 1)
    torch.testing.assert_close(torch.sigmoid(z), torch.softmax(two, 1)[:, 0])
    torch.testing.assert_close(F.binary_cross_entropy_with_logits(z, y.double(), reduction="none"),
                               F.cross_entropy(two, 1 - y, reduction="none"))


def test_trainer_loss_is_cross_entropy_on_the_logits(tmp_path):
    """With lr 0 the weights never move, so the trainer's train/loss over one full batch, and its test loss,
    must equal nn.CrossEntropyLoss on the model's logits."""
    data = load_digits()
    torch.manual_seed(0)
    model = MLP(data.input_shape, data.num_classes, hidden=[16])
    x, y = data.train
    expected_train = nn.CrossEntropyLoss()(model(data.inputs(x)), y).item()
    expected_test = nn.CrossEntropyLoss()(model(data.inputs(data.test[0])), data.test[1]).item()
    trainer = Trainer(epochs=1, batch_size=len(x), device="cpu", progress=False)
    record = trainer.fit(model, data, functools.partial(torch.optim.SGD, lr=0.0), tmp_path, seed=0)
    assert record.history[0]["train/loss"] == pytest.approx(expected_train, rel=1e-5)
    assert loss_and_accuracy(model, *data.test, prepare=data.inputs)[0] == pytest.approx(expected_test, rel=1e-5)
