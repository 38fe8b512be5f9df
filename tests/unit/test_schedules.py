"""When TaskSchedules fire: cron in time zones across DST changes, intervals
anchored to creation, one-time, starting deadlines and TaskSpec names."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from nicoflow.domain import schedules as s

NY = ZoneInfo("America/New_York")
BERLIN = ZoneInfo("Europe/Berlin")
CREATED = datetime(2024, 1, 1, tzinfo=UTC)


def series(schedule: s.Schedule, after: datetime, n: int) -> list[datetime]:
    out: list[datetime] = []
    t: datetime | None = after
    for _ in range(n):
        assert t is not None
        t = s.next_after(schedule, t)
        assert t is not None
        out.append(t)
    return out


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


# (expression, zone, start (UTC), expected fire times (UTC))
CRON_CASES = [
    pytest.param(
        "0 2 * * *",
        "UTC",
        utc(2024, 5, 1, 12),
        [utc(2024, 5, 2, 2), utc(2024, 5, 3, 2), utc(2024, 5, 4, 2)],
        id="daily-utc",
    ),
    pytest.param(
        "@hourly",
        "UTC",
        utc(2024, 5, 1, 12, 30),
        [utc(2024, 5, 1, 13), utc(2024, 5, 1, 14)],
        id="macro",
    ),
    pytest.param(
        "0 9 * * 1-5",
        "Europe/Berlin",
        utc(2024, 7, 5, 12),  # a Friday, CEST (UTC+2)
        [utc(2024, 7, 8, 7), utc(2024, 7, 9, 7)],
        id="weekdays-berlin-summer",
    ),
    # New York springs forward 2024-03-10 02:00 EST -> 03:00 EDT: 02:30 does
    # not exist and moves forward by the gap, to 03:30 EDT (07:30 UTC).
    pytest.param(
        "30 2 * * *",
        "America/New_York",
        utc(2024, 3, 8, 12),
        [utc(2024, 3, 9, 7, 30), utc(2024, 3, 10, 7, 30), utc(2024, 3, 11, 6, 30)],
        id="ny-spring-forward-gap",
    ),
    # 02:30 (moved to 03:30 EDT) and 03:30 EDT are the same instant: fires once.
    pytest.param(
        "30 2,3 * * *",
        "America/New_York",
        utc(2024, 3, 10, 5),
        [utc(2024, 3, 10, 7, 30), utc(2024, 3, 11, 6, 30), utc(2024, 3, 11, 7, 30)],
        id="ny-spring-forward-collapse",
    ),
    # New York falls back 2024-11-03 02:00 EDT -> 01:00 EST: 01:30 happens twice,
    # fires once (the first, EDT, 05:30 UTC).
    pytest.param(
        "30 1 * * *",
        "America/New_York",
        utc(2024, 11, 2, 12),
        [utc(2024, 11, 3, 5, 30), utc(2024, 11, 4, 6, 30)],
        id="ny-fall-back-once",
    ),
    # Every 30 minutes through the repeated hour: the wall-clock times 01:00 and
    # 01:30 fire once each, so there is a gap of an hour and a half.
    pytest.param(
        "*/30 * * * *",
        "America/New_York",
        utc(2024, 11, 3, 4, 10),  # 00:10 EDT
        [
            utc(2024, 11, 3, 4, 30),
            utc(2024, 11, 3, 5, 0),  # 01:00 EDT
            utc(2024, 11, 3, 5, 30),  # 01:30 EDT
            utc(2024, 11, 3, 7, 0),  # 02:00 EST
            utc(2024, 11, 3, 7, 30),
        ],
        id="ny-fall-back-every-30m",
    ),
    # Berlin springs forward 2024-03-31 02:00 CET -> 03:00 CEST.
    pytest.param(
        "15 2 * * *",
        "Europe/Berlin",
        utc(2024, 3, 30, 12),
        [utc(2024, 3, 31, 1, 15), utc(2024, 4, 1, 0, 15)],
        id="berlin-spring-forward-gap",
    ),
    # Berlin falls back 2024-10-27 03:00 CEST -> 02:00 CET: 02:15 fires once.
    pytest.param(
        "15 2 * * *",
        "Europe/Berlin",
        utc(2024, 10, 26, 12),
        [utc(2024, 10, 27, 0, 15), utc(2024, 10, 28, 1, 15)],
        id="berlin-fall-back-once",
    ),
    pytest.param(
        "0 * * * *",
        "Europe/Berlin",
        utc(2024, 3, 30, 23, 30),  # 00:30 CET
        [
            utc(2024, 3, 31, 0),
            utc(2024, 3, 31, 1),
            utc(2024, 3, 31, 2),
        ],  # 01 CET, 03 CEST(=02 gap), 04
        id="berlin-spring-forward-hourly",
    ),
]


@pytest.mark.parametrize(("expr", "zone", "start", "expected"), CRON_CASES)
def test_cron_next_fire_times(
    expr: str, zone: str, start: datetime, expected: list[datetime]
) -> None:
    schedule = s.cron(expr, zone, created=CREATED)
    assert series(schedule, start, len(expected)) == expected


def test_cron_in_the_second_pass_of_a_repeated_hour_waits_for_the_next_new_time() -> None:
    schedule = s.cron("* * * * *", "America/New_York", created=CREATED)
    second_pass = datetime(2024, 11, 3, 1, 10, tzinfo=NY, fold=1)  # 01:10 EST
    assert s.next_after(schedule, second_pass) == utc(2024, 11, 3, 7, 0)  # 02:00 EST


def test_cron_that_never_matches_has_no_next_time() -> None:
    assert s.next_after(s.cron("0 0 31 2 *", created=CREATED), CREATED) is None


def test_invalid_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="invalid cron"):
        s.cron("not a cron", created=CREATED)
    with pytest.raises(ValueError, match="time zone"):
        s.next_after(s.cron("@daily", created=CREATED), datetime(2024, 1, 1))
    with pytest.raises(ValueError, match="exactly one"):
        s.from_spec({}, CREATED)


def test_interval_is_anchored_to_creation_and_never_drifts() -> None:
    created = utc(2024, 5, 1, 10, 0, 7)
    schedule = s.interval(timedelta(hours=6), created=created)
    # evaluated late each time (latency of 3 minutes): the grid stays put
    t = created
    fired = []
    for _ in range(4):
        nxt = s.next_after(schedule, t)
        assert nxt is not None
        fired.append(nxt)
        t = nxt + timedelta(minutes=3)
    assert fired == [created + k * timedelta(hours=6) for k in range(1, 5)]
    # before creation the first time is one interval after creation
    assert s.next_after(schedule, created - timedelta(days=1)) == created + timedelta(hours=6)
    # exactly on a grid point, the next one is strictly later
    assert s.next_after(schedule, created + timedelta(hours=12)) == created + timedelta(hours=18)


def test_interval_from_spec_rounds_to_whole_seconds() -> None:
    schedule = s.from_spec({"interval": "1m0.4s"}, CREATED)
    assert isinstance(schedule, s.IntervalSchedule)
    assert schedule.every == timedelta(minutes=1)


def test_one_time() -> None:
    at = utc(2024, 6, 1, 3)
    schedule = s.from_spec({"at": "2024-06-01T03:00:00Z"}, CREATED)
    assert s.next_after(schedule, at - timedelta(seconds=1)) == at
    assert s.next_after(schedule, at) is None
    # due once, whatever the creation time (it may be created after its time)
    late = s.one_time(at, created=at + timedelta(minutes=5))
    assert s.due(late, None, at + timedelta(minutes=6)).fire == at
    assert s.due(late, at, at + timedelta(minutes=7)).fire is None
    # an edited, later `at` re-arms it
    assert s.due(
        s.one_time(at + timedelta(hours=1), created=CREATED), at, at + timedelta(hours=2)
    ).fire == at + timedelta(hours=1)


# (cursor, now, deadline) -> (fire, missed_count, missed newest)
HOURLY = s.cron("0 * * * *", created=utc(2024, 5, 1, 0, 30))
DUE_CASES = [
    pytest.param(None, utc(2024, 5, 1, 0, 59), None, None, 0, id="nothing-due-yet"),
    pytest.param(None, utc(2024, 5, 1, 1, 0), None, utc(2024, 5, 1, 1), 0, id="due-on-time"),
    pytest.param(utc(2024, 5, 1, 1), utc(2024, 5, 1, 1, 59), None, None, 0, id="already-handled"),
    pytest.param(
        utc(2024, 5, 1, 1),
        utc(2024, 5, 1, 4, 10),
        None,
        utc(2024, 5, 1, 4),
        2,
        id="outage-fires-latest-only",
    ),
    pytest.param(
        utc(2024, 5, 1, 1),
        utc(2024, 5, 1, 4, 10),
        900,
        utc(2024, 5, 1, 4),
        2,
        id="latest-within-deadline",
    ),
    pytest.param(
        utc(2024, 5, 1, 1), utc(2024, 5, 1, 4, 20), 600, None, 3, id="latest-past-deadline"
    ),
]


@pytest.mark.parametrize(("cursor", "now", "deadline", "fire", "missed"), DUE_CASES)
def test_due(
    cursor: datetime | None,
    now: datetime,
    deadline: float | None,
    fire: datetime | None,
    missed: int,
) -> None:
    decision = s.due(HOURLY, cursor, now, deadline)
    assert decision.fire == fire
    assert decision.missed_count == missed
    assert decision.next_time == s.next_after(HOURLY, now)
    if fire is None and missed:
        assert decision.handled == decision.missed[-1] == utc(2024, 5, 1, 4)


def test_due_after_a_long_outage_is_cheap_and_fires_once() -> None:
    every_minute = s.cron("* * * * *", created=CREATED)
    decision = s.due(every_minute, CREATED, utc(2024, 12, 31, 23, 59, 30))
    assert decision.fire == utc(2024, 12, 31, 23, 59)
    assert decision.missed_more
    assert len(decision.missed) == s.MISSED_KEPT
    assert decision.missed[-1] == utc(2024, 12, 31, 23, 58)


def test_due_for_a_yearly_cron_finds_last_years_time() -> None:
    yearly = s.cron("0 0 1 1 *", created=utc(2020, 6, 1))
    decision = s.due(yearly, utc(2021, 1, 1), utc(2024, 3, 1))
    assert decision.fire == utc(2024, 1, 1)
    assert decision.missed == (utc(2022, 1, 1), utc(2023, 1, 1))


def test_interval_due_across_missed_times() -> None:
    created = utc(2024, 5, 1, 0, 0, 5)
    schedule = s.interval(600, created=created)
    decision = s.due(schedule, None, created + timedelta(minutes=35))
    assert decision.fire == created + timedelta(minutes=30)
    assert decision.missed_count == 2
    assert decision.next_time == created + timedelta(minutes=40)


def test_taskspec_names_are_deterministic_and_bounded() -> None:
    t = utc(2024, 5, 1, 2)
    assert s.taskspec_name("nightly", t) == f"nightly-{int(t.timestamp())}"
    assert s.taskspec_name("nightly", t) == s.taskspec_name("nightly", t + timedelta(0))
    assert s.taskspec_name("nightly", t) != s.taskspec_name("nightly", t + timedelta(minutes=1))
    long_a, long_b = "a" * 80 + "-x", "a" * 80 + "-y"
    name_a, name_b = s.taskspec_name(long_a, t), s.taskspec_name(long_b, t)
    assert len(name_a) <= 63
    assert len(name_b) <= 63
    assert name_a != name_b
    assert name_a.endswith(f"-{int(t.timestamp())}")
    assert s.trigger_name("nightly", "tok1") == s.trigger_name("nightly", "tok1")
    assert s.trigger_name("nightly", "tok1") != s.trigger_name("nightly", "tok2")
    assert s.trigger_name("nightly", "tok1").startswith("nightly-manual-")
    assert len(s.trigger_name("b" * 200, "t")) <= 63
    assert s.label_value("nightly") == "nightly"
    assert len(s.label_value("c" * 100)) <= 63
    assert s.label_value("c" * 100) != s.label_value("c" * 99)
