"""Who may push what: revoked, unknown and impersonating boxes are refused with nothing applied;
a gap in the sequence is refused with the sequence central expects; changes central has are
ignored by change id."""

from __future__ import annotations

import uuid

import pytest

from appliance.customers.tables import Customer
from appliance.sync import central as central_service
from appliance.sync import client
from appliance.sync.state import get_state
from appliance.sync.tables import SyncBox, SyncChange
from tests.billing.conftest import pay, subscriber
from tests.helpers import make_plan
from tests.sync.conftest import box_headers, new_code, post
from tests.sync.helpers import edit_customer, payments, unique_mobile


async def _box_with_work(make_box, central):
    box = await make_box(central, new_code())
    await box.use()
    plan = await make_plan(service="cable", monthly_price="100.00")
    customer = await subscriber(box.settings, {"cable": plan}, cable="2026-01-01")
    await pay(box.settings, customer, "250.00")
    state = await get_state()
    return box, customer, state, await client._pending_batch(state, 1000)


def _push(central, state, changes, *, headers=None):
    return post(
        central.url,
        "push",
        {"schema_version": 1, "now_ms": 0, "changes": changes},
        box_headers(str(state["node_id"]), state["box_secret"]) if headers is None else headers,
    )


async def _central_has(central, change_ids) -> int:
    await central.use()
    ids = [uuid.UUID(str(i)) for i in change_ids]
    return await SyncChange.count().where(SyncChange.id.is_in(ids))


async def test_a_revoked_box_is_refused_and_nothing_it_sends_is_applied(shared_central, make_box):
    box, _customer, state, changes = await _box_with_work(make_box, shared_central)
    await shared_central.use()
    await central_service.revoke_box(state["node_id"])
    answer = _push(shared_central, state, changes)
    assert answer.status_code == 403 and answer.json()["error"] == "revoked"
    pulled = post(
        shared_central.url,
        "pull",
        {"cursor": 0},
        box_headers(str(state["node_id"]), state["box_secret"]),
    )
    assert pulled.status_code == 403
    assert await _central_has(shared_central, [c["id"] for c in changes]) == 0
    with pytest.raises(client.SyncError, match="403"):
        await box.sync()
    await box.use()
    assert (await client.status())["pending"] == len(changes)


async def test_unknown_boxes_and_wrong_secrets_are_refused(shared_central, make_box):
    _box, _customer, state, changes = await _box_with_work(make_box, shared_central)
    for headers in (
        box_headers(str(uuid.uuid4()), state["box_secret"]),
        box_headers(str(state["node_id"]), "not-the-secret"),
        box_headers("not-a-uuid", "x"),
        {},
    ):
        answer = _push(shared_central, state, changes, headers=headers)
        assert answer.status_code == 401, headers
        assert answer.json()["error"] == "unknown_box"
    assert await _central_has(shared_central, [c["id"] for c in changes]) == 0


async def test_a_box_cannot_push_changes_of_another_box_or_office(shared_central, make_box):
    a, a_customer, _a_state, a_changes = await _box_with_work(make_box, shared_central)
    b, _b_customer, b_state, b_changes = await _box_with_work(make_box, shared_central)
    assert (await b.sync())["pushed"] > 0
    # B's credentials carrying A's changes (A's node id), or B's changes claiming A's office.
    forged_office = [{**c, "office_code": a.settings.office_code} for c in b_changes]
    for changes in (a_changes, forged_office, [*b_changes[:1], *a_changes]):
        answer = _push(shared_central, b_state, changes)
        assert answer.status_code == 403, answer.text
        assert answer.json()["error"] == "impersonation"
    assert await _central_has(shared_central, [c["id"] for c in a_changes]) == 0
    # A's customer is at central now; B may not edit it, even as a change of its own.
    await a.sync()
    await b.use()
    state = await get_state()
    nxt = state["last_seq"] + 1
    forged = {
        **b_changes[0],
        "id": str(uuid.uuid4()),
        "seq": nxt,
        "table_name": "customers",
        "row_id": str(a_customer["id"]),
        "customer_id": str(a_customer["id"]),
        "op": "update",
        "data": {"name": "Stolen"},
        "old": {},
    }
    answer = _push(shared_central, b_state, [forged])
    assert answer.status_code == 403
    await shared_central.use()
    rows = await Customer.select(Customer.name).where(Customer.id == a_customer["id"])
    assert rows[0]["name"] == a_customer["name"]
    assert len(await payments(shared_central, a.settings.office_code)) == 1


async def test_a_gap_is_refused_with_the_expected_sequence_and_known_changes_are_ignored(
    shared_central, make_box
):
    box, customer, state, changes = await _box_with_work(make_box, shared_central)
    assert len(changes) > 3
    answer = _push(shared_central, state, changes[2:])
    assert answer.status_code == 409
    assert answer.json() == {"error": "gap", "expected_seq": changes[0]["seq"]}
    assert await _central_has(shared_central, [c["id"] for c in changes]) == 0
    # The first half, then everything: the known half is skipped by change id.
    half = len(changes) // 2
    assert _push(shared_central, state, changes[:half]).json()["applied"] == half
    answer = _push(shared_central, state, changes).json()
    assert answer["applied"] == len(changes) - half
    assert answer["duplicates"] == half
    assert answer["last_seq"] == changes[-1]["seq"]
    assert await _central_has(shared_central, [c["id"] for c in changes]) == len(changes)
    # The box never heard any of it: its round resends everything, and nothing doubles.
    await box.use()
    await edit_customer(customer["id"], mobile=unique_mobile())
    summary = await box.sync()
    assert summary["pushed"] == 1
    await shared_central.use()
    rows = await SyncBox.select(SyncBox.last_seq).where(SyncBox.node_id == state["node_id"])
    assert rows[0]["last_seq"] == changes[-1]["seq"] + 1
    assert len(await payments(shared_central, box.settings.office_code)) == 1


@pytest.mark.parametrize(
    ("path", "body", "detail"),
    [
        ("push", {"changes": "all of them"}, "changes must be a list"),
        ("push", {"changes": [{"id": "x"}]}, "change 0 lacks seq"),
        ("push", {"changes": [{"seq": 1}], "now_ms": 0}, "change 0 lacks id"),
        ("push", {"changes": [], "now_ms": "soon"}, "now_ms must be a whole number"),
        ("pull", {"cursor": "abc"}, "cursor must be a whole number"),
        ("pull", {"cursor": 0, "limit": [5]}, "limit must be a whole number"),
        ("own", {"after_seq": {"n": 1}}, "after_seq must be a whole number"),
    ],
)
async def test_a_malformed_request_of_an_enrolled_box_is_a_422_saying_what_is_wrong(
    shared_central, make_box, path, body, detail
):
    box, _customer, state, changes = await _box_with_work(make_box, shared_central)
    headers = box_headers(str(state["node_id"]), state["box_secret"])
    answer = post(shared_central.url, path, body, headers)
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"] == "invalid" and detail in answer.json()["detail"]
    # Nothing of the box's work reached central, and a proper round still goes through.
    assert await _central_has(shared_central, [c["id"] for c in changes]) == 0
    await box.sync()
    assert await _central_has(shared_central, [c["id"] for c in changes]) == len(changes)
