"""The training of one model from finished objects (it never sees a config): the loop and what it stands on.

  loop.py          Trainer.fit: a batch a shuffled index, augmented and normalised on the device, one host
                   sync an epoch; a signal stops it at a step it resumes from bit for bit
  feed.py          where the training inputs rest: resident on the device, or streamed a batch ahead from
                   the host when they exceed data.max_resident_gb
  optimizer.py     the optimizer completed with its fused kernel and stepped without torch's wrappers
  console.py       what a run prints: what is about to train, a line per epoch, the progress bar
  state.py         the training state beyond model and optimizer: position, RNG streams, record
  checkpoint.py    checkpoints that survive crashes, and when to write them
  distributed.py   torchrun's processes as one World (data-parallel training)
  runtime.py       how many threads a run uses
  objective.py     the one objective: the metric that picks best.pt, that a run returns and a sweep ranks by
  rundir.py        what a run directory promises: one config, and the command that continues it
  hooks.py         per-epoch hooks, where a sweeper's pruner listens
  evaluation.py    the end of a run: best.pt scored on the test split, the numbers of metrics.json

`logitlab.trainer.Trainer` (the config's `trainer._target_`) and the other names that logitlab.trainer
offered before it was a package are found here on first use, so that importing a light module of it
(objective, rundir, hooks) does not load the loop.

May import (of logitlab): data, reporting.
"""

from logitlab import names_on_first_use

_NAMES = {  # name -> the module of this package that defines it
    'Diverged': 'loop',
    'Interrupted': 'loop',
    'Trainer': 'loop',
    'pick_device': 'runtime',
    'available_devices': 'runtime',
    'make_optimizer': 'optimizer',
    'epoch_line': 'console',
    'run_summary': 'console',
}

__getattr__, __dir__ = names_on_first_use(__name__, _NAMES)
