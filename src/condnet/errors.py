"""The one exception family of condnet: every error a user can cause says what to fix."""


class CondnetError(Exception):
    """Base class of every error condnet raises on purpose."""


class ConfigError(CondnetError, ValueError):
    """A configuration value is unknown, missing or out of range."""


class DataError(CondnetError):
    """A dataset cannot be found, fetched, verified or parsed."""


class CheckpointError(CondnetError):
    """A checkpoint is missing, truncated, altered or does not match its configuration."""


class TrainingError(CondnetError):
    """Training diverged (a non-finite loss): the message says which rates to lower."""
