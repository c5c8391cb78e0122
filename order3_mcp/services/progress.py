"""Progress reporting for long service calls, such as a finder refresh or a sync batch."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

#: Called with (steps done, steps in all, what the step did). The MCP layer turns
#: each call into a progress notification; the CLI passes none.
ProgressCallback = Callable[[int, int, str], Awaitable[None]]
