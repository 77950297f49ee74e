"""The module paths of the flat layout that preceded the subpackages (docs/architecture.md), kept
importable for code, notebooks and tools written against them: `import logitlab.scoring` gives the module
that now lives at logitlab.reporting.scoring, the same module object, so that what is set through one
name is seen through the other. Configs saved by earlier runs need none of this: the `_target_`s they name
(logitlab.models.MLP, logitlab.data.load_digits, logitlab.trainer.Trainer) are the subpackages' own
names. New code imports the new paths (tests/test_structure.py holds it)."""

import importlib
import importlib.util
import sys

# old module -> where it lives now
MOVED = {
    'logitlab.build': 'logitlab.config.build',
    'logitlab.check': 'logitlab.config.check',
    'logitlab.hydra_errors': 'logitlab.config.hydra_errors',
    'logitlab.value_types': 'logitlab.config.value_types',
    'logitlab.training_state': 'logitlab.trainer.state',
    'logitlab.checkpoint': 'logitlab.trainer.checkpoint',
    'logitlab.distributed': 'logitlab.trainer.distributed',
    'logitlab.runtime': 'logitlab.trainer.runtime',
    'logitlab.hooks': 'logitlab.trainer.hooks',
    'logitlab.objective': 'logitlab.trainer.objective',
    'logitlab.evaluation': 'logitlab.trainer.evaluation',
    'logitlab.rundir': 'logitlab.trainer.rundir',
    'logitlab.stacked': 'logitlab.fused.stacked',
    'logitlab.group': 'logitlab.fused.group',
    'logitlab.runs': 'logitlab.rundirs',
    'logitlab.job': 'logitlab.rundirs.job',
    'logitlab.cli': 'logitlab.rundirs.cli',
    'logitlab.scoring': 'logitlab.reporting.scoring',
    'logitlab.reports': 'logitlab.reporting.diagnostics',
    'logitlab.tensorboard_log': 'logitlab.reporting.tensorboard_log',
    'logitlab.sweep_table': 'logitlab.reporting.sweep_table',
    'logitlab.sweep_plots': 'logitlab.reporting.sweep_plots',
}


class _Alias:
    """A finder and loader that answer an old module path with the module at its new one."""

    def find_spec(self, name, path=None, target=None):
        if name not in MOVED:
            return None
        return importlib.util.spec_from_loader(name, self)

    def create_module(self, spec):
        return importlib.import_module(MOVED[spec.name])

    def exec_module(self, module):
        pass  # the module at the new path is imported already


def install() -> None:
    if not any(isinstance(finder, _Alias) for finder in sys.meta_path):
        sys.meta_path.append(_Alias())
