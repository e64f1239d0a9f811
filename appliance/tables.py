"""Every Piccolo table of the application, in dependency order."""

from appliance.accounts.otp_tables import OneTimeCode, OtpEvent
from appliance.accounts.tables import LoginFailure, Session, User
from appliance.audit.tables import AuditEntry
from appliance.complaints.tables import Complaint, ComplaintCounter, ComplaintEvent
from appliance.customers.tables import Connection, CrfCounter, Customer
from appliance.mail.tables import OutboxMessage
from appliance.plans.tables import Plan

ALL_TABLES = [
    Plan,
    Customer,
    Connection,
    CrfCounter,
    User,
    Session,
    LoginFailure,
    AuditEntry,
    OutboxMessage,
    Complaint,
    ComplaintEvent,
    ComplaintCounter,
    OneTimeCode,
    OtpEvent,
]
