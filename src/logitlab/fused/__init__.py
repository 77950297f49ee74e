"""Fused training: the jobs of a sweep that differ only in values that keep tensor shapes train as one model.

  stacked.py   N models of one shape as one: stacked weights, batched matmuls, one optimizer step for all
  keys.py      which jobs fuse (`group_key`), from their configs alone (no torch: a sweep decides it first)
  loop.py      the group's training loop, Trainer.fit's epoch for epoch
  group.py     a fused group of a sweep's jobs in one process: for each job what train.py does for one,
               so that each job's directory ends up as its solo run's would (the sweeper calls it)

stacked.py and loop.py see no config; keys.py reads a job's config as plain values; group.py reads the jobs'
composed configs, as train.py does.
What logitlab.fused offered before it was a package (group_key, fit_group, Member) is found here on
first use.

May import (of logitlab): models, trainer, reporting, config, rundirs.
"""

from logitlab import names_on_first_use

_NAMES = {  # name -> the module of this package that defines it
    'FUSIBLE_KEYS': 'keys',
    'group_key': 'keys',
    'Member': 'loop',
    'fit_group': 'loop',
}

__getattr__, __dir__ = names_on_first_use(__name__, _NAMES)
