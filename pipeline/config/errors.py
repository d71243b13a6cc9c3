"""Errors a user can fix themselves: shown as one line, never as a traceback."""


class ConvlabError(Exception):
    """A problem with the user's own input (config value, data file, machine)."""


class ConfigError(ConvlabError):
    """A config value that cannot work, caught before TensorFlow is imported."""


class DataError(ConvlabError):
    """A data file or folder that is missing or malformed."""


class CompareError(ConvlabError):
    """An experiment, sweep, baseline or metric that cannot be found for a comparison."""
