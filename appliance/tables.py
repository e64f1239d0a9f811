"""Every Piccolo table of the application, in dependency order."""

from appliance.accounts.otp_tables import OneTimeCode, OtpEvent
from appliance.accounts.tables import LoginFailure, Session, User
from appliance.audit.tables import AuditEntry
from appliance.billing.tables import (
    Allocation,
    BilledConnection,
    BillingAccount,
    Charge,
    InvoiceCounter,
    Payment,
    PaymentReversal,
)
from appliance.complaints.tables import Complaint, ComplaintCounter, ComplaintEvent
from appliance.customers.tables import Connection, CrfCounter, Customer
from appliance.jobs.tables import JobLock, JobRun
from appliance.mail.tables import OutboxMessage
from appliance.plans.tables import Plan
from appliance.reminders.tables import Reminder, ReminderBatch
from appliance.reports.tables import ReportJob
from appliance.sync.tables import SYNC_TABLES

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
    BilledConnection,
    Charge,
    Payment,
    Allocation,
    PaymentReversal,
    BillingAccount,
    InvoiceCounter,
    Complaint,
    ComplaintEvent,
    ComplaintCounter,
    OneTimeCode,
    OtpEvent,
    JobLock,
    JobRun,
    ReminderBatch,
    Reminder,
    ReportJob,
    *SYNC_TABLES,
]
