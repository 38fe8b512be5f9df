"""heap.release gives freed heap pages back: RSS falls after a burst even
though a live object allocated last pins the top of the heap."""

from __future__ import annotations

import gc
import resource
from pathlib import Path

import pytest

from nicoflow.controller import heap

PAGE = resource.getpagesize()


def rss_mib() -> float:
    return int(Path("/proc/self/statm").read_text().split()[1]) * PAGE / 2**20


@pytest.mark.skipif(not heap.release(), reason="libc without malloc_trim")
def test_freed_burst_goes_back_to_the_os() -> None:
    heap.release()
    burst = [bytes(2048) for _ in range(100_000)]  # ~200 MiB from malloc, not pymalloc
    pin = bytes(2048)  # allocated last: glibc cannot shrink the heap from its top
    grown = rss_mib()
    del burst
    gc.collect()
    before = rss_mib()
    assert heap.release()
    after = rss_mib()
    assert pin
    assert grown - after > 100, (grown, before, after)
    assert before - after > 100, "malloc_trim returned nothing the free alone had not"
