"""The account's request budget: orders are never held back, a bot's reads stop before they
would eat into the quarter kept for orders, and say when to come back."""

from __future__ import annotations

import pytest

from gateway.errors import RateLimited
from gateway.pipeline.budget import UpstreamBudget


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


def test_reads_stop_at_three_quarters_of_the_limit_and_say_when_to_retry():
    clock = Clock()
    budget = UpstreamBudget(200, monotonic=clock)
    for _ in range(150):
        budget.admit_read()
        budget.spend()
    with pytest.raises(RateLimited) as refused:
        budget.admit_read()
    assert refused.value.retry_after_s == 60  # the oldest request leaves the window in 60 s
    clock.t += 30
    with pytest.raises(RateLimited) as refused:
        budget.admit_read()
    assert refused.value.retry_after_s == 30
    clock.t += 30.01
    budget.admit_read()  # the window moved on
    assert budget.refused_reads == 2


def test_orders_are_counted_but_never_refused():
    budget = UpstreamBudget(200, monotonic=Clock())
    for _ in range(250):
        budget.spend()  # the venue sends orders whatever the count
    assert budget.used() == 250
    with pytest.raises(RateLimited):
        budget.admit_read()


def test_weights_count_as_binance_counts_them():
    budget = UpstreamBudget(2400, monotonic=Clock())
    for _ in range(44):
        budget.spend(40)  # open orders without a symbol
    budget.admit_read(5)  # 1,760 + 5 <= 1,800
    with pytest.raises(RateLimited):
        budget.admit_read(41)


def test_a_venue_without_a_limit_has_no_budget():
    budget = UpstreamBudget(None, monotonic=Clock())
    for _ in range(10_000):
        budget.spend()
    budget.admit_read()
    assert budget.snapshot()["share"] is None


@pytest.mark.parametrize("per_min, reserve", [(0, 0.25), (-5, 0.25), (100, 1.0), (100, -0.1)])
def test_nonsense_settings_are_refused(per_min, reserve):
    with pytest.raises(ValueError):
        UpstreamBudget(per_min, reserve=reserve)
