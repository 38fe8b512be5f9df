from __future__ import annotations

from nicoflow.simulator.ledger import CallRecord, Ledger


def call(ledger: Ledger, method: str, rid: str | None, *components: str, code: str = "OK") -> int:
    rec = CallRecord(method, rid)
    for c in components:
        rec.touch(c, "on")
    return ledger.commit(rec, code=code, time=1.0, applied=code == "OK")


def test_entries_per_component_share_a_call_number() -> None:
    ledger = Ledger()
    n = call(ledger, "ComponentPowerControl", "r1", "a", "b")
    entries = ledger.entries()
    assert [(e.seq, e.call, e.component_id) for e in entries] == [(1, n, "a"), (2, n, "b")]
    assert entries[0].request_id == "r1"
    assert entries[0].applied


def test_same_request_id_component_and_method_twice_is_a_duplicate() -> None:
    ledger = Ledger()
    first = call(ledger, "ComponentPowerControl", "r1", "a", "b")
    call(ledger, "ComponentPowerControl", "r2", "a")  # another key: fine
    call(ledger, "AdminPowerControl", "r1", "a")  # another method: fine
    second = call(ledger, "ComponentPowerControl", "r1", "b")
    dups = ledger.duplicates()
    assert [(d.request_id, d.component_id, d.method, d.calls) for d in dups] == [
        ("r1", "b", "ComponentPowerControl", (first, second))
    ]


def test_refused_calls_and_missing_ids_are_not_duplicates() -> None:
    ledger = Ledger()
    call(ledger, "M", "r1", "a", code="UNAVAILABLE")
    call(ledger, "M", "r1", "a")
    call(ledger, "M", None, "a")
    call(ledger, "M", None, "a")
    assert ledger.duplicates() == []
    assert len(ledger.duplicates(applied_only=False)) == 1


def test_filters_and_counts() -> None:
    ledger = Ledger()
    call(ledger, "A", "r1", "x")
    call(ledger, "B", "r2", "x", "y", code="UNAVAILABLE")
    assert ledger.count(method="B") == 2
    assert ledger.count(component_id="x") == 2
    assert ledger.count(code="UNAVAILABLE", applied=False) == 2
    assert ledger.counts() == {"A": 1, "B": 2}
    assert ledger.counts("code") == {"OK": 1, "UNAVAILABLE": 2}
    assert [e.seq for e in ledger.entries(since=1)] == [2, 3]
    ledger.clear()
    assert len(ledger) == 0
    call(ledger, "A", None, "z")
    assert ledger.entries()[0].seq == 4  # numbering continues after clear


def test_a_call_that_touched_nothing_still_leaves_an_entry() -> None:
    ledger = Ledger()
    ledger.commit(CallRecord("AddExpectedMachine", "r9"), code="INVALID_ARGUMENT", time=0.0)
    (entry,) = ledger.entries()
    assert entry.component_id == ""
    assert entry.code == "INVALID_ARGUMENT"
