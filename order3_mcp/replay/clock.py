"""The scenario clock: a fixed, movable time, and the ORDER3_CLOCK variable that hands it to CLI and server processes."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from store.errors import InvalidInputError
from store.types import utc_now

# Test-only: when set to an ISO 8601 time with an offset, `order3` commands and
# `order3 serve` use that fixed time instead of the system clock. The replay
# runner sets it for CLI steps and stdio servers; do not set it in production.
CLOCK_VARIABLE = "ORDER3_CLOCK"

DURATION_UNITS = {"w": timedelta(weeks=1), "d": timedelta(days=1), "h": timedelta(hours=1), "m": timedelta(minutes=1), "s": timedelta(seconds=1)}
DURATION_PART = re.compile(r"(\d+)([wdhms])")
DURATION = re.compile(r"^(?:\d+[wdhms])+$")


def parse_moment(text: str, *, what: str = "time") -> datetime:
    """Parse an ISO 8601 time that carries a UTC offset, such as 2026-12-01T09:00:00+01:00.

    Raises:
        InvalidInputError: If the text is not ISO 8601 or has no offset.
    """
    try:
        moment = datetime.fromisoformat(text)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"{what} {text!r} is not an ISO 8601 time; write it like 2026-12-01T09:00:00+00:00.") from exc
    if moment.tzinfo is None:
        raise InvalidInputError(f"{what} {text!r} has no UTC offset; add one, such as +00:00 or Z.")
    return moment.astimezone(UTC)


def parse_duration(text: str) -> timedelta:
    """Parse a duration such as 2d, 36h, 90m, 1w or 1d12h (weeks, days, hours, minutes, seconds).

    Raises:
        InvalidInputError: If the text is not such a duration or is zero.
    """
    clean = text.strip()
    if not DURATION.match(clean):
        raise InvalidInputError(f"Duration {text!r} is not valid; write a number and a unit (w, d, h, m, s), such as 2d or 1d12h.")
    total = sum((int(count) * DURATION_UNITS[unit] for count, unit in DURATION_PART.findall(clean)), timedelta())
    if total <= timedelta():
        raise InvalidInputError(f"Duration {text!r} is zero; the clock only moves forward.")
    return total


class FixedClock:
    """A clock that stays fixed until a scenario step moves it. Call it for the current time."""

    def __init__(self, start: datetime) -> None:
        self.now = start.astimezone(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        """Move the clock forward by `delta`."""
        self.now += delta

    def move_to(self, moment: datetime) -> None:
        """Move the clock to `moment`.

        Raises:
            InvalidInputError: If `moment` is earlier than the current time.
        """
        if moment < self.now:
            raise InvalidInputError(
                f"The clock cannot move back from {self.now.isoformat()} to {moment.isoformat()}; use a later time."
            )
        self.now = moment.astimezone(UTC)

    def environment_value(self) -> str:
        """Return the current time as an ORDER3_CLOCK value."""
        return self.now.isoformat()


def environment_clock() -> Callable[[], datetime]:
    """Return the clock for a command: a fixed one when ORDER3_CLOCK is set, otherwise the system clock.

    Raises:
        InvalidInputError: If ORDER3_CLOCK is set but is not an ISO 8601 time with an offset.
    """
    value = os.environ.get(CLOCK_VARIABLE, "").strip()
    if not value:
        return utc_now
    return FixedClock(parse_moment(value, what=CLOCK_VARIABLE))
