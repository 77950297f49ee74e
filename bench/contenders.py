"""The contenders, each given the same work: `epochs` passes over train in shuffled batches of `batch_size`
(the last, partial batch included), then one forward pass over val (one batch), from the same initial
weights, with Adam at the same learning rate. Each returns the time at the end of every epoch (after its
validation, logging, checkpoint and progress bar) and the number of optimizer steps it took.
"""
from __future__ import annotations

import functools
import os
import tempfile
import time

import torch
import torch.nn.functional as F
from torch import nn

os.environ.setdefault("KERAS_BACKEND", "torch")  # before anything imports keras

LR = 1e-3
VAL_BATCH = 4096  # val in one batch, as logitlab's evaluate() does for these datasets


def adam(params):
    """The optimizer every torch contender gets: Adam with its fused kernel, which is what logitlab's trainer
    picks for a plain `torch.optim.Adam` config, so the ratios measure the frameworks, not the kernels."""
    return torch.optim.Adam(params, lr=LR, fused=True)


def _clock(device: str):
    """perf_counter, after the device has finished its queued work (a no-op on CPU)."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter()


# ---------------------------------------------------------------------------------------------- logitlab
def logitlab(model: nn.Module, data, batch_size: int, epochs: int, device: str = "cpu"):
    """logitlab's Trainer at its defaults, as the entry point runs it: TensorBoard (its RunBoard), checkpoints,
    progress bar. Counts the checkpoint files it writes in `logitlab.writes` (last.pt and best.pt, the initial
    and final ones included)."""
    from logitlab.reporting.tensorboard_log import RunBoard
    from logitlab.trainer import checkpoint
    from logitlab.trainer import Trainer

    ends, save, logitlab.writes = [], checkpoint.save, 0

    def counted_save(state, path):
        logitlab.writes += 1
        save(state, path)

    checkpoint.save = counted_save
    try:
        with tempfile.TemporaryDirectory() as run_dir:
            board = RunBoard(run_dir)
            Trainer(epochs=epochs, batch_size=batch_size, device=device).fit(
                model, data, functools.partial(torch.optim.Adam, lr=LR), run_dir, board=board,
                on_epoch_end=[lambda epoch, metrics: ends.append(_clock(device))])
            board.close()
            steps = checkpoint.load(f"{run_dir}/checkpoints/last.pt")["optimizer"]["state"][0]["step"]
    finally:
        checkpoint.save = save
    return ends, int(steps)


# ---------------------------------------------------------------------------------------------- the loop
def loop(model: nn.Module, data, batch_size: int, epochs: int, device: str = "cpu", optimizer=adam,
         losses: list | None = None):
    """What one writes by hand: the data as tensors, a shuffled index per epoch, x[idx]; val loss and accuracy
    read once per epoch. Appends each step's loss to `losses` when given (for the parity test)."""
    model.to(device)
    (x, y), (xv, yv) = ((t.to(device) for t in split) for split in (data.train, data.val))
    opt = optimizer(model.parameters())
    shuffle = torch.Generator().manual_seed(0)  # the order logitlab's trainer uses for seed 0
    ends, steps = [], 0
    for _ in range(epochs):
        model.train()
        perm = torch.randperm(len(x), generator=shuffle).to(device)
        for i in range(0, len(x), batch_size):
            idx = perm[i:i + batch_size]
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            steps += 1
            if losses is not None:
                losses.append(loss.detach())
        model.eval()
        with torch.no_grad():
            logits = model(xv)
            F.cross_entropy(logits, yv).item(), (logits.argmax(1) == yv).float().mean().item()
        ends.append(_clock(device))
    return ends, steps


def loop_default_adam(model, data, batch_size, epochs, device="cpu"):
    """The same loop with `torch.optim.Adam(params, lr)` as most code writes it (its for-loop kernel on CPU)."""
    return loop(model, data, batch_size, epochs, device, optimizer=lambda p: torch.optim.Adam(p, lr=LR))


# ---------------------------------------------------------------------------------------------- Lightning
def _lightning_module(model: nn.Module):
    import lightning as L

    class Classifier(L.LightningModule):
        """A minimal LightningModule that logs what logitlab logs: train/val loss and accuracy per epoch."""

        def __init__(self):
            super().__init__()
            self.model = model

        def training_step(self, batch, batch_idx):
            x, y = batch
            logits = self.model(x)
            loss = F.cross_entropy(logits, y)
            self.log("train/loss", loss, on_step=False, on_epoch=True)
            self.log("train/acc", (logits.argmax(1) == y).float().mean(), on_step=False, on_epoch=True)
            return loss

        def validation_step(self, batch, batch_idx):
            x, y = batch
            logits = self.model(x)
            self.log("val/loss", F.cross_entropy(logits, y))
            self.log("val/acc", (logits.argmax(1) == y).float().mean())

        def configure_optimizers(self):
            return adam(self.parameters())

    return Classifier()


def _lightning(model, data, batch_size, epochs, device, lean: bool):
    import lightning as L
    from torch.utils.data import DataLoader, TensorDataset

    ends = []

    class EpochTimer(L.Callback):
        def on_train_epoch_end(self, trainer, module):
            ends.append(_clock(device))

    train = DataLoader(TensorDataset(*data.train), batch_size=batch_size, shuffle=True)
    val = DataLoader(TensorDataset(*data.val), batch_size=VAL_BATCH)
    options = dict(enable_progress_bar=False, enable_checkpointing=False, logger=False,
                   enable_model_summary=False, num_sanity_val_steps=0) if lean else {}
    with tempfile.TemporaryDirectory() as root:
        trainer = L.Trainer(max_epochs=epochs, accelerator="gpu" if device.startswith("cuda") else "cpu",
                            devices=1, default_root_dir=root, callbacks=[EpochTimer()], **options)
        trainer.fit(_lightning_module(model), train, val)
    return ends, trainer.global_step


def lightning(model, data, batch_size, epochs, device="cpu"):
    """Lightning's Trainer at its defaults: progress bar, TensorBoard logger, a checkpoint every epoch,
    model summary, 2 sanity-check val steps; fed by a DataLoader over a TensorDataset, as Lightning is."""
    return _lightning(model, data, batch_size, epochs, device, lean=False)


def lightning_lean(model, data, batch_size, epochs, device="cpu"):
    """Lightning with its progress bar, logger, checkpoints, model summary and sanity check off."""
    return _lightning(model, data, batch_size, epochs, device, lean=True)


# ---------------------------------------------------------------------------------------------- Keras
def _channels_last(x: torch.Tensor):
    return x.movedim(1, -1).numpy()  # (N, C, L) -> (N, L, C), (N, C, H, W) -> (N, H, W, C)


def to_keras(model: nn.Module, input_shape: tuple[int, ...]):
    """The same network as a Keras Sequential (channels last), holding the torch model's weights."""
    import keras

    flat_inputs = []  # the (C, *S) each nn.Flatten receives: Keras flattens channels-last, as (*S, C)
    hooks = [m.register_forward_hook(lambda m, args, out: flat_inputs.append(args[0].shape[1:]))
             for m in model.modules() if isinstance(m, nn.Flatten)]
    with torch.no_grad():
        model(torch.zeros(1, *input_shape))
    for h in hooks:
        h.remove()
    leaves = [m for m in model.modules() if not list(m.children())]
    if isinstance(leaves[0], nn.Linear):  # SoftmaxRegression flattens in forward(), not in a module
        leaves.insert(0, nn.Flatten())
        flat_inputs.insert(0, torch.Size(input_shape))
    layers, weights, flattened = [keras.Input(tuple(input_shape[1:]) + tuple(input_shape[:1]))], [], None
    for m in leaves:
        if isinstance(m, (nn.Conv1d, nn.Conv2d)):  # (out, in, *k) -> (*k, in, out)
            conv = keras.layers.Conv1D if isinstance(m, nn.Conv1d) else keras.layers.Conv2D
            layers.append(conv(m.out_channels, m.kernel_size, padding="same"))
            weights.append((m.weight.detach().permute(*range(2, m.weight.dim()), 1, 0), m.bias.detach()))
        elif isinstance(m, (nn.MaxPool1d, nn.MaxPool2d)):
            pool = keras.layers.MaxPooling1D if isinstance(m, nn.MaxPool1d) else keras.layers.MaxPooling2D
            layers.append(pool(2))
        elif isinstance(m, nn.ReLU):
            layers.append(keras.layers.ReLU())
        elif isinstance(m, nn.Flatten):
            layers.append(keras.layers.Flatten())
            flattened = flat_inputs.pop(0)
        elif isinstance(m, nn.Linear):  # (out, in) -> (in, out), in reordered from (C, *S) to (*S, C)
            w = m.weight.detach()
            if flattened is not None:
                w = w.reshape(w.shape[0], *flattened).movedim(1, -1).reshape(w.shape[0], -1)
                flattened = None
            layers.append(keras.layers.Dense(m.out_features))
            weights.append((w.T, m.bias.detach()))
        else:
            raise TypeError(f"no Keras equivalent written for {type(m).__name__}")
    net = keras.Sequential(layers)
    for layer, (kernel, bias) in zip([la for la in net.layers if la.weights], weights):
        layer.set_weights([kernel.contiguous().numpy(), bias.numpy()])
    return net


def keras_fit(model, data, batch_size, epochs, device="cpu"):
    """Keras 3 (torch backend) model.fit at its defaults (progress bar; no checkpoint or TensorBoard
    callbacks, which logitlab's figures include), with the loss and accuracy logitlab reports."""
    import keras

    with keras.device(device):
        net = to_keras(model, tuple(data.input_shape))
        net.compile(optimizer=keras.optimizers.Adam(LR, epsilon=1e-8),  # torch's epsilon
                    loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
        ends = []
        timer = keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: ends.append(_clock(device)))
        (x, y), (xv, yv) = data.train, data.val
        net.fit(_channels_last(x), y.numpy(), batch_size=batch_size, epochs=epochs, shuffle=True,
                validation_data=(_channels_last(xv), yv.numpy()), validation_batch_size=VAL_BATCH,
                callbacks=[timer])
    return ends, int(net.optimizer.iterations)


CONTENDERS = {
    "logitlab": logitlab,
    "loop": loop,
    "loop (default Adam)": loop_default_adam,
    "Lightning": lightning,
    "Lightning (lean)": lightning_lean,
    "Keras": keras_fit,
}
