"""The optimizer of a run, completed and stepped the fast way: `make_optimizer` gives the config's factory
the model's parameters and the optimizer's fused kernel where it has one; `grad_resetter` and `stepper` reset
the gradients and step torch's own Adam, AdamW and SGD without the wrappers torch puts around them (the
profiler range, the step hooks, the first call's torch._dynamo import). The training loop (loop.py) and the
fused one (fused/loop.py) step through these."""
from __future__ import annotations

import inspect
from typing import Callable

import torch


def make_optimizer(factory: Callable, params: list) -> torch.optim.Optimizer:
    """`factory(params)` with the optimizer's fused kernel where it has one for these parameters: one kernel
    over all of them instead of a Python loop (Adam's step on a small CPU model is 2x faster). A config that
    picks an implementation itself (`fused` or `foreach`) is left alone."""
    keywords = getattr(factory, "keywords", None) or {}
    if "fused" in keywords or "foreach" in keywords or "fused" not in inspect.signature(factory).parameters:
        return factory(params)
    try:
        return factory(params, fused=True)
    except (RuntimeError, ValueError):  # no fused kernel for this device, dtype or option combination
        return factory(params)


def grad_resetter(opt: torch.optim.Optimizer) -> Callable[[], None]:
    """`opt.zero_grad(set_to_none=True)`; for torch's own zero_grad, done here directly: its profiler and
    dynamo wrappers cost ~10 us a step, 3% of a small model's step on CPU."""
    if type(opt).zero_grad is not torch.optim.Optimizer.zero_grad:  # an optimizer with its own: use it
        return lambda: opt.zero_grad(set_to_none=True)
    params = [p for group in opt.param_groups for p in group["params"]]

    def zero_grad() -> None:
        for p in params:
            p.grad = None
    return zero_grad


def stepper(opt: torch.optim.Optimizer) -> Callable[[], None]:
    """`opt.step()`, for torch's own Adam, AdamW and SGD without the two wrappers torch puts around it:
    the first call of one imports torch._dynamo (1.9 s here, for a graph break that only torch.compile
    needs) and every call opens a profiler range and runs the step hooks. The step inside, run under
    no_grad as the wrapper runs it, is the same update. With torch.compile in use, step hooks, or a
    differentiable optimizer, the wrapped step is called."""
    import sys

    unwrapped = type(opt).step
    while hasattr(unwrapped, "__wrapped__"):  # profile_hook_step, then _use_grad_for_differentiable
        unwrapped = unwrapped.__wrapped__
    hooked = opt._optimizer_step_pre_hooks or opt._optimizer_step_post_hooks
    if (type(opt) not in (torch.optim.Adam, torch.optim.AdamW, torch.optim.SGD) or "torch._dynamo" in sys.modules
            or hooked or opt.defaults.get("differentiable") or unwrapped.__name__ != "step"):
        return opt.step

    def step() -> None:
        with torch.no_grad():
            unwrapped(opt)
        opt._opt_called = True  # what the wrapper tells an LR schedule: step() was called
    return step
