from piccolo.columns import (
    UUID,
    Boolean,
    ForeignKey,
    Integer,
    Timestamptz,
    Varchar,
)
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.columns.reference import LazyTableReference
from piccolo.table import Table

from appliance.db import new_id

STAFF_ROLES = ("owner", "admin", "agent")
ROLES = (*STAFF_ROLES, "customer")


class User(Table, tablename="users"):
    """Anyone who logs in: staff by username, customers by CRF number or e-mail."""

    id = UUID(primary_key=True, default=new_id)
    username = Varchar(
        length=150,
        null=True,
        default=None,
        unique=True,
        help_text="Login name of staff; empty for customers.",
    )
    role = Varchar(length=16, help_text="owner, admin, agent or customer.")
    customer = ForeignKey(
        LazyTableReference("Customer", module_path="appliance.customers.tables"),
        null=True,
        default=None,
        unique=True,
        help_text="The customer this login belongs to (customers only).",
    )
    email = Varchar(
        length=254,
        default="",
        help_text="Staff only, lower-case: where password codes go. Customers use their record's.",
    )
    password_hash = Varchar(length=255, help_text="argon2id hash.")
    must_change_password = Boolean(
        default=True,
        help_text="Set for temporary passwords; nothing else is "
        "allowed until the password is changed.",
    )
    is_active = Boolean(default=True, help_text="False for archived customers and retired staff.")
    failed_logins = Integer(default=0, help_text="Consecutive failed logins.")
    locked_until = Timestamptz(
        null=True, default=None, help_text="Logins are refused until then; an admin can lift it."
    )
    password_changed_at = Timestamptz(default=TimestamptzNow())
    created_at = Timestamptz(default=TimestamptzNow())


class Session(Table, tablename="sessions"):
    """A server-side login session or API token. Only a hash of the secret is stored."""

    id = Varchar(length=64, primary_key=True, help_text="SHA-256 of the session secret.")
    user = ForeignKey(User, help_text="Whose session this is.")
    kind = Varchar(length=8, default="web", help_text="web (cookie) or api (bearer token).")
    created_at = Timestamptz(default=TimestamptzNow())
    last_seen_at = Timestamptz(default=TimestamptzNow())
    expires_at = Timestamptz(help_text="Hard end of the session.")
    address = Varchar(length=64, default="", help_text="Client address at login.")


class LoginFailure(Table, tablename="login_failures"):
    """Failed logins by client address, for the per-address rate limit."""

    id = UUID(primary_key=True, default=new_id)
    address = Varchar(length=64, index=True)
    at = Timestamptz(default=TimestamptzNow(), index=True)
