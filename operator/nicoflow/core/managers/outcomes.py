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
            elif outcome.ok and prev.ok:
                out[cid] = Outcome(
                    ok=True,
                    done=prev.done and outcome.done,
                    cleanup=prev.cleanup or outcome.cleanup,
                )
            else:
                failed = [o for o in (prev, outcome) if not o.ok]
                out[cid] = Outcome(
                    ok=False,
                    error="; ".join(e for e in (prev.error, outcome.error) if e),
                    transient=all(o.transient for o in failed),
                    uncertain=any(o.uncertain for o in failed),
                    cleanup=prev.cleanup or outcome.cleanup,
                )
    return out


def same_for_all(ids: Iterable[str], outcome: Outcome) -> ComponentResults:
    return dict.fromkeys(ids, outcome)
