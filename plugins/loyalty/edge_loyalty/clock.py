"""Calendar arithmetic in a member's time zone: local days, periods, months, birthdays.

All inputs are epoch seconds from the node's clock (``time.time()``); a member's
day, period and birthday are read in the member's IANA time zone.
"""

from __future__ import annotations

import calendar
import re
from datetime import date, datetime, timezone, tzinfo
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

BIRTHDAY = re.compile(r"^(?:(\d{4})-)?(\d{2})-(\d{2})$")


@lru_cache(maxsize=1024)
def zone(name: str) -> tzinfo:
    if name == "UTC":  # works even without a time-zone database
        return timezone.utc
    return ZoneInfo(name)


def check_zone(name: str) -> bool:
    """Whether ``name`` is an IANA time zone this machine knows."""
    if not isinstance(name, str) or not 0 < len(name) <= 64 or name.startswith(("/", ".")) or ".." in name:
        return False
    try:
        zone(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return False
    return True


def local(ts: float, tz: str) -> datetime:
    return datetime.fromtimestamp(ts, zone(tz))


def local_day(ts: float, tz: str) -> str:
    """The member's calendar day at ``ts`` as ``YYYY-MM-DD``."""
    return local(ts, tz).date().isoformat()


def period_index(ts: float, tz: str, period: str) -> int:
    """A counter that goes up by one at every month / quarter / year boundary (local time)."""
    d = local(ts, tz)
    if period == "month":
        return d.year * 12 + d.month - 1
    if period == "quarter":
        return d.year * 4 + (d.month - 1) // 3
    if period == "year":
        return d.year
    raise ValueError(f"unknown period {period!r}")


def add_months(ts: float, months: int) -> float:
    """``ts`` plus calendar months (UTC), the day clamped to the target month's length."""
    d = datetime.fromtimestamp(ts, timezone.utc)
    total = d.year * 12 + d.month - 1 + months
    year, month = divmod(total, 12)
    day = min(d.day, calendar.monthrange(year, month + 1)[1])
    return d.replace(year=year, month=month + 1, day=day).timestamp()


def parse_birthday(value: str) -> str:
    """``MM-DD`` from ``MM-DD`` or ``YYYY-MM-DD``; ``ValueError`` when it is no date."""
    m = BIRTHDAY.fullmatch(value) if isinstance(value, str) else None
    if m is None:
        raise ValueError("birthday must be MM-DD or YYYY-MM-DD")
    year = int(m.group(1)) if m.group(1) else 2000  # a leap year: 02-29 is a birthday
    month, day = int(m.group(2)), int(m.group(3))
    try:
        date(year, month, day)
    except ValueError:
        raise ValueError(f"birthday {value!r} is not a calendar date") from None
    if m.group(1) and not 1900 <= year <= 2100:
        raise ValueError(f"birthday year {year} is out of range")
    return f"{month:02d}-{day:02d}"


def birthdays_on(day: date) -> list[str]:
    """The ``MM-DD`` birthdays celebrated on ``day``: 02-29 falls on 02-28 in other years."""
    out = [f"{day.month:02d}-{day.day:02d}"]
    if (day.month, day.day) == (2, 28) and not calendar.isleap(day.year):
        out.append("02-29")
    return out
