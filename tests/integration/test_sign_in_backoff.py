"""Per-account back-off of sign-in: slower after each failure, capped, reset by a success; never a lock-out."""

from datetime import timedelta

import pytest

from sqlalchemy import func, select

from service.auth.models import LoginAttempt
from service.auth.service import account_backoff, attempts_kept_for, prune_login_attempts, sign_in
from service.db import utcnow
from service.organisations.service import APPLICATION_MARK
from service.refusal import Refusal
from tests.support.service import PASSWORD, make_organisation, make_user

pytestmark = pytest.mark.one_backend


@pytest.fixture
def limits(settings):
    return settings.model_copy(
        update={
            "login_failures_per_account": 2,
            "login_backoff_seconds": 2,
            "login_backoff_max_seconds": 8,
            "login_failures_per_address": 1000,
        }
    )


def test_the_delay_doubles_per_failure_up_to_its_cap(limits):
    assert [account_backoff(failures, settings=limits) for failures in range(7)] == [
        None,
        None,
        *(timedelta(seconds=s) for s in (2, 4, 8, 8, 8)),
    ]


def test_a_known_email_is_slowed_down_not_locked_out(db, limits):
    account = make_user(db, "caseworker", organisation=make_organisation(db))
    db.commit()
    start = utcnow()

    def attempt(at_seconds: float, password: str = "wrong password!", address: str = "203.0.113.9"):
        """The answer's status at that moment of the injected clock (200 for a token pair)."""
        try:
            sign_in(
                db,
                settings=limits,
                email=account.email,
                password=password,
                address=address,
                otp=account.otp() if password == PASSWORD else None,
                now=start + timedelta(seconds=at_seconds),
            )
        except Refusal as refused:
            return refused.status, refused.retry_after
        return 200, None

    assert [attempt(0), attempt(0)] == [(401, None), (401, None)]  # the first failures are free
    assert attempt(1) == (429, 1)  # 2 s after the last failure; refused tries are not counted
    assert attempt(2) == (401, None)
    assert attempt(5, PASSWORD) == (429, 1)  # now 4 s, even with the right password, from anywhere
    assert attempt(6) == (401, None)
    assert attempt(6 + 7.5, address="198.51.100.1") == (429, 1)  # 8 s, the cap
    assert attempt(6 + 8) == (401, None)
    # However many failures an attacker adds, the owner waits at most the cap after the latest.
    assert attempt(6 + 16, PASSWORD) == (200, None)
    # A success starts the count again.
    assert [attempt(30), attempt(30), attempt(30)] == [(401, None), (401, None), (429, 2)]


def test_pruning_deletes_only_attempts_that_no_limit_counts(db, limits):
    account = make_user(db, "caseworker", organisation=make_organisation(db))
    db.commit()
    now = utcnow()
    kept = attempts_kept_for(limits)
    assert kept >= timedelta(days=1) and kept >= timedelta(minutes=limits.application_window_minutes)
    stale = now - kept - timedelta(seconds=1)
    db.add_all(
        [LoginAttempt(email=account.email, address="203.0.113.9", succeeded=False, at=stale) for _ in range(3)]
        + [LoginAttempt(email=APPLICATION_MARK, address="203.0.113.9", succeeded=True, at=stale)]
    )
    db.commit()

    def attempt(at: timedelta) -> int:
        try:
            sign_in(
                db,
                settings=limits,
                email=account.email,
                password="wrong password!",
                otp=None,
                address="203.0.113.9",
                now=now + at,
            )
        except Refusal as refused:
            return refused.status
        return 200

    assert [attempt(timedelta(seconds=-1)), attempt(timedelta(seconds=-1))] == [401, 401]
    assert prune_login_attempts(db, settings=limits, now=now) == 4
    assert db.scalar(select(func.count()).select_from(LoginAttempt)) == 2
    assert attempt(timedelta(0)) == 429  # the failures a limit still counts were kept
