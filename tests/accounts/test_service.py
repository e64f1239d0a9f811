"""Accounts: argon2 hashes, logins by username / CRF / e-mail, lockout, the per-address limit,
sessions that expire, password changes that revoke the other sessions."""

from __future__ import annotations

import datetime as dt

import pytest

from appliance import clock
from appliance.accounts import service as accounts
from appliance.accounts.passwords import password_problem, temporary_password, verify_password
from appliance.accounts.tables import LoginFailure, Session, User
from appliance.errors import AuthenticationFailed, RateLimited, ValidationFailed
from tests.helpers import (
    STAFF_PASSWORD,
    SYSTEM,
    customer_password,
    make_customer,
    make_staff,
)

POLICY = accounts.SessionPolicy(idle=dt.timedelta(minutes=60), max_age=dt.timedelta(hours=12))
HERE = "10.0.0.5"


async def test_passwords_are_stored_as_argon2id_hashes(settings):
    staff = await make_staff("admin", "ana")
    row = (await User.select().where(User.id == staff["id"]))[0]
    assert row["password_hash"].startswith("$argon2id$")
    assert STAFF_PASSWORD not in row["password_hash"]
    assert verify_password(row["password_hash"], STAFF_PASSWORD)
    assert not verify_password(row["password_hash"], STAFF_PASSWORD + "x")
    assert not verify_password("not-a-hash", STAFF_PASSWORD)
    assert not verify_password(None, STAFF_PASSWORD)


def test_password_rules_and_temporary_passwords():
    assert password_problem("short")
    assert password_problem("1234567890123")  # digits only
    assert password_problem("x" * 257)
    assert password_problem("long-enough-1") is None
    made = {temporary_password() for _ in range(50)}
    assert len(made) == 50
    assert all(len(p) == 12 and password_problem(p) is None for p in made if not p.isdigit())
    assert not any(c in p for p in made for c in "0O1lI")


async def test_staff_log_in_by_username_in_any_case(settings):
    await make_staff("agent", "Field.Ana")
    user = await accounts.authenticate("  FIELD.ANA ", STAFF_PASSWORD, address=HERE)
    assert user["username"] == "field.ana" and user["role"] == "agent"


async def test_customers_log_in_by_crf_or_email(settings):
    customer = await make_customer(settings, email="Maria@Example.com")
    password = await customer_password(customer["id"])
    by_crf = await accounts.authenticate(customer["crf"].lower(), password, address=HERE)
    by_email = await accounts.authenticate("MARIA@example.COM", password, address=HERE)
    assert by_crf["id"] == by_email["id"]
    assert by_crf["customer"] == customer["id"] and by_crf["role"] == "customer"


async def test_an_archived_customer_sharing_the_email_does_not_block_the_login(settings):
    old = await make_customer(settings, email="family@example.com")
    from appliance.customers import service as customers

    await customers.archive_customer(old["id"], actor=SYSTEM)
    new = await make_customer(settings, email="family@example.com")
    password = await customer_password(new["id"])
    user = await accounts.authenticate("family@example.com", password, address=HERE)
    assert user["customer"] == new["id"]


async def test_wrong_password_and_unknown_login_give_the_same_answer(settings):
    await make_staff("admin", "bruno")
    with pytest.raises(AuthenticationFailed) as wrong:
        await accounts.authenticate("bruno", "wrong-password", address=HERE)
    with pytest.raises(AuthenticationFailed) as unknown:
        await accounts.authenticate("nobody", "wrong-password", address=HERE)
    assert wrong.value.message == unknown.value.message
    assert await LoginFailure.count() == 2
    row = (await User.select().where(User.username == "bruno"))[0]
    assert row["failed_logins"] == 1


async def test_five_failures_lock_the_account_until_an_admin_unlocks_it(settings):
    staff = await make_staff("agent", "carla")
    for _ in range(accounts.MAX_FAILED_LOGINS):
        with pytest.raises(AuthenticationFailed):
            await accounts.authenticate("carla", "wrong-password", address=HERE)
    # Even the right password is refused now, with a message that says why.
    with pytest.raises(RateLimited, match="locked"):
        await accounts.authenticate("carla", STAFF_PASSWORD, address=HERE)
    await accounts.unlock(staff["id"])
    user = await accounts.authenticate("carla", STAFF_PASSWORD, address=HERE)
    assert user["failed_logins"] == 0 and user["locked_until"] is None


async def test_four_failures_then_success_resets_the_count(settings):
    await make_staff("agent", "dora")
    for _ in range(accounts.MAX_FAILED_LOGINS - 1):
        with pytest.raises(AuthenticationFailed):
            await accounts.authenticate("dora", "wrong-password", address=HERE)
    await accounts.authenticate("dora", STAFF_PASSWORD, address=HERE)
    row = (await User.select().where(User.username == "dora"))[0]
    assert row["failed_logins"] == 0
    with pytest.raises(AuthenticationFailed):
        await accounts.authenticate("dora", "wrong-password", address=HERE)
    await accounts.authenticate("dora", STAFF_PASSWORD, address=HERE)


async def test_a_lockout_ends_by_itself(settings):
    await make_staff("agent", "edu")
    for _ in range(accounts.MAX_FAILED_LOGINS):
        with pytest.raises(AuthenticationFailed):
            await accounts.authenticate("edu", "wrong-password", address=HERE)
    clock.shift(accounts.LOCKOUT - dt.timedelta(seconds=5))
    with pytest.raises(RateLimited):
        await accounts.authenticate("edu", STAFF_PASSWORD, address=HERE)
    clock.shift(dt.timedelta(seconds=10))
    await accounts.authenticate("edu", STAFF_PASSWORD, address=HERE)


async def test_unlocking_an_unknown_account_is_not_found(settings):
    from appliance.errors import NotFound

    with pytest.raises(NotFound):
        await accounts.unlock(User.id.default())


async def test_too_many_failures_from_one_address_stop_every_login_from_it(settings):
    await make_staff("admin", "fabio")
    for n in range(accounts.MAX_FAILURES_PER_ADDRESS):
        with pytest.raises(AuthenticationFailed):
            # Different logins each time: the per-account lock never triggers.
            await accounts.authenticate(f"guess{n}", "wrong-password", address=HERE)
    with pytest.raises(RateLimited, match="device"):
        await accounts.authenticate("fabio", STAFF_PASSWORD, address=HERE)
    # Another address is not affected, and the limit slides away with time.
    await accounts.authenticate("fabio", STAFF_PASSWORD, address="10.0.0.6")
    clock.shift(accounts.ADDRESS_WINDOW + dt.timedelta(seconds=1))
    await accounts.authenticate("fabio", STAFF_PASSWORD, address=HERE)


async def test_archived_customers_cannot_log_in_until_restored(settings):
    from appliance.customers import service as customers

    customer = await make_customer(settings)
    password = await customer_password(customer["id"])
    await customers.archive_customer(customer["id"], actor=SYSTEM)
    with pytest.raises(AuthenticationFailed):
        await accounts.authenticate(customer["crf"], password, address=HERE)
    await customers.restore_customer(customer["id"], actor=SYSTEM)
    await accounts.authenticate(customer["crf"], password, address=HERE)


async def test_session_secret_is_not_stored_and_resolves_to_the_user(settings):
    staff = await make_staff("admin", "gil")
    token = await accounts.start_session(staff["id"], policy=POLICY, address=HERE)
    rows = await Session.select()
    assert len(rows) == 1 and rows[0]["id"] != token and token not in rows[0]["id"]
    identity = await accounts.resolve_session(token, policy=POLICY)
    assert identity.id == staff["id"] and identity.role == "admin"
    assert "password_hash" not in identity.user
    assert await accounts.resolve_session(token + "x", policy=POLICY) is None
    assert await accounts.resolve_session("", policy=POLICY) is None
    # A cookie session is not a bearer token and the other way round.
    assert await accounts.resolve_session(token, policy=POLICY, kind="api") is None


async def test_sessions_expire_after_idle_time_but_activity_keeps_them(settings):
    staff = await make_staff("admin", "hugo")
    token = await accounts.start_session(staff["id"], policy=POLICY)
    for _ in range(3):
        clock.shift(dt.timedelta(minutes=50))
        assert await accounts.resolve_session(token, policy=POLICY) is not None
    clock.shift(dt.timedelta(minutes=61))
    assert await accounts.resolve_session(token, policy=POLICY) is None
    # An expired session is removed, not just ignored.
    assert await Session.count() == 0


async def test_sessions_end_at_their_maximum_age_whatever_the_activity(settings):
    staff = await make_staff("admin", "iris")
    token = await accounts.start_session(staff["id"], policy=POLICY)
    for _ in range(14):
        clock.shift(dt.timedelta(minutes=50))
        assert await accounts.resolve_session(token, policy=POLICY) is not None
    clock.shift(dt.timedelta(minutes=50))  # 12 h 30 after login
    assert await accounts.resolve_session(token, policy=POLICY) is None


async def test_api_tokens_do_not_expire_on_idle_but_at_their_lifetime(settings):
    staff = await make_staff("admin", "joel")
    token = await accounts.start_session(staff["id"], policy=POLICY, kind="api")
    clock.shift(dt.timedelta(days=3))
    assert await accounts.resolve_session(token, policy=POLICY, kind="api") is not None
    clock.shift(accounts.API_TOKEN_LIFETIME)
    assert await accounts.resolve_session(token, policy=POLICY, kind="api") is None


async def test_password_change_checks_its_input(settings):
    staff = await make_staff("admin", "kai")
    cases = [
        (dict(current="wrong", new="new-password-1", confirm="new-password-1"), "current"),
        (dict(current=STAFF_PASSWORD, new="short", confirm="short"), "new"),
        (dict(current=STAFF_PASSWORD, new="new-password-1", confirm="new-password-2"), "confirm"),
        (dict(current=STAFF_PASSWORD, new=STAFF_PASSWORD, confirm=STAFF_PASSWORD), "new"),
    ]
    for values, field in cases:
        with pytest.raises(ValidationFailed) as exc:
            await accounts.change_password(staff["id"], **values)
        assert field in exc.value.errors, values
    await accounts.authenticate("kai", STAFF_PASSWORD, address=HERE)


async def test_password_change_revokes_other_sessions_and_keeps_this_one(settings):
    staff = await make_staff("admin", "lia", must_change=True)
    here = await accounts.start_session(staff["id"], policy=POLICY)
    phone = await accounts.start_session(staff["id"], policy=POLICY)
    api = await accounts.start_session(staff["id"], policy=POLICY, kind="api")
    other_user = await make_staff("admin", "max")
    theirs = await accounts.start_session(other_user["id"], policy=POLICY)
    current = await accounts.resolve_session(here, policy=POLICY)
    assert current.must_change_password

    await accounts.change_password(
        staff["id"],
        current=STAFF_PASSWORD,
        new="brand-new-pass-1",
        confirm="brand-new-pass-1",
        keep_session=current.session_id,
    )
    after = await accounts.resolve_session(here, policy=POLICY)
    assert after is not None and not after.must_change_password
    assert await accounts.resolve_session(phone, policy=POLICY) is None
    assert await accounts.resolve_session(api, policy=POLICY, kind="api") is None
    assert await accounts.resolve_session(theirs, policy=POLICY) is not None
    with pytest.raises(AuthenticationFailed):
        await accounts.authenticate("lia", STAFF_PASSWORD, address=HERE)
    await accounts.authenticate("lia", "brand-new-pass-1", address=HERE)


async def test_staff_creation_checks_username_role_and_password(settings):
    await make_staff("admin", "nina")
    cases = [
        (dict(username="Nina", role="agent", password=STAFF_PASSWORD), "username"),
        (dict(username="x", role="agent", password=STAFF_PASSWORD), "username"),
        (dict(username="bad name", role="agent", password=STAFF_PASSWORD), "username"),
        (dict(username="otto", role="customer", password=STAFF_PASSWORD), "role"),
        (dict(username="otto", role="agent", password="123"), "password"),
    ]
    for values, field in cases:
        with pytest.raises(ValidationFailed) as exc:
            await accounts.create_staff(**values)
        assert field in exc.value.errors, values


async def test_first_admin_is_created_once_with_a_temporary_password(settings):
    created = await accounts.ensure_first_admin()
    assert created is not None
    username, password = created
    user = await accounts.authenticate(username, password, address=HERE)
    assert user["role"] == "admin" and user["must_change_password"]
    assert await accounts.ensure_first_admin() is None
    assert await User.count().where(User.role == "admin") == 1
