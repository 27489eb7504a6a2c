"""The error hierarchy.

Two kinds of failure: what a *model* got wrong (a bad chain, a tool failure) goes back into the
conversation as a message it can act on and never surfaces here; what the *user or configuration* got wrong is a
:class:`ConclaveError` carrying a one-line message and the fix, turned into a CLI message only at the edge.
"""

from __future__ import annotations


class ConclaveError(Exception):
    """A problem the user can fix; ``hint`` says how."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None):
        from conclave.redact import redact

        # Errors are printed, traced, stored and reported: no secret may ride along (a server echoing a key).
        message = redact(message)
        hint = redact(hint) if hint else hint
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message} ({self.hint})"


class ConfigError(ConclaveError):
    """Invalid settings, spec strings or files."""

    exit_code = 2


class BackendError(ConclaveError):
    """A model or embedding backend failed in a way retries did not fix."""


class BackendUnavailable(BackendError):
    """The backend's server could not be reached."""


class ModelNotFound(BackendError):
    """The backend answers but does not have the model."""


class AuthenticationFailed(BackendError):
    """Missing or rejected credentials."""


class StoreError(ConclaveError):
    """The knowledge store failed (server down, collection missing, embedder mismatch)."""


class ToolInputError(ConclaveError):
    """A tool was called with arguments that do not match its schema or cannot be evaluated."""


class ToolFailed(ConclaveError):
    """A tool ran and failed (an MCP server's error or crash)."""


class WorkflowError(ConclaveError):
    """A workflow file or run is invalid."""

    exit_code = 2
