"""The transition time of a condition moves only when its status changes."""

from __future__ import annotations

from nicoflow.controller.conditions import condition

EARLIER = "2026-11-01T10:00:00Z"
NOW = "2026-11-28T12:00:00Z"
PREVIOUS = {
    "conditions": [
        {"type": "Ready", "status": "True", "lastTransitionTime": EARLIER},
        {"type": "Drifted", "status": "False", "lastTransitionTime": EARLIER},
    ]
}


def test_same_status_keeps_its_transition_time() -> None:
    c = condition(PREVIOUS, "Ready", "True", "Fine", "all good", now=NOW, generation=3)
    assert c == {
        "type": "Ready",
        "status": "True",
        "reason": "Fine",
        "message": "all good",
        "lastTransitionTime": EARLIER,
        "observedGeneration": 3,
    }


def test_changed_or_new_condition_starts_now() -> None:
    assert (
        condition(PREVIOUS, "Drifted", "True", "D", "", now=NOW, generation=1)["lastTransitionTime"]
        == NOW
    )
    assert (
        condition(None, "Ready", "True", "R", "", now=NOW, generation=None)["lastTransitionTime"]
        == NOW
    )


def test_long_messages_are_cut_to_the_api_limit() -> None:
    c = condition(None, "Failed", "True", "R", "x" * 40000, now=NOW, generation=1)
    assert len(c["message"]) == 32768
