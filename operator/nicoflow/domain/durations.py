"""Go-style durations ("10s", "5m", "1h30m", "250ms").

Rules and schedules keep durations as the text people wrote (that is what a CRD
stores and `kubectl get -o yaml` shows back); code that computes with time
parses them to seconds here."""

from __future__ import annotations

import math
import re
from typing import Annotated

from pydantic import AfterValidator, BeforeValidator, WithJsonSchema

# Non-negative Go durations; a bare "0" is allowed as Go allows it. Go regexp
# syntax too, because the same pattern goes into the CRD schema.
DURATION_PATTERN = r"^(0|([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+)$"
DURATION_MAX_LENGTH = 32
# Go's time.Duration, and so the apiserver's CEL duration(), ends at about 292
# years; a longer value would pass here and be refused by the CRD.
DURATION_MAX_SECONDS = 290 * 365 * 24 * 3600

_WHOLE = re.compile(DURATION_PATTERN)
_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ns|us|ms|s|m|h)")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """Seconds in a Go-style duration string; ValueError with an example when malformed."""
    value = text.strip().replace("µs", "us")
    if len(value) > DURATION_MAX_LENGTH or not _WHOLE.match(value):
        raise ValueError(
            f"invalid duration {text!r}: use a Go-style duration such as 30s, 5m or 1h30m"
        )
    seconds = sum(float(n) * _UNIT_SECONDS[u] for n, u in _PART.findall(value))
    if seconds > DURATION_MAX_SECONDS:
        raise ValueError(
            f"duration {text!r} is too long: at most {DURATION_MAX_SECONDS // 3600}h "
            "(about 290 years)"
        )
    return seconds


def format_duration(seconds: float) -> str:
    """Shortest canonical text for a number of seconds: 5400 -> "1h30m", 0.25 -> "250ms"."""
    if seconds < 0 or not math.isfinite(seconds):
        raise ValueError(f"duration must be a finite non-negative number of seconds, got {seconds}")
    if seconds == 0:
        return "0s"
    millis = round(seconds * 1000)
    if millis % 1000:
        return f"{millis}ms"
    whole = millis // 1000
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    text = (f"{hours}h" if hours else "") + (f"{minutes}m" if minutes else "")
    return text + (f"{secs}s" if secs or not text else "")


NANOSECONDS = 1e9


def _coerce(value: object) -> object:
    # The original's rule JSON carries Go time.Duration values, which JSON writes
    # as integer nanoseconds (its CLI sends a Sleep of 10s as 10000000000).
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError(f"duration {value} is negative; durations are 0 or more")
        return format_duration(float(value) / NANOSECONDS)
    return value


def zero_is_unset(value: object) -> object:
    """None for a zero duration: the original writes an unset timeout or poll
    interval as Go's zero value ("0s", or 0), meaning "use the default"."""
    if value is None or isinstance(value, bool):
        return value
    coerced = _coerce(value)
    if isinstance(coerced, str):
        try:
            if parse_duration(coerced) == 0:
                return None
        except ValueError:
            return value  # the field's own validation says what is wrong
    return coerced


def _check(value: str) -> str:
    parse_duration(value)
    return value.strip().replace("µs", "us")


Duration = Annotated[
    str,
    BeforeValidator(_coerce),
    AfterValidator(_check),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": DURATION_PATTERN,
            "maxLength": DURATION_MAX_LENGTH,
            "description": "Go-style duration, e.g. 30s, 5m, 1h30m.",
        }
    ),
]
"""A duration kept as its text; validated on input, rendered with a pattern in CRDs.
A number is Go's JSON form of a duration: nanoseconds."""

OptionalDuration = Annotated[Duration | None, BeforeValidator(zero_is_unset)]
"""A duration where zero means unset (the default applies), as in the original."""
