"""One exception tree for skyweave.

Every error carries a message that says what went wrong *and what to do next*, plus structured
fields (``details``) that the CLI prints and the API returns.  Whether a failure is worth retrying
is a property of the error (``retryable``), not something callers guess from the type.
"""

from __future__ import annotations

from typing import Any


class SkyweaveError(Exception):
    """Root of every error skyweave raises on purpose."""

    retryable: bool = False
    exit_code: int = 1

    def __init__(self, message: str, *, hint: str | None = None, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.details = details

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message}\n  hint: {self.hint}"
        return self.message

    def to_dict(self) -> dict[str, Any]:
        return {
            "error": type(self).__name__,
            "message": self.message,
            "hint": self.hint,
            "details": self.details,
        }


class DefinitionError(SkyweaveError):
    """A task or workflow definition is malformed (bad wiring, cycle, unknown parameter...)."""

    exit_code = 2


class WorkflowLoadError(DefinitionError):
    """A workflow file could not be imported or does not define the named workflow."""


class VersionConflictError(DefinitionError):
    """A registered version would change: the same name and version with different code."""


class ParameterError(DefinitionError):
    """A run parameter is missing, unknown or of the wrong type."""


class UnknownTaskError(DefinitionError):
    """No task of that name (or version) is registered."""


class NotFoundError(SkyweaveError):
    """A run, activity or product id does not exist in the store."""

    exit_code = 3


class StoreError(SkyweaveError):
    """The store cannot be opened or is not a skyweave store."""

    exit_code = 4


class NotAStoreError(StoreError):
    """A file exists where the store should be but is not a skyweave store (empty, not a database,
    someone else's database).  It is never written to; ``skyweave init --force`` moves it aside
    and starts a new store there.  ``details["path"]`` is the file."""


class StoreUnavailableError(StoreError):
    """The store's server cannot be reached (down, restarting, refusing connections) or dropped the
    connection mid-statement.  The statement's transaction did not commit; trying again once the
    server is back is safe (``retryable``)."""

    retryable = True


class BusError(SkyweaveError):
    """The bus cannot be reached or refused a message."""

    retryable = True
    exit_code = 4


class MessageError(SkyweaveError):
    """A bus message is malformed; it is quarantined, never half-applied."""


class RunFailedError(SkyweaveError):
    """The results of a run that did not succeed were asked for."""

    exit_code = 1


class InvalidTransitionError(SkyweaveError):
    """A state change that the state machine does not allow."""


class ControlError(SkyweaveError):
    """A control request (pause, cancel, retry, priority) cannot be applied in the current state."""

    exit_code = 5


class LeaseLostError(ControlError):
    """A controller no longer holds the store's controller lease (another took over): it must stop
    acting; nothing it decided after losing the lease was written."""


class TaskFailure(SkyweaveError):
    """User code failed.  Keeps the original exception type, message and traceback as text.

    Raised on the worker side at the one boundary around user code; travels over the bus as data.
    """

    retryable = True

    def __init__(
        self,
        message: str,
        *,
        error_type: str = "Exception",
        traceback: str = "",
        retryable: bool = True,
        exit_code: int | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint, error_type=error_type, exit_code=exit_code)
        self.error_type = error_type
        self.traceback = traceback
        self.retryable = retryable
        self.process_exit_code = exit_code


class TaskTimeout(TaskFailure):
    """The activity ran longer than its timeout and was stopped."""


class Fatal(SkyweaveError):
    """Raise from a task to fail it without retries (bad input data that retrying cannot fix)."""

    retryable = False


class SkyweaveWarning(UserWarning):
    """Root of skyweave's warnings: it works, but perhaps not the way the user meant."""


class TaskVersionWarning(SkyweaveWarning):
    """A submitted task will not run at the version, or of the kind, its file defines, or it
    displaces a task of another kind registered under the same name."""
