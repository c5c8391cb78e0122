"""The one error the policies package raises."""

from __future__ import annotations


class PolicyError(ValueError):
    """A policy file, role, scope, action or fact is invalid.

    The message names the file or value, the rule that failed and the fix. It is a
    ValueError so that callers which already turn bad input into an "invalid" tool
    error or CLI exit code handle it without a special case.
    """
