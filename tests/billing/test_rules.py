"""The billing rules on plain values, at their boundaries."""

from __future__ import annotations

import datetime as dt

import pytest

from appliance.billing import rules
from appliance.billing.rules import Month

D = dt.date.fromisoformat


def money(minor: int) -> str:
    return f"{minor / 100:.2f}"


@pytest.mark.parametrize(
    ("p", "end"),
    [
        (202601, "2026-01-31"),
        (202602, "2026-02-28"),
        (202402, "2024-02-29"),  # leap year
        (210002, "2100-02-28"),  # century, not leap
        (200002, "2000-02-29"),  # 400-year leap
        (202604, "2026-04-30"),
        (202612, "2026-12-31"),
    ],
)
def test_month_end_knows_month_lengths_and_leap_years(p, end):
    assert rules.month_end(p) == D(end)


def test_periods_step_over_the_year_change():
    assert rules.next_period(202612) == 202701
    assert rules.previous_period(202701) == 202612
    assert rules.next_period(202602) == 202603


@pytest.mark.parametrize(
    ("paid_until", "through"),
    [
        ("2026-03-31", 202603),  # a month end covers its month
        ("2026-03-30", 202602),  # a day short does not
        ("2024-02-29", 202402),  # leap day is February's end
        ("2026-02-28", 202602),
        ("2026-12-31", 202612),
        ("2027-01-01", 202612),
    ],
)
def test_a_paid_until_date_covers_whole_months_only(paid_until, through):
    assert rules.covered_through(D(paid_until)) == through


def test_opening_is_never_before_the_month_before_registration():
    assert rules.opening_through(D("2026-03-15"), None) == 202602
    assert rules.opening_through(D("2026-03-15"), D("2025-01-31")) == 202602
    assert rules.opening_through(D("2026-03-15"), D("2026-06-30")) == 202606
    assert rules.opening_through(D("2026-01-01"), None) == 202512


def billed(p, amount=100, paid=0):
    return Month(p, "billed", amount, paid)


def test_expiry_is_the_end_of_the_unbroken_paid_run():
    months = [billed(202601, paid=100), billed(202602, paid=100), billed(202603, paid=40)]
    assert rules.expiry_date(months, 202512) == D("2026-02-28")


def test_a_partly_paid_or_unpaid_month_breaks_the_run_even_if_later_ones_are_paid():
    months = [billed(202601, paid=100), billed(202602), billed(202603, paid=100)]
    assert rules.expiry_date(months, 202512) == D("2026-01-31")


def test_nothing_paid_means_expiry_before_the_first_month():
    assert rules.expiry_date([billed(202603)], 202602) == D("2026-02-28")


def test_waived_months_neither_break_nor_extend_the_run():
    months = [
        billed(202601, paid=100),
        Month(202602, "waived", 0, 0),
        Month(202603, "waived", 0, 0),
        billed(202604, paid=100),
        billed(202605),
    ]
    assert rules.expiry_date(months, 202512) == D("2026-04-30")
    assert rules.expiry_date(months[:3], 202512) == D("2026-01-31")


def test_a_month_not_billed_yet_ends_the_run():
    months = [billed(202611, paid=100), Month(202612, "scheduled", 100, 0)]
    assert rules.expiry_date(months, 202610) == D("2026-11-30")


def test_months_paid_before_the_box_count_even_when_not_billed_yet():
    months = [billed(202612, paid=100), Month(202701, "scheduled", 100, 0)]
    assert rules.expiry_date(months, 202703) == D("2027-03-31")


def test_a_free_plan_month_counts_as_paid():
    assert rules.expiry_date([billed(202601, amount=0)], 202512) == D("2026-01-31")


@pytest.mark.parametrize(
    ("expiry", "status"),
    [
        ("2026-03-10", "active"),  # expires today
        ("2026-04-30", "active"),
        ("2026-03-09", "inactive"),  # yesterday
        ("2026-01-09", "inactive"),  # 60 days ago
        ("2026-01-08", "suspended"),  # 61 days ago
    ],
)
def test_status_follows_the_expiry(expiry, status):
    assert rules.status_for(D(expiry), D("2026-03-10")) == status


def test_money_settles_oldest_months_first_and_leaves_the_rest():
    opened = [("jan", 100), ("feb", 100), ("mar", 100)]
    assert rules.allocate(opened, 250) == [("jan", 100), ("feb", 100), ("mar", 50)]
    assert rules.allocate(opened, 100) == [("jan", 100)]
    assert rules.allocate(opened, 400) == [("jan", 100), ("feb", 100), ("mar", 100)]
    assert rules.allocate(opened, 0) == []


def test_amount_at_least_the_minimum_and_never_above_the_due():
    assert rules.amount_problem(25000, 40000, 25000, money) is None  # exactly the minimum
    assert rules.amount_problem(40000, 40000, 25000, money) is None  # exactly the due
    assert "smallest" in rules.amount_problem(24999, 40000, 25000, money)
    assert "more than" in rules.amount_problem(40001, 40000, 25000, money)


def test_a_due_below_the_minimum_must_be_paid_exactly():
    assert rules.amount_problem(8000, 8000, 25000, money) is None
    assert "exactly 80.00" in rules.amount_problem(5000, 8000, 25000, money)
    assert "more than" in rules.amount_problem(9000, 8000, 25000, money)


def test_nothing_due_refuses_any_amount():
    assert "Nothing is due" in rules.amount_problem(100, 0, 25000, money)
