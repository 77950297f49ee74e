"""Which jobs of a sweep can train as one fused group, decided from their configs alone.

Torch-free, so that a sweep decides it before anything is built, and a sweep of another Hydra app,
whose jobs never fuse, does not load torch for it."""
from __future__ import annotations

import json

from omegaconf import DictConfig, OmegaConf

# Config keys whose values keep every tensor shape: jobs that differ only in these can fuse.
FUSIBLE_KEYS = ("seed", "optim.lr", "optim.weight_decay", "optim.betas", "optim.momentum", "optim.dampening",
                "optim.nesterov", "optim.eps", "model.dropout", "trainer.label_smoothing", "trainer.grad_clip",
                "trainer.patience", "trainer.progress", "trainer.figures", "trainer.threads")
_FUSIBLE_TARGETS = {"model": ("logitlab.models.SoftmaxRegression", "logitlab.models.MLP", "logitlab.models.CNN"),
                    "optim": ("torch.optim.Adam", "torch.optim.AdamW", "torch.optim.SGD")}


def group_key(config: dict) -> str | None:
    """Jobs whose configs give the same key can train as one group; None: this one trains alone (its model
    or optimizer does not stack, a model of the user's own among them, or it asks for torch.compile or
    weight histograms). The data may be anyone's: every variant sees the same tensors."""
    nodes = {group: config.get(group) for group in (*_FUSIBLE_TARGETS, "trainer")}
    if not all(isinstance(node, dict) for node in nodes.values()):  # not logitlab's task: another Hydra app's
        return None
    if any(nodes[group].get("_target_") not in targets for group, targets in _FUSIBLE_TARGETS.items()):
        return None
    if nodes["trainer"].get("compile") or nodes["trainer"].get("histograms"):
        return None
    rest = json.loads(json.dumps(config, default=str))
    for key in FUSIBLE_KEYS:
        *parents, leaf = key.split(".")
        node = rest
        for p in parents:
            node = node.get(p, {})
        node.pop(leaf, None)
    return json.dumps(rest, sort_keys=True)


def task_container(full: DictConfig, resolve: bool = True) -> dict:
    """The job's config without its hydra node, as plain values (interpolations resolved)."""
    return {k: OmegaConf.to_container(v, resolve=resolve) if OmegaConf.is_config(v) else v
            for k, v in full.items_ex(resolve=False) if k != "hydra"}
