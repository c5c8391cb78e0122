"""The error hierarchy shared by the store, the services, the MCP tools and the CLI.

An MCP client sees each of these as a tool error whose text is the message; the
CLI prints the message and exits with the class's `exit_code`. Messages name the
record, the rule that failed and what to do next.
"""

from __future__ import annotations


class Order3Error(Exception):
    """Base class for expected failures; anything else is a crash."""

    #: Activity outcome recorded for the failed action.
    outcome = "error"
    #: Process exit code used by the CLI.
    exit_code = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotFoundError(Order3Error):
    """A named record does not exist in this workspace."""

    outcome = "invalid"
    exit_code = 4


class InvalidInputError(Order3Error):
    """An argument is malformed or breaks a rule; nothing was written."""

    outcome = "invalid"
    exit_code = 2


class PermissionDeniedError(Order3Error):
    """The caller's token lacks the scope, or separation of duties forbids the action."""

    outcome = "denied"
    exit_code = 3


class ConflictError(Order3Error):
    """The request conflicts with stored state (a reused idempotency key, a concurrent change)."""

    outcome = "conflict"
    exit_code = 5


class ApprovalRequiredError(Order3Error):
    """The action needs an approval that the draft does not have yet."""

    outcome = "denied"
    exit_code = 6


class ChainBrokenError(Order3Error):
    """The activity hash chain, or a checkpoint of it, shows that stored events were changed or removed.

    The CLI exits with 7, a code no other failure uses, so that scripts can tell tampering from other errors.
    """

    outcome = "conflict"
    exit_code = 7
