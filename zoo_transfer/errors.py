"""Exception classes raised by zoo-transfer.

Every error names the bad value and says how to fix it. They all derive from
`ZooTransferError`, so `except zoo_transfer.ZooTransferError` catches any of them.
"""

from __future__ import annotations


class ZooTransferError(Exception):
    """Base class of every error that zoo-transfer raises on purpose."""


class UnknownModelError(ZooTransferError, KeyError):
    """A model name that no card in the registry answers to.

    `suggestions` holds the closest registered names, best first.
    """

    def __init__(self, name: str, suggestions: list[str] | tuple[str, ...] = ()):
        self.name = name
        self.suggestions = tuple(suggestions)
        msg = f"Unknown model {name!r}."
        if self.suggestions:
            msg += " Did you mean: " + ", ".join(self.suggestions) + "?"
        msg += " Run `zoo-transfer list` to see every registered model."
        super().__init__(msg)

    def __str__(self) -> str:  # KeyError would repr() the message otherwise
        return self.args[0]


class CardValidationError(ZooTransferError, ValueError):
    """A model card that does not match the card schema.

    The message names the file (or other source), the card and the field.
    """

    def __init__(self, source: str, card: str | None, field: str, problem: str):
        self.source = source
        self.card = card
        self.field = field
        self.problem = problem
        where = f"{source}: card {card!r}" if card else source
        super().__init__(f"{where}: field {field!r}: {problem}")


class DuplicateModelError(ZooTransferError, ValueError):
    """`register_model` was given a name that is already registered."""

    def __init__(self, name: str, message: str | None = None):
        self.name = name
        super().__init__(
            message
            or f"A model named {name!r} is already registered. Pass `override=True` to "
            "replace it, or give your card another `arch` or `tag`."
        )


class PluginWarning(UserWarning):
    """A plugin of the `zoo_transfer.models` entry-point group failed to load."""


class ArgumentError(ZooTransferError, ValueError):
    """An argument that cannot work: the message names it, what was received and the fix."""


BuildArgumentError = ArgumentError  # its name before 0.2, when `build` raised most of them


class UnknownStageError(ZooTransferError, KeyError):
    """A stage name that the card does not have; the message lists the card's stages."""

    def __str__(self) -> str:  # KeyError would show the message in quotes
        return self.args[0]


class LayerReferenceError(ZooTransferError, ValueError):
    """A card's layer reference (`"name"` or `"name+N"`) that does not resolve in the model."""


class OptimizerMismatchError(ZooTransferError, ValueError):
    """Optimizer state or variables that do not belong to the model being trained."""


class NotATransferModelError(ZooTransferError, ValueError):
    """A model without a nested backbone named after a registry card (not from `build`)."""


class WeightsUnavailableError(ZooTransferError, OSError):
    """Pretrained weights are neither in the cache nor downloadable (e.g. offline)."""


class WeightsCorruptError(ZooTransferError, ValueError):
    """A weights file that is truncated, unreadable or fails its hash check.

    The file is left where it is; zoo-transfer never deletes a user's file.
    """


class WeightsMismatchError(ZooTransferError, ValueError):
    """A weights file that does not fit the architecture; the message lists the layers."""


class ModelFileError(ZooTransferError, OSError):
    """A model to load for inference that is missing, not a `.keras` file, or unreadable."""


class ImageFileError(ZooTransferError, ValueError):
    """An image file (or image folder) that is missing or cannot be decoded."""


class LabelMismatchError(ZooTransferError, ValueError):
    """Class names that do not fit a model's outputs or a data set's classes."""


class ReportArgumentError(ZooTransferError, ValueError):
    """An argument to `write_report` (history, events, confusion, images) it cannot draw."""


class DataError(ZooTransferError, ValueError):
    """A data source that `zoo_transfer.data.load` cannot read; the message says the fix."""


class DataWarning(UserWarning):
    """Data that `zoo_transfer.data.load` left out, such as corrupt or non-image files."""


class ScoreInputError(ZooTransferError, ValueError):
    """Features, labels or probabilities that a transferability score cannot use.

    Mismatched lengths, NaN or infinite values, a wrong shape, or probabilities that are
    not probabilities; the message names which and how to fix it.
    """


class TooFewImagesError(ScoreInputError):
    """A class with fewer than two images: no score (nor held-out probe) can judge it.

    `class_name` names the class and `count` says how many images it has.
    """

    def __init__(self, message: str, class_name: str = "", count: int = 0):
        super().__init__(message)
        self.class_name = class_name
        self.count = count


class OutputFolderError(ZooTransferError, FileExistsError):
    """An out folder that would lose earlier work, or has nothing to resume."""


class OutputWriteError(ZooTransferError, OSError):
    """The out folder cannot be written (disk full, read-only, no permission)."""


class BackupError(ZooTransferError, OSError):
    """A run's backup cannot be read, so `--resume` has nothing to continue from."""


class BackupWarning(UserWarning):
    """The newest backup was unreadable; the run resumed from an earlier, good one."""


class TrainingInterrupted(ZooTransferError, KeyboardInterrupt):
    """Training was stopped (Ctrl-C); the checkpoint is saved and `resume_command` continues."""

    def __init__(self, message: str, resume_command: str = ""):
        super().__init__(message)
        self.resume_command = resume_command


class ExportError(ZooTransferError, ValueError):
    """A model a format cannot hold, or an export whose predictions differ from the model's.

    Raised before anything is written to the out folder."""


class MissingExtraError(ZooTransferError, ImportError):
    """A package an optional feature needs is not installed; the message names the extra
    (e.g. `pip install zoo-transfer[export]`)."""
