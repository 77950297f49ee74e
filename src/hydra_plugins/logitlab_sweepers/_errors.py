"""The sweeper's one error type, on its own so that every part of the sweeper can raise it."""
from hydra.errors import CompactHydraException


class SweepError(CompactHydraException):
    """A user's error or a sweep that did not go through (a job failed): one line, no traceback. An
    exception, as Hydra's own sweepers raise a failed job's, so code that calls Hydra can catch it."""
