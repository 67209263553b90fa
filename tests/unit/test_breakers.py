"""Loss circuit breakers: per period, persisted, re-armed by a new period."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from decimal import Decimal as D

import pytest

from gateway.control.breakers import LossBreakers, period_keys
from gateway.model import TradingState

from .test_rules_support import account, default, relaxed

# Wednesday 2026-11-18, ISO week 47.
WED = datetime(2026, 11, 18, 14, 0, tzinfo=timezone.utc)


class Clock:
    def __init__(self, now: datetime):
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock(WED)


@pytest.fixture
def breakers(tmp_path, clock) -> LossBreakers:
    return LossBreakers(tmp_path / "breakers.json", now=clock)


POLICY = default()


def test_period_keys():
    assert period_keys(WED) == {"day": "2026-11-18", "week": "2026-W47", "month": "2026-11"}
    assert period_keys(datetime(2027, 1, 1, tzinfo=timezone.utc))["week"] == "2026-W53"
    # a local time is read in UTC
    assert period_keys(datetime(2026, 11, 18, 23, 30, tzinfo=timezone(timedelta(hours=-5))))["day"] == "2026-11-19"


def test_no_trip_below_the_daily_limit(breakers):
    assert breakers.observe(account("100000", last_equity="100000"), POLICY) is None
    assert breakers.observe(account("95001", last_equity="100000"), POLICY) is None


def test_daily_breaker_trips_at_the_limit_from_last_equity(breakers):
    # The gateway starts mid-day: the day's start is the venue's last_equity, not the first equity seen.
    trip = breakers.observe(account("95000", last_equity="100000"), POLICY)
    assert trip is not None and trip.code == "daily_loss_limit" and trip.period == "day"
    assert trip.start_equity == D(100000) and trip.loss_pct == D(5) and trip.limit == D(5)
    assert trip.target is TradingState.REDUCE_ONLY and trip.first
    assert "daily_loss_limit" in trip.message and "5.00%" in trip.message and "limit 5%" in trip.message
    assert "reduce_only" in trip.message.lower()


def test_without_last_equity_the_day_starts_at_its_first_observation(breakers):
    assert breakers.observe(account("100000", last_equity="0"), POLICY) is None
    assert breakers.periods()["day"].equity == D(100000)
    assert breakers.observe(account("94000", last_equity="0"), POLICY).code == "daily_loss_limit"


def test_weekly_breaker(breakers, clock):
    pol = relaxed(circuit_breakers={"weekly_loss_pct": 10})
    assert breakers.observe(account("100000"), pol) is None  # Wednesday: the week starts here
    clock.now = WED + timedelta(days=2)  # Friday, same week; each day alone loses less than 10%
    trip = breakers.observe(account("89000", last_equity="92000"), pol)
    assert trip.code == "weekly_loss_limit" and trip.period_key == "2026-W47" and trip.loss_pct == D(11)


def test_monthly_breaker_and_locked_action(breakers, clock):
    pol = relaxed(circuit_breakers={"monthly_loss_pct": 15, "action": "locked"})
    assert breakers.observe(account("100000"), pol) is None
    clock.now = datetime(2026, 11, 29, 12, 0, tzinfo=timezone.utc)
    trip = breakers.observe(account("84000", last_equity="85000"), pol)
    assert trip.code == "monthly_loss_limit" and trip.target is TradingState.LOCKED


def test_the_first_tripped_breaker_is_reported(breakers):
    trip = breakers.observe(account("80000", last_equity="100000"), POLICY)
    assert trip.code == "daily_loss_limit"  # daily, weekly and monthly all over: daily first


def test_a_breaker_trips_once_per_period_and_a_newly_tripped_one_wins(breakers):
    assert breakers.observe(account("94000", last_equity="100000"), POLICY).first
    again = breakers.observe(account("93000", last_equity="100000"), POLICY)
    assert again.code == "daily_loss_limit" and not again.first  # already acted on (maybe unlocked since)
    # The week and the month started at 94,000 (their first observation); at 84,000 both are over
    # and the weekly one is new.
    worse = breakers.observe(account("84000", last_equity="100000"), POLICY)
    assert worse.code == "weekly_loss_limit" and worse.first


def test_starting_equity_and_trips_persist_across_instances(tmp_path, clock):
    path = tmp_path / "state" / "breakers.json"
    first = LossBreakers(path, now=clock)
    assert first.observe(account("100000", last_equity="100000"), POLICY) is None
    assert json.loads(path.read_text())["periods"]["day"]["start_equity"] == "100000"
    clock.now = WED + timedelta(hours=3)
    second = LossBreakers(path, now=clock)  # a restart: the day keeps its start
    trip = second.observe(account("94000", last_equity="97000"), POLICY)
    assert trip.start_equity == D(100000) and trip.first
    third = LossBreakers(path, now=clock)
    assert not third.observe(account("94000", last_equity="97000"), POLICY).first


def test_a_new_day_resets_the_daily_start_but_not_the_week(breakers, clock):
    assert breakers.observe(account("94000", last_equity="100000"), POLICY).first
    clock.now = WED + timedelta(days=1)  # Thursday
    assert breakers.observe(account("94000", last_equity="94000"), POLICY) is None  # re-armed, no new loss
    periods = breakers.periods()
    assert periods["day"].key == "2026-11-19" and periods["day"].equity == D(94000)
    assert periods["week"].key == "2026-W47" and periods["week"].equity == D(94000)
    trip = breakers.observe(account("89300", last_equity="94000"), POLICY)
    assert trip.code == "daily_loss_limit" and trip.first and trip.period_key == "2026-11-19"


def test_a_new_week_and_month_start_fresh(breakers, clock):
    breakers.observe(account("100000"), POLICY)
    clock.now = datetime(2026, 12, 1, 9, 0, tzinfo=timezone.utc)  # Tuesday, week 49, December
    breakers.observe(account("91000", last_equity="91000"), POLICY)
    periods = breakers.periods()
    assert (periods["week"].key, periods["week"].equity) == ("2026-W49", D(91000))
    assert (periods["month"].key, periods["month"].equity) == ("2026-12", D(91000))


def test_breakers_that_are_off_never_trip(breakers):
    assert breakers.observe(account("1", last_equity="100000"), relaxed()) is None


def test_an_unreadable_file_starts_over_and_says_so(tmp_path, clock):
    path = tmp_path / "breakers.json"
    path.write_text("{not json")
    breakers = LossBreakers(path, now=clock)
    assert breakers.load_error is not None and "unreadable" in breakers.load_error
    assert breakers.observe(account("100000"), POLICY) is None
    assert json.loads(path.read_text())["version"] == 1


def test_a_nonsense_equity_is_ignored(breakers):
    assert breakers.observe(account("NaN", last_equity="100000"), POLICY) is None


def test_a_loaded_policy_or_a_bare_policy_both_work(breakers):
    assert breakers.observe(account("94000", last_equity="100000"), POLICY.policy).code == "daily_loss_limit"


def test_periods_are_utc_whatever_the_machines_time_zone(monkeypatch):
    import time

    monkeypatch.setenv("TZ", "Asia/Tokyo")
    time.tzset()
    try:
        assert period_keys(datetime(2026, 11, 18, 20, 0, tzinfo=timezone.utc))["day"] == "2026-11-18"
    finally:
        monkeypatch.undo()
        time.tzset()


@pytest.mark.parametrize("equity, valid", [("0.5", True), ("0", False), ("-5", False), ("NaN", False), ("Infinity", False)])
def test_a_persisted_start_equity_must_be_a_positive_number(equity, valid):
    from gateway.control.breakers import PeriodStart

    raw = {"key": "2026-11-18", "start_equity": equity, "started_at": WED.isoformat(), "tripped_at": None}
    if valid:
        assert PeriodStart.from_json(raw).equity == D(equity)
    else:
        with pytest.raises(ValueError, match=r"^start_equity must be a positive number$"):
            PeriodStart.from_json(raw)


def test_a_persisted_period_with_a_bad_equity_starts_over_and_says_so(tmp_path, clock):
    path = tmp_path / "breakers.json"
    bad = {"key": "2026-11-18", "start_equity": "-1", "started_at": WED.isoformat(), "tripped_at": None}
    path.write_text(json.dumps({"version": 1, "periods": {"day": bad}}))
    breakers = LossBreakers(path, now=clock)
    assert breakers.load_error == "breakers.json is unreadable (start_equity must be a positive number); periods start again"
