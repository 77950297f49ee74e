"""logitlab: config-driven multiclass classification experiments in PyTorch."""


class ConfigError(ValueError):
    """A user's input is invalid; the message is one line naming the key, value or file and what is valid."""
