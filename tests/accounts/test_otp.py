"""Password change by e-mailed code: the code reaches a real SMTP server (aiosmtpd) and works
once; expiry, the attempt limit, replacement by a newer code, the rate limits, the same answer
for unknown logins, session revocation, the pages, and no code in the logs."""

from __future__ import annotations

import datetime as dt
import logging
import re

import pytest

from appliance import clock
from appliance.accounts import otp
from appliance.accounts import service as accounts
from appliance.accounts.otp_tables import OneTimeCode
from appliance.accounts.tables import User
from appliance.errors import AuthenticationFailed, RateLimited, ValidationFailed
from appliance.mail.tables import OutboxMessage
from tests.conftest import run
from tests.helpers import (
    customer_password,
    field_error,
    html,
    login,
    make_customer,
    make_staff,
    post_form,
)
from tests.system.smtp import Mailbox

POLICY = accounts.SessionPolicy(idle=dt.timedelta(minutes=60), max_age=dt.timedelta(hours=12))
HERE = "10.0.0.7"
NEW = "a-brand-new-pass-9"


def code_in(mailbox: Mailbox, to: str, *, index: int = -1) -> str:
    messages = [m for m in mailbox.to(to) if "password code" in m["Subject"]]
    assert messages, f"no code e-mail to {to}"
    text = Mailbox.text(messages[index])
    return re.search(r"^\s+(\d{6})\s*$", text, re.MULTILINE).group(1)


def codes_received(mailbox: Mailbox, to: str) -> int:
    return len([m for m in mailbox.to(to) if "password code" in m["Subject"]])


def other_code(code: str) -> str:
    return f"{(int(code) + 1) % 1_000_000:06d}"


async def _customer(settings, email: str = "ana@example.com", *, password: bool = True):
    customer = await make_customer(settings, name="Ana Souza", email=email)
    if password:  # a known password, for the tests that log in with it (argon2 is slow)
        await customer_password(customer["id"])
    user = (await User.select(User.id).where(User.customer == customer["id"]))[0]
    return customer, user["id"]


async def _reset(settings, login_name: str, code: str, **kw):
    await otp.reset_with_code(
        settings,
        login=login_name,
        code=code,
        new=kw.get("new", NEW),
        confirm=kw.get("confirm", kw.get("new", NEW)),
        address=kw.get("address", HERE),
    )


def _refused_at_code(exc: pytest.ExceptionInfo) -> str:
    assert set(exc.value.errors) == {"code"}
    return exc.value.errors["code"]


# -- service ------------------------------------------------------------------------------------


async def test_code_arrives_by_email_works_once_and_ends_every_session(
    smtp_settings, mailbox, caplog
):
    # Everything at INFO, and the application's own loggers at DEBUG.
    caplog.set_level(logging.INFO)
    caplog.set_level(logging.DEBUG, logger="appliance")
    customer, user_id = await _customer(smtp_settings)
    web = await accounts.start_session(user_id, policy=POLICY)
    api = await accounts.start_session(user_id, policy=POLICY, kind="api")

    await otp.request_code(smtp_settings, customer["crf"], address=HERE)
    code = code_in(mailbox, "ana@example.com")
    [message] = [m for m in mailbox.to("ana@example.com") if "password code" in m["Subject"]]
    assert "Test Office" in message["Subject"] and "Ana Souza" in Mailbox.text(message)
    assert code in message.get_body(preferencelist=("html",)).get_content()
    # Stored as a keyed hash only.
    [row] = await OneTimeCode.select().where(OneTimeCode.user == user_id)
    assert code not in str(row) and row["code_hash"] == otp.code_hash(
        smtp_settings, row["id"], code
    )
    assert row["expires_at"] - row["sent_at"] == dt.timedelta(minutes=10)

    await _reset(smtp_settings, customer["crf"].lower(), f" {code} ")
    assert await accounts.resolve_session(web, policy=POLICY) is None
    assert await accounts.resolve_session(api, policy=POLICY, kind="api") is None
    with pytest.raises(AuthenticationFailed):
        await accounts.authenticate(customer["crf"], "customer-pass-77", address=HERE)
    await accounts.authenticate("ana@example.com", NEW, address=HERE)

    # Used once: the same code does not work again.
    with pytest.raises(ValidationFailed) as again:
        await _reset(smtp_settings, customer["crf"], code, new="yet-another-pass-1")
    _refused_at_code(again)

    for record in caplog.records:
        assert code not in record.getMessage() and code not in str(record.__dict__)
    assert code not in caplog.text


async def test_the_code_expires_ten_minutes_after_sending(smtp_settings, mailbox):
    customer, user_id = await _customer(smtp_settings, password=False)
    await otp.request_code(smtp_settings, customer["crf"], address=HERE)
    clock.shift(dt.timedelta(minutes=10))
    with pytest.raises(ValidationFailed) as late:
        await _reset(smtp_settings, customer["crf"], code_in(mailbox, "ana@example.com"))
    assert "10 minutes" in _refused_at_code(late)
    [before] = await User.select(User.password_hash).where(User.id == user_id)

    await otp.request_code(smtp_settings, customer["crf"], address=HERE)
    clock.shift(dt.timedelta(minutes=9, seconds=59))
    await _reset(smtp_settings, customer["crf"], code_in(mailbox, "ana@example.com"))
    [after] = await User.select(User.password_hash).where(User.id == user_id)
    assert after != before


async def test_five_wrong_codes_then_even_the_right_one_is_refused(smtp_settings, mailbox):
    customer, user_id = await _customer(smtp_settings, password=False)
    await otp.request_code(smtp_settings, customer["crf"], address=HERE)
    code = code_in(mailbox, "ana@example.com")
    for _ in range(otp.MAX_ATTEMPTS):
        with pytest.raises(ValidationFailed) as wrong:
            await _reset(smtp_settings, customer["crf"], other_code(code))
        _refused_at_code(wrong)
    with pytest.raises(ValidationFailed):
        await _reset(smtp_settings, customer["crf"], code)
    [row] = await OneTimeCode.select().where(OneTimeCode.user == user_id)
    assert row["attempts"] == otp.MAX_ATTEMPTS and row["used_at"] is None

    # A new code is needed, and it works.
    await otp.request_code(smtp_settings, customer["crf"], address=HERE)
    fresh = code_in(mailbox, "ana@example.com")
    await _reset(smtp_settings, customer["crf"], fresh)
    await accounts.authenticate(customer["crf"], NEW, address=HERE)


async def test_bad_input_costs_no_attempt(smtp_settings, mailbox):
    customer, user_id = await _customer(smtp_settings, password=False)
    await otp.request_code(smtp_settings, customer["crf"], address=HERE)
    code = code_in(mailbox, "ana@example.com")
    with pytest.raises(ValidationFailed) as short:
        await _reset(smtp_settings, customer["crf"], code, new="short")
    assert set(short.value.errors) == {"new"}
    with pytest.raises(ValidationFailed) as differ:
        await _reset(smtp_settings, customer["crf"], code, new=NEW, confirm=NEW + "x")
    assert set(differ.value.errors) == {"confirm"}
    [row] = await OneTimeCode.select().where(OneTimeCode.user == user_id)
    assert row["attempts"] == 0
    await _reset(smtp_settings, customer["crf"], code)


async def test_a_newer_code_replaces_the_older_one(smtp_settings, mailbox):
    customer, _ = await _customer(smtp_settings, password=False)
    await otp.request_code(smtp_settings, customer["crf"], address=HERE)
    await otp.request_code(smtp_settings, customer["crf"], address=HERE)
    first, second = (
        code_in(mailbox, "ana@example.com", index=0),
        code_in(mailbox, "ana@example.com"),
    )
    if first != second:  # one chance in a million that they are the same
        with pytest.raises(ValidationFailed):
            await _reset(smtp_settings, customer["crf"], first)
    await _reset(smtp_settings, customer["crf"], second)


async def test_unknown_logins_get_the_same_answer_and_no_mail_is_sent(smtp_settings, mailbox):
    await _customer(smtp_settings, password=False)
    no_mail = await make_customer(smtp_settings, email="")
    await make_staff("admin", "nomail")  # staff without an e-mail address
    archived = await make_customer(smtp_settings, email="old@example.com")
    await User.update({User.is_active: False}).where(User.customer == archived["id"])
    before = await OutboxMessage.count()

    for login_name in [
        "nobody@example.com",
        "TS999999",
        "ghost",
        no_mail["crf"],
        "nomail",
        "old@example.com",
    ]:
        assert await otp.request_code(smtp_settings, login_name, address=HERE) is None
        with pytest.raises(ValidationFailed) as refused:
            await _reset(smtp_settings, login_name, "123456")
        assert _refused_at_code(refused)
    assert await OutboxMessage.count() == before
    assert await OneTimeCode.count() == 0
    assert not [m for m in mailbox.messages if "password code" in m["Subject"]]


async def test_requests_are_limited_per_account_silently_and_per_address(smtp_settings, mailbox):
    customer, _ = await _customer(smtp_settings, password=False)
    for n in range(otp.CODES_PER_ACCOUNT + 2):
        # Same answer past the account's limit; no more e-mails.
        assert await otp.request_code(smtp_settings, customer["crf"], address=f"10.1.0.{n}") is None
    assert codes_received(mailbox, "ana@example.com") == otp.CODES_PER_ACCOUNT

    # One address may ask a limited number of times, whatever the logins (known or not).
    for n in range(otp.REQUESTS_PER_ADDRESS):
        await otp.request_code(smtp_settings, f"ghost{n}", address=HERE)
    for login_name in ["ghost-more", customer["crf"]]:
        with pytest.raises(RateLimited):
            await otp.request_code(smtp_settings, login_name, address=HERE)
    await otp.request_code(smtp_settings, "ghost", address="10.9.9.9")

    # After the windows, the account gets codes again.
    clock.shift(otp.ADDRESS_WINDOW)
    await otp.request_code(smtp_settings, customer["crf"], address=HERE)
    assert codes_received(mailbox, "ana@example.com") == otp.CODES_PER_ACCOUNT + 1


async def test_wrong_codes_are_limited_per_address_across_accounts(smtp_settings, mailbox):
    customer, _ = await _customer(smtp_settings, password=False)
    await otp.request_code(smtp_settings, customer["crf"], address="10.2.0.1")
    code = code_in(mailbox, "ana@example.com")
    for n in range(otp.FAILURES_PER_ADDRESS):
        with pytest.raises(ValidationFailed):
            await _reset(smtp_settings, f"ghost{n}", "000000")
    with pytest.raises(RateLimited):
        await _reset(smtp_settings, customer["crf"], code)
    # Another address is not affected, and the code was not spent.
    await _reset(smtp_settings, customer["crf"], code, address="10.2.0.2")


async def test_staff_get_codes_by_username_at_their_address(smtp_settings, mailbox):
    staff = await make_staff("agent", "caio")
    await User.update({User.email: "caio@example.com"}).where(User.id == staff["id"])
    await otp.request_code(smtp_settings, "CAIO", address=HERE)
    message = next(m for m in mailbox.to("caio@example.com") if "password code" in m["Subject"])
    assert "Hello caio," in Mailbox.text(message)
    await _reset(smtp_settings, "caio", code_in(mailbox, "caio@example.com"))
    await accounts.authenticate("caio", NEW, address=HERE)


async def test_logged_in_change_by_code_keeps_this_session_and_ends_the_others(
    smtp_settings, mailbox
):
    customer, user_id = await _customer(smtp_settings, password=False)
    here = await accounts.start_session(user_id, policy=POLICY)
    phone = await accounts.start_session(user_id, policy=POLICY)
    identity = await accounts.resolve_session(here, policy=POLICY)

    await otp.request_code_for_user(smtp_settings, user_id, address=HERE)
    await otp.change_with_code(
        smtp_settings,
        user_id,
        code=code_in(mailbox, "ana@example.com"),
        new=NEW,
        confirm=NEW,
        address=HERE,
        keep_session=identity.session_id,
    )
    assert await accounts.resolve_session(here, policy=POLICY) is not None
    assert await accounts.resolve_session(phone, policy=POLICY) is None
    await accounts.authenticate(customer["crf"], NEW, address=HERE)

    # Someone logged in without an e-mail address is told so.
    bare = await make_staff("admin", "bare")
    with pytest.raises(ValidationFailed) as no_email:
        await otp.request_code_for_user(smtp_settings, bare["id"], address=HERE)
    assert "no e-mail" in no_email.value.errors[""]


# -- pages --------------------------------------------------------------------------------------


def test_forgotten_password_through_the_pages(smtp_client, smtp_settings, mailbox, client2):
    customer, _ = run(_customer(smtp_settings))
    # Another device of the same customer is logged in.
    login(client2, customer["crf"], "customer-pass-77")
    assert client2.get("/portal", follow_redirects=False).status_code == 200

    login_page = html(smtp_client.get("/login"))
    assert login_page.find("a", id="forgot-link")["href"] == "/password/forgot"
    sent = post_form(smtp_client, "/password/forgot", {"login": customer["crf"]})
    assert sent.status_code == 200
    page = html(sent)
    assert page.find(id="code-sent")
    assert page.find("input", attrs={"name": "login"})["value"] == customer["crf"]
    code = code_in(mailbox, "ana@example.com")

    # A wrong code: the message at the code field, the login and code kept, no password echoed.
    wrong = post_form(
        smtp_client,
        "/password/code",
        {"login": customer["crf"], "code": other_code(code), "new": NEW, "confirm": NEW},
    )
    assert wrong.status_code == 422
    page = html(wrong)
    assert "not valid" in field_error(page, "code")
    assert page.find("input", attrs={"name": "login"})["value"] == customer["crf"]
    assert page.find("input", attrs={"name": "code"})["value"] == other_code(code)
    assert NEW not in wrong.text
    # Passwords that differ are shown at their field.
    differ = post_form(
        smtp_client,
        "/password/code",
        {"login": customer["crf"], "code": code, "new": NEW, "confirm": "something-else-1"},
    )
    assert differ.status_code == 422 and field_error(html(differ), "confirm")

    done = post_form(
        smtp_client,
        "/password/code",
        {"login": customer["crf"], "code": code, "new": NEW, "confirm": NEW},
    )
    assert done.status_code == 200 and html(done).find(id="reset-done")
    # Every session ended, the other device's included.
    assert client2.get("/portal", follow_redirects=False).status_code == 303
    login(smtp_client, customer["crf"], NEW)
    assert smtp_client.get("/portal", follow_redirects=False).status_code == 200


def test_unknown_login_gets_the_same_page(smtp_client, smtp_settings, mailbox):
    customer, _ = run(_customer(smtp_settings, password=False))

    def shape(login_name: str) -> tuple[int, str, list[str]]:
        response = post_form(smtp_client, "/password/forgot", {"login": login_name})
        page = html(response)
        names = [i["name"] for i in page.select("form#use-code input")]
        return response.status_code, page.find(id="code-sent").get_text(strip=True), names

    assert shape(customer["crf"]) == shape("TS424242") == shape("nobody@example.com")
    assert codes_received(mailbox, "ana@example.com") == 1
    # Nothing was sent for the unknown logins.
    assert len([m for m in mailbox.messages if "password code" in m["Subject"]]) == 1

    empty = post_form(smtp_client, "/password/forgot", {"login": ""})
    assert empty.status_code == 422 and field_error(html(empty), "login")


def test_too_many_requests_from_one_device_are_refused_on_the_page(smtp_client, smtp_settings):
    for n in range(otp.REQUESTS_PER_ADDRESS):
        assert post_form(smtp_client, "/password/forgot", {"login": f"x{n}"}).status_code == 200
    refused = post_form(smtp_client, "/password/forgot", {"login": "someone"})
    assert refused.status_code == 429
    page = html(refused)
    assert "Too many" in page.find(role="alert").get_text()
    assert page.find("input", attrs={"name": "login"})["value"] == "someone"


def test_logged_in_user_changes_the_password_by_code(smtp_client, smtp_settings, mailbox, client2):
    customer, _ = run(_customer(smtp_settings))
    login(smtp_client, customer["crf"], "customer-pass-77")
    login(client2, customer["crf"], "customer-pass-77")

    page = html(smtp_client.get("/account/password"))
    assert page.find("a", id="code-link")["href"] == "/account/password/code"
    sent = post_form(smtp_client, "/account/password/code/send", {}, page="/account/password/code")
    assert sent.status_code == 200 and html(sent).find(id="code-sent")
    code = code_in(mailbox, "ana@example.com")

    done = post_form(
        smtp_client,
        "/account/password/code",
        {"code": code, "new": NEW, "confirm": NEW},
        page="/account/password/code",
    )
    assert done.status_code == 200
    assert smtp_client.get("/portal", follow_redirects=False).status_code == 200
    assert client2.get("/portal", follow_redirects=False).status_code == 303
