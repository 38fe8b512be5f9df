"""Hand freed heap memory back to the operating system after a burst.

Resolving a TaskSpec over 1,000 racks holds every targeted component and
builds 1,000 Task bodies; once that is over, most of it is free again, but
glibc keeps the pages (live objects made meanwhile pin the heap's top), so the
process's RSS stays at the burst's high-water mark. malloc_trim returns free
pages from anywhere in the heap."""

from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Callable


def _load() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        trim: Callable[[int], int] = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to do
        return None
    return trim


_TRIM = _load()


def release() -> bool:
    """Return free heap pages to the OS; False where libc has no malloc_trim."""
    if _TRIM is None:
        return False
    _TRIM(0)
    return True
