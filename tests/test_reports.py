"""The TensorBoard views (log_figures, log_graph) read back from the event files, as TensorBoard reads them."""
from __future__ import annotations

import io

import torch
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch.utils.tensorboard import SummaryWriter

from logitlab.models import CNN
from logitlab.reporting.diagnostics import plot_misclassified
from logitlab.reporting.tensorboard_log import log_figures, log_graph
from logitlab.rundirs import load_run


def read_events(log_dir) -> EventAccumulator:
    events = EventAccumulator(str(log_dir), size_guidance={"images": 0, "histograms": 0, "scalars": 0})
    events.Reload()
    return events


def test_figures_and_histograms_read_back_from_the_event_files(trained_run, tmp_path):
    model, data, _ = load_run(trained_run)
    model.train()  # as the trainer leaves it: log_figures evaluates in eval mode and restores the mode
    with SummaryWriter(str(tmp_path)) as writer:
        log_graph(writer, model, data.inputs(data.train[0]))
        log_figures(writer, model, data.inputs(data.test[0]), data.test[1], data.class_names, step=3, prefix="test")
    assert model.training

    events = read_events(tmp_path)
    tags = events.Tags()
    for tag in ("test/confusion_matrix", "test/reliability", "test/misclassified"):
        assert tag in tags["images"]
        event = events.Images(tag)[0]
        assert event.step == 3
        with Image.open(io.BytesIO(event.encoded_image_string)) as img:
            img.load()
            assert img.width > 100 and img.height > 100 and img.mode in ("RGB", "RGBA")
    assert {"test/max_prob", "test/max_prob_wrong", "test/weights/net.1.weight"} <= set(tags["histograms"])
    assert events.Histograms("test/max_prob")[0].histogram_value.num == len(data.test[1])
    per_class = [events.Scalars(f"test/class_acc/{c}")[0].value for c in data.class_names]
    assert all(0 <= a <= 1 for a in per_class) and "test/ece" in tags["scalars"]
    assert tags["graph"] and "net" in str(events.Graph())


def test_sequences_get_no_image_grid_and_perfect_models_no_mistakes(tmp_path):
    torch.manual_seed(0)
    model = CNN(input_shape=(1, 40), num_classes=3, channels=[4])
    x = torch.randn(30, 1, 40)
    with SummaryWriter(str(tmp_path)) as writer:
        log_figures(writer, model, x, torch.randint(0, 3, (30,)), ["a", "b", "c"], step=0, prefix="val")
    tags = read_events(tmp_path).Tags()
    assert {"val/confusion_matrix", "val/reliability"} <= set(tags["images"])
    assert "val/misclassified" not in tags["images"]

    probs = torch.tensor([[0.9, 0.1], [0.2, 0.8]])
    assert plot_misclassified(torch.zeros(2, 1, 4, 4), torch.tensor([0, 1]), probs, ["a", "b"]) is None
