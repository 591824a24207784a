"""The exceptions of misuse and broken input.

Each message is one line that names the problem and the fix. The pytest plugin turns them into
`pytest.UsageError` (exit code 4) and the CLI into exit code 4, never a traceback.
"""

USAGE_ERROR_EXIT_CODE = 4


class CheckError(Exception):
    """Base of every error that is the user's input, not a bug of ours."""


class ModelError(CheckError):
    """The model file is missing, unreadable, invalid or has shapes we cannot resolve."""


class InputDataError(CheckError):
    """Input data (.npz, data loader, shapes, ranges) that does not fit the model."""


class ConfigError(CheckError):
    """A malformed option or configuration value."""
