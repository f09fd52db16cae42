"""Birthdays and days in the member's time zone: gifts once a year, check-ins once a day."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

import pytest

from edge_loyalty.clock import birthdays_on, local_day, parse_birthday
from edge_loyalty.config import parse_config
from edge_loyalty.store import LoyaltyError, Store


def ts(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc).timestamp()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "l.sqlite3", parse_config({"birthday_points": 50, "birthday_growth": 5}), durable=False)
    yield s
    s.close()


def gifts(store: Store, identity: str) -> list[str]:
    return [r[0] for r in store.db.execute(
        "SELECT DISTINCT event_id FROM ledger WHERE identity = ? AND rule = 'birthday' ORDER BY seq", (identity,)
    )]


def test_tokyo_and_mexico_city_near_midnight_utc(store: Store) -> None:
    t0 = ts("2025-03-01T00:00:00")
    store.set_profile("kenji", t0, birthday="1990-03-15", timezone="Asia/Tokyo")
    store.set_profile("lupita", t0, birthday="03-15", timezone="America/Mexico_City")
    store.set_profile("uma", t0, birthday="03-15")  # the default time zone: UTC

    # 2025-03-14 15:30 UTC: 00:30 on the 15th in Tokyo, 09:30 on the 14th in Mexico City
    out = store.sweep(ts("2025-03-14T15:30:00"))
    assert out.info["birthdays"] == 1 and gifts(store, "kenji") == ["birthday:kenji:2025"]
    assert gifts(store, "lupita") == gifts(store, "uma") == []
    assert store.member("kenji").points == 50 and store.member("kenji").growth == 5  # type: ignore[union-attr]

    # every later sweep of that day gives nothing more
    for t in ("2025-03-14T15:31:00", "2025-03-14T23:59:00", "2025-03-15T05:59:59"):
        store.sweep(ts(t))
    assert gifts(store, "kenji") == ["birthday:kenji:2025"]
    assert gifts(store, "uma") == ["birthday:uma:2025"]  # UTC's 15th began at 00:00
    assert gifts(store, "lupita") == []  # 23:59:59 on the 14th in Mexico City (UTC-6)

    store.sweep(ts("2025-03-15T06:00:00"))  # midnight in Mexico City
    assert gifts(store, "lupita") == ["birthday:lupita:2025"]
    store.sweep(ts("2025-03-15T14:59:00"))  # still the 15th in Tokyo, 23:59
    store.sweep(ts("2025-03-16T05:00:00"))  # the 16th in Tokyo
    assert gifts(store, "kenji") == ["birthday:kenji:2025"]
    assert store.member("kenji").points == 50  # type: ignore[union-attr]

    # next year: once more
    store.sweep(ts("2026-03-14T15:00:00"))
    assert gifts(store, "kenji") == ["birthday:kenji:2025", "birthday:kenji:2026"]
    for who in ("kenji", "lupita", "uma"):
        cached, summed = store.verify(who)
        assert cached == summed


def test_changing_the_birthday_gives_no_second_gift(store: Store) -> None:
    t0 = ts("2025-06-01T12:00:00")
    store.set_profile("ann", t0, birthday="06-01")
    store.sweep(t0)
    with pytest.raises(LoyaltyError) as refused:
        store.set_profile("ann", t0, birthday="06-02")  # the member may set it once
    assert refused.value.code == "birthday_locked"
    store.set_profile("ann", t0, birthday="06-02", force=True)  # an admin may correct it
    store.sweep(ts("2025-06-02T12:00:00"))
    assert gifts(store, "ann") == ["birthday:ann:2025"]  # once a year, whatever the date says
    store.set_profile("ann", t0, birthday="06-02")  # setting the same again is fine
    store.sweep(ts("2026-06-01T12:00:00"))
    assert gifts(store, "ann") == ["birthday:ann:2025"]
    store.sweep(ts("2026-06-02T12:00:00"))
    assert gifts(store, "ann") == ["birthday:ann:2025", "birthday:ann:2026"]


def test_leap_day_birthdays() -> None:
    assert parse_birthday("2000-02-29") == "02-29"
    assert birthdays_on(datetime(2025, 2, 28).date()) == ["02-28", "02-29"]
    assert birthdays_on(datetime(2028, 2, 28).date()) == ["02-28"]
    assert birthdays_on(datetime(2028, 2, 29).date()) == ["02-29"]
    for bad in ("2001-02-29", "13-01", "02-30", "1-2", "tomorrow", "1800-01-01"):
        with pytest.raises(ValueError):
            parse_birthday(bad)


def test_checkin_once_a_day_in_the_members_time_zone(store: Store) -> None:
    store.set_profile("kenji", 0, timezone="Asia/Tokyo")
    t = ts("2025-03-14T14:59:00")  # 23:59 in Tokyo
    assert local_day(t, "Asia/Tokyo") == "2025-03-14"
    assert store.checkin("kenji", t).status == "credited"
    assert store.checkin("kenji", t + 30).status == "already"
    assert store.checkin("kenji", t + 60).status == "credited"  # 00:00 on the 15th in Tokyo
    # moving the time zone westwards does not make the 15th happen twice
    store.set_profile("kenji", t, timezone="Pacific/Honolulu")
    assert store.checkin("kenji", t + 120).status == "already"
    assert store.member("kenji").last_checkin == "2025-03-15"  # type: ignore[union-attr]
