"""Small helpers for combining per-component outcomes."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from nicoflow.core.managers.results import ComponentResults, Outcome


def merge(*parts: Mapping[str, Outcome]) -> ComponentResults:
    """A component succeeds only if every part that mentions it succeeded."""
    out: ComponentResults = {}
    for part in parts:
        for cid, outcome in part.items():
            prev = out.get(cid)
            if prev is None:
                out[cid] = outcome
            elif not outcome.ok or not prev.ok:
                errors = "; ".join(e for e in (prev.error, outcome.error) if e)
                out[cid] = Outcome.failure(errors)
    return out


def same_for_all(ids: Iterable[str], outcome: Outcome) -> ComponentResults:
    return dict.fromkeys(ids, outcome)
