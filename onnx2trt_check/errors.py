"""The exceptions of the project.

`CheckError` and its subclasses are misuse and broken input: each message is one line that names the
problem and the fix. The pytest plugin turns them into `pytest.UsageError` (exit code 4) and the CLI
into exit code 4, never a traceback.

`CheckFailed` and `CheckSkipped` are the outcomes of a check other than passing: library code (the
targets, the PTQ pipeline) raises them where a model cannot be checked, and the pytest face turns
them into failed and skipped items.
"""

USAGE_ERROR_EXIT_CODE = 4


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (ONNX Runtime's run to many lines), "(no message)"
    for an empty one: what a one-line report quotes of someone else's error."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else "(no message)"


class CheckError(Exception):
    """Base of every error that is the user's input, not a bug of ours."""


class ModelError(CheckError):
    """The model file is missing, unreadable, invalid or has shapes we cannot resolve."""


class OutOfScopeError(ModelError):
    """A valid ONNX model outside what the checks cover (model.check_scope names why)."""


class InputDataError(CheckError):
    """Input data (.npz, data loader, shapes, ranges) that does not fit the model."""


class ConfigError(CheckError):
    """A malformed option or configuration value."""


class OutputPathError(ConfigError):
    """An output path that cannot be written: a folder, a read-only place, a full disk."""


class CheckFailed(Exception):
    """The check ran and the model failed it: the message for the user, the figures for the report."""

    def __init__(self, message: str, figures: dict | None = None):
        super().__init__(message)
        self.figures = figures or {}


class CheckSkipped(Exception):
    """The check does not apply here; the message is the skip reason."""
