"""N models of one shape trained as one: each weight is stacked into an (N, ...) tensor, dense layers become
batched matmuls (`baddbmm`), convolutions grouped convolutions, batch norm one over N x C channels, and the
optimizer steps each set of variants that share hyperparameters with one call of torch's own update (HFTA's
idea, MLSys 2021).

Each variant stays the model it would be alone: its weights come from its own solo model (built under its
own seed), its dropout masks from its own generator (the one its solo run's global RNG would be), and its
gradients are its own (the loss is the sum of the variants' losses, so d loss / d variant_i is variant i's).
`write_variant` copies a variant's weights back into its solo model, and the optimizer state lives in the solo
optimizers, so checkpoints keep the solo format: a variant resumes alone or in a group alike.

Fusible: SoftmaxRegression, MLP and CNN (dense, conv, batch norm, pooling, elementwise activations,
dropout). GRU runs in torch's fused RNN kernel, which takes one set of weights; stacking it means a
hand-written recurrence, slower than the kernel it replaces. Attention would fuse (batched matmuls and a
per-variant layer norm) but is not done yet. A model of the user's own (a `_target_` outside logitlab)
trains alone: stacking replays forward() layer by layer (`_layers`), and only the zoo's models say in
which order their forward() applies their layers; a user's forward() may do anything.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from logitlab.models.zoo import CNN, MLP, SoftmaxRegression
from logitlab.reporting.scoring import as_float

FUSIBLE_MODELS = (SoftmaxRegression, MLP, CNN)
_ELEMENTWISE = (nn.ReLU, nn.GELU, nn.Tanh, nn.Sigmoid, nn.SiLU, nn.LeakyReLU, nn.ELU, nn.Identity)
_POOLS = (nn.MaxPool1d, nn.MaxPool2d, nn.AvgPool1d, nn.AvgPool2d)


class NotFusible(Exception):
    """These models or optimizers cannot train as one stack (the message says why)."""


def _layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The model's layers in the order its forward() applies them, with their parameter prefixes."""
    if isinstance(model, SoftmaxRegression):
        return [("", nn.Flatten()), ("linear", model.linear)]
    if isinstance(model, MLP):
        return [(f"net.{i}", m) for i, m in enumerate(model.net)]
    if isinstance(model, CNN):
        return [(f"features.{i}", m) for i, m in enumerate(model.features)] + [("head", model.head)]
    raise NotFusible(f"{type(model).__name__} does not fuse (fusible: linear, mlp, cnn)")


def _plan(model: nn.Module) -> tuple[list[tuple[str, nn.Module]], dict[int, float]]:
    """The layers other than dropout, and the dropout probability at each slot (slot k: after the k-th
    of those layers). A model without dropout at a slot is one with p = 0 there: the two fuse."""
    layers, dropout = [], {}
    for prefix, m in _layers(model):
        if isinstance(m, nn.Dropout):
            dropout[len(layers)] = m.p
        else:
            layers.append((prefix, m))
    return layers, dropout


def signature(model: nn.Module) -> tuple:
    """What must agree for models to stack: every layer but dropout, with its settings and shapes."""
    return (type(model).__name__,) + tuple(repr(m) for _, m in _plan(model)[0])


class StackedModel(nn.Module):
    """The solo `models` as one, giving (N, B, num_classes) logits. `dropout_generators[i]` draws variant i's masks."""

    def __init__(self, models: list[nn.Module], dropout_generators: list[torch.Generator]):
        super().__init__()
        self.n = len(models)
        if len({signature(m) for m in models}) != 1:
            raise NotFusible("the models differ in more than dropout")
        self.layers, _ = _plan(models[0])
        slots = sorted({k for m in models for k in _plan(m)[1]})
        self.dropout = {k: [_plan(m)[1].get(k, 0.0) for m in models] for k in slots}
        self.generators = dropout_generators
        # By position, not name: a variant with dropout has more layers, so its names are numbered differently.
        self.weights = nn.ParameterList(torch.stack([p.detach() for p in ps]) for ps in zip(*(m.parameters() for m in models)))
        self.stats = [torch.stack(bs) for bs in zip(*(m.buffers() for m in models))]
        names = [name for name, _ in models[0].named_parameters()] + [name for name, _ in models[0].named_buffers()]
        self._by_name = dict(zip(names, [*self.weights, *self.stats]))

    def _get(self, prefix: str, name: str) -> Tensor | None:
        return self._by_name.get(f"{prefix}.{name}" if prefix else name)

    def write_variant(self, i: int, model: nn.Module) -> None:
        """Copy variant i's weights and batch-norm statistics into its solo model."""
        with torch.no_grad():
            for t, stacked in zip([*model.parameters(), *model.buffers()], [*self.weights, *self.stats]):
                t.copy_(stacked[i])

    def forward(self, x: Tensor, shared: bool = False) -> Tensor:
        """x: (N, B, ...), variant i's batch at x[i]; or with `shared`, one (B, ...) batch for every variant."""
        n = self.n
        dense = True  # (N, B, F); else channels: (B, N*C, *spatial)
        if isinstance(self.layers[0][1], (nn.Conv1d, nn.Conv2d)):
            dense = False
            x = x.repeat(1, n, *([1] * (x.dim() - 2))) if shared else x.transpose(0, 1).flatten(1, 2)
        elif shared:
            x = x.unsqueeze(0).expand(n, *x.shape)
        for k, (prefix, m) in enumerate(self.layers):
            if isinstance(m, nn.Flatten):
                x = x.flatten(2) if dense else x.reshape(x.shape[0], n, -1).transpose(0, 1)
                dense = True
            elif isinstance(m, nn.Linear):
                w, b = self._get(prefix, "weight"), self._get(prefix, "bias")
                x = torch.baddbmm(b.unsqueeze(1), x, w.transpose(1, 2)) if b is not None else torch.bmm(x, w.transpose(1, 2))
            elif isinstance(m, (nn.Conv1d, nn.Conv2d)):
                w, b = self._get(prefix, "weight"), self._get(prefix, "bias")
                conv = F.conv1d if isinstance(m, nn.Conv1d) else F.conv2d
                x = conv(x, w.flatten(0, 1), None if b is None else b.flatten(), m.stride, m.padding, m.dilation,
                         m.groups * n)
            elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                x = self._batch_norm(x, prefix, m, dense)
            elif isinstance(m, _ELEMENTWISE + _POOLS):
                x = m(x)
            else:
                raise NotFusible(f"layer {type(m).__name__} does not fuse")
            if k + 1 in self.dropout and self.training:
                x = self._dropout(x, self.dropout[k + 1])
        return x

    def _batch_norm(self, x: Tensor, prefix: str, m: nn.Module, dense: bool) -> Tensor:
        if m.momentum is None or not m.track_running_stats or not m.affine:
            raise NotFusible("batch norm with momentum=None, no running statistics or no affine does not fuse")
        mean, var = self._get(prefix, "running_mean"), self._get(prefix, "running_var")
        if self.training:
            self._get(prefix, "num_batches_tracked").add_(1)
        flat = x.transpose(0, 1).flatten(1) if dense else x  # (B, N*d): one channel per variant and feature
        out = F.batch_norm(flat, mean.view(-1), var.view(-1), self._get(prefix, "weight").flatten(),
                           self._get(prefix, "bias").flatten(), self.training, m.momentum, m.eps)
        return out.view(x.shape[1], self.n, -1).transpose(0, 1) if dense else out

    def _dropout(self, x: Tensor, p: list[float]) -> Tensor:
        """What F.dropout does on the CPU (empty_like(x).bernoulli_(1 - p), divided by 1 - p, times x),
        with variant i's generator; a variant with p = 0 draws nothing, as its solo model has no layer."""
        noise = []
        for i, p_i in enumerate(p):
            if p_i:
                noise.append(torch.empty_like(x[i]).bernoulli_(1 - p_i, generator=self.generators[i]).div_(1 - p_i))
            else:
                noise.append(torch.ones_like(x[i]))
        return x * torch.stack(noise)


# ---------------------------------------------------------------------------------------- optimizers
_HYPERPARAMETERS = {torch.optim.Adam: ("lr", "betas", "eps", "weight_decay", "decoupled_weight_decay"),
                    torch.optim.AdamW: ("lr", "betas", "eps", "weight_decay", "decoupled_weight_decay"),
                    torch.optim.SGD: ("lr", "momentum", "dampening", "weight_decay", "nesterov")}


class StackedOptimizer:
    """Adam, AdamW or SGD over the stacked weights, each variant with the hyperparameters of its own solo
    optimizer (`optimizers[i]`, built as its solo run builds it; a schedule steps those). Variants whose
    hyperparameters agree step together in one call of torch's own update: the fused Adam / AdamW kernel
    on the run of the stack they occupy (per-variant views where they do not form one run), or
    torch.optim.adam.adam / sgd.sgd with the solo optimizer's foreach choice. Each solo optimizer's state
    holds views of the stacked moments (SGD: its own momentum buffers), so its state_dict() is a solo
    checkpoint's."""

    def __init__(self, weights: list[nn.Parameter], optimizers: list[torch.optim.Optimizer]):
        kinds = {type(o) for o in optimizers}
        if len(kinds) != 1 or not kinds <= set(_HYPERPARAMETERS):
            raise NotFusible(f"optimizer {' / '.join(sorted(k.__name__ for k in kinds))} does not fuse "
                             f"(fusible: Adam, AdamW, SGD)")
        for o in optimizers:
            group = o.param_groups[0]
            if len(o.param_groups) > 1 or any(group.get(k) for k in ("amsgrad", "maximize", "differentiable",
                                                                       "capturable")):
                raise NotFusible("an optimizer with several parameter groups, amsgrad, maximize, capturable or "
                                 "differentiable does not fuse")
        self.weights, self.optimizers, self.kind = weights, optimizers, kinds.pop()
        for p in weights:  # zeroed in place (zero_grad), so the views below stay the gradients' views
            p.grad = torch.zeros_like(p)
        # variant i's k-th weight and gradient, as views of the stacked tensors
        self.views = [[p.detach()[i] for p in weights] for i in range(len(optimizers))]
        self.grad_views = [[p.grad[i] for p in weights] for i in range(len(optimizers))]
        if len({(o.param_groups[0].get("fused"), o.param_groups[0].get("foreach")) for o in optimizers}) > 1:
            raise NotFusible("the optimizers differ in their fused / foreach implementation")
        if self.kind is not torch.optim.SGD:
            self._link_adam_state()
        self._groups: dict[tuple, list[int]] = {}
        self.read_hyperparameters()

    def zero_grad(self) -> None:
        for p in self.weights:
            p.grad.zero_()

    @staticmethod
    def hyperparameters(opt: torch.optim.Optimizer) -> tuple:
        """What must agree for variants to step in one call: the values of the optimizer's group."""
        group = opt.param_groups[0]
        return tuple(group.get(k) for k in _HYPERPARAMETERS[type(opt)])

    def read_hyperparameters(self) -> None:
        """Which variants step together: those whose solo optimizers' groups hold the same values now
        (contiguous runs of the stack when the group's members were stacked in that order)."""
        groups: dict[tuple, list[int]] = {}
        for i, o in enumerate(self.optimizers):
            groups.setdefault(self.hyperparameters(o), []).append(i)
        self._groups = groups
        self._slices = [(v[0], v[-1] + 1) for v in groups.values()] \
            if all(v == list(range(v[0], v[-1] + 1)) for v in groups.values()) else None

    @torch.no_grad()
    def step(self) -> None:
        for o in self.optimizers:  # what Optimizer.step tells an LR schedule (else it warns of a skipped value)
            o._opt_called = True
        if self.kind is torch.optim.SGD:
            for variants in self._groups.values():
                self._sgd(variants)
            return
        if self.fused:
            self.step_count.add_(1)  # one count for every variant and weight: they all step together
        if self.fused and self._slices is not None:
            for a, b in self._slices:
                self._adam_kernel(self.optimizers[a].param_groups[0], [p.detach()[a:b] for p in self.weights],
                                  [p.grad[a:b] for p in self.weights], [m[a:b] for m in self.exp_avg],
                                  [v[a:b] for v in self.exp_avg_sq])
            return
        for variants in self._groups.values():
            self._adam(variants)

    def _link_adam_state(self) -> None:
        """Every variant's Adam state, made now if it has none (as Adam._init_group makes it), held in
        stacked (N, ...) moments with the solo optimizers' states as views of them. With the fused
        kernel one step count serves every variant and weight (they step together)."""
        from torch.optim.optimizer import _get_scalar_dtype

        self.fused = bool(self.optimizers[0].param_groups[0].get("fused"))
        device = self.weights[0].device
        self.exp_avg = [torch.zeros_like(p) for p in self.weights]
        self.exp_avg_sq = [torch.zeros_like(p) for p in self.weights]
        counts = set()
        for i, opt in enumerate(self.optimizers):
            for k, solo in enumerate(opt.param_groups[0]["params"]):
                state = opt.state[solo]
                if state:
                    self.exp_avg[k][i].copy_(state["exp_avg"])
                    self.exp_avg_sq[k][i].copy_(state["exp_avg_sq"])
                    counts.add(float(state["step"]))
                state["exp_avg"], state["exp_avg_sq"] = self.exp_avg[k][i], self.exp_avg_sq[k][i]
        if len(counts) > 1:
            raise NotFusible("the variants' optimizers have taken different numbers of steps")
        count = counts.pop() if counts else 0.0
        if self.fused:
            self.step_count = torch.tensor(count, dtype=_get_scalar_dtype(is_fused=True), device=device)
        for opt in self.optimizers:
            for solo in opt.param_groups[0]["params"]:
                opt.state[solo]["step"] = self.step_count if self.fused else torch.tensor(count, dtype=_get_scalar_dtype())

    def _adam(self, variants: list[int]) -> None:
        """The variants' step, from per-variant views (their hyperparameters agree, their places in the
        stack do not form one run; or torch's foreach / single-tensor Adam)."""
        from torch.optim.adam import adam

        group = self.optimizers[variants[0]].param_groups[0]
        params, grads, exp_avgs, exp_avg_sqs, steps = [], [], [], [], []
        for i in variants:
            opt = self.optimizers[i]
            for k, (solo, view, grad) in enumerate(zip(opt.param_groups[0]["params"], self.views[i], self.grad_views[i])):
                params.append(view), grads.append(grad), steps.append(opt.state[solo]["step"])
                exp_avgs.append(self.exp_avg[k][i]), exp_avg_sqs.append(self.exp_avg_sq[k][i])
        if self.fused:
            self._adam_kernel(group, params, grads, exp_avgs, exp_avg_sqs)
            return
        beta1, beta2 = group["betas"]
        adam(params, grads, exp_avgs, exp_avg_sqs, [], steps, foreach=group.get("foreach"), fused=False,
             decoupled_weight_decay=bool(group.get("decoupled_weight_decay")), amsgrad=False, beta1=beta1,
             beta2=beta2, lr=group["lr"], weight_decay=group["weight_decay"], eps=group["eps"], maximize=False)

    def _adam_kernel(self, group: dict, params, grads, exp_avgs, exp_avg_sqs) -> None:
        """torch's fused Adam / AdamW kernel itself (the step count was counted in step())."""
        kernel = torch._fused_adamw_ if group.get("decoupled_weight_decay") else torch._fused_adam_
        beta1, beta2 = group["betas"]
        kernel(params, grads, exp_avgs, exp_avg_sqs, [], [self.step_count] * len(params), lr=group["lr"],
               beta1=beta1, beta2=beta2, weight_decay=group["weight_decay"], eps=group["eps"], amsgrad=False,
               maximize=False)

    def _sgd(self, variants: list[int]) -> None:
        from torch.optim.sgd import sgd

        group = self.optimizers[variants[0]].param_groups[0]
        params, grads, buffers, owners = [], [], [], []
        for i in variants:
            opt = self.optimizers[i]
            for solo, view, grad in zip(opt.param_groups[0]["params"], self.views[i], self.grad_views[i]):
                params.append(view), grads.append(grad), owners.append((opt, solo))
                # read only with momentum, as SGD does: opt.state is a defaultdict, and reading makes an
                # entry the solo checkpoint would not have
                buffers.append(opt.state[solo].get("momentum_buffer") if group["momentum"] != 0 else None)
        sgd(params, grads, buffers, foreach=group.get("foreach"), fused=group.get("fused"),
            weight_decay=group["weight_decay"], momentum=group["momentum"], lr=group["lr"],
            dampening=group["dampening"], nesterov=group["nesterov"], maximize=False)
        if group["momentum"] != 0:  # as SGD.step keeps them (the first step makes them)
            for (opt, solo), buffer in zip(owners, buffers):
                opt.state[solo]["momentum_buffer"] = buffer


def clip_grad_norms(weights: list[nn.Parameter], max_norms: Tensor) -> None:
    """clip_grad_norm_ per variant: scale variant i's gradients to a global norm of at most max_norms[i]
    (inf: unclipped, scaled by exactly 1)."""
    norms = torch.stack([p.grad.flatten(1).norm(dim=1) for p in weights]).norm(dim=0)  # (N,)
    scale = (max_norms / (norms + 1e-6)).clamp(max=1.0)
    for p in weights:
        p.grad.mul_(scale.view(-1, *([1] * (p.dim() - 1))))


def cross_entropy(logits: Tensor, y: Tensor, label_smoothing: Tensor | None) -> Tensor:
    """(N,) mean cross-entropy of each variant's (B, C) logits against its labels (N, B), with its own
    label smoothing: (1 - e) * nll + e * mean over classes of -log p, as F.cross_entropy computes it."""
    logp = as_float(logits).log_softmax(-1)
    nll = -logp.gather(-1, y.unsqueeze(-1)).squeeze(-1)  # (N, B)
    if label_smoothing is None:
        return nll.mean(1)
    e = label_smoothing.view(-1, 1)
    return ((1 - e) * nll + e * -logp.mean(-1)).mean(1)

