"""Run directories: what a training job leaves in one, and a trained run read back.

  job.py    what a job writes besides its checkpoints (versions.json, history.csv, metrics.json, the
            HParams values) and whether its directory holds this config's finished run already
  load.py   a trained run found and loaded: its checkpoint, the model and data rebuilt from the config
            the checkpoint carries, the weights loaded strictly (for predict, evaluate and export), and
            which code its config may run (logitlab's own, and the modules given by trust=)
  cli.py    the key=value command lines of predict, evaluate and export, and their one-line errors

`load_run`, `checkpoint_path` and `run_dir_of`, which the flat layout's logitlab.runs module offered (that path
still imports, as this package),
are found here on first use.

May import (of logitlab): config, trainer, data.
"""

from logitlab import names_on_first_use

_NAMES = {  # name -> the module of this package that defines it
    'CHECKPOINTS': 'load',
    'checkpoint_path': 'load',
    'run_dir_of': 'load',
    'load_run': 'load',
    'load_weights': 'load',
}

__getattr__, __dir__ = names_on_first_use(__name__, _NAMES)
