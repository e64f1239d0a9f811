"""Turning an invoice view (see ``appliance.billing.service.invoice_view``) into HTML and PDF.

One Jinja2 template, ``templates/invoice.html``, serves both the printable page and the PDF, in
three layouts: A4 and 58/80 mm thermal receipts. The page links ``/static/invoices/invoice.css``;
WeasyPrint gets the same file from disk, with the fonts shipped beside it, and ``pdf.css`` after
it (``layout.py``, the WeasyPrint part, which runs in a child process of the servers).
"""

from __future__ import annotations

import datetime as dt
from functools import cache
from pathlib import Path
from typing import Any

import jinja2
from babel.dates import format_skeleton

from appliance import i18n
from appliance.i18n import gettext as _
from appliance.invoices.layout import LAYOUTS, layout_or_default, layout_pdf
from appliance.plans.service import service_label
from appliance.settings import Settings

TEMPLATES = Path(__file__).parent / "templates"
_SERVICE_ORDER = {"cable": 0, "broadband": 1}


def mode_label(mode: str) -> str:
    return {"cash": _("Cash"), "online": _("Online")}.get(mode, mode)


def receiver_label(view: dict[str, Any]) -> str:
    # Billing records a customer's own online payment as received by "online".
    if view["received_by"] in ("", "online") and view["mode"] == "online":
        return _("The customer, online")
    return view["received_by"]


def month_label(year: int, month: int, *, short: bool = False) -> str:
    """``2026, 3`` -> "March 2026" / "março de 2026" in the current language."""
    skeleton = "yMMM" if short else "yMMMM"
    return format_skeleton(skeleton, dt.date(year, month, 1), locale=i18n.current_locale())


def months_settled(view: dict[str, Any]) -> list[str]:
    """The months an invoice settles, named with their year, oldest first (for the e-mail)."""
    seen: list[str] = []
    for line in sorted(view["lines"], key=lambda row: (row["year"], row["month"])):
        label = month_label(line["year"], line["month"])
        if label not in seen:
            seen.append(label)
    return seen


def _address(customer: dict[str, Any]) -> str:
    parts = (customer.get(key) or "" for key in ("house", "area", "district", "state"))
    text = ", ".join(part.strip() for part in parts if part and part.strip())
    postal = (customer.get("postal_code") or "").strip()
    return f"{text} · {postal}" if text and postal else text or postal


def invoice_context(
    view: dict[str, Any], settings: Settings, *, layout: str, screen: bool
) -> dict[str, Any]:
    """Everything the template needs, with labels in the current language."""
    lines = sorted(
        view["lines"],
        key=lambda row: (_SERVICE_ORDER.get(row["service"], 9), row["year"], row["month"]),
    )
    rows = [
        {
            "service": service_label(line["service"]),
            "plan": line.get("plan_name") or "",
            "month": month_label(line["year"], line["month"], short=layout != "a4"),
            "amount": line["amount"],
        }
        for line in lines
    ]
    groups: list[dict[str, Any]] = []
    for row in rows:
        if not groups or (groups[-1]["service"], groups[-1]["plan"]) != (
            row["service"],
            row["plan"],
        ):
            groups.append({"service": row["service"], "plan": row["plan"], "rows": []})
        groups[-1]["rows"].append(row)
    number = view["number"]
    return {
        "inv": view,
        "rows": rows,
        "groups": groups,
        "address": _address(view["customer"]),
        "issued": i18n.datetime(view["issued_at"], settings.tz, "medium"),
        "mode": mode_label(view["mode"]),
        "received_by": receiver_label(view),
        "currency": view.get("currency") or settings.currency,
        "layout": layout,
        "layouts": LAYOUTS,
        "screen": screen,
        "html_lang": "pt-BR" if i18n.current_locale() == "pt_BR" else "en",
        "pdf_url": f"/invoices/{number}/pdf" + (f"?layout={layout}" if layout != "a4" else ""),
        "page_url": f"/invoices/{number}",
    }


@cache
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        extensions=["jinja2.ext.i18n"],
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.install_gettext_callables(  # type: ignore[attr-defined]
        lambda message: i18n.gettext(message),
        lambda singular, plural, n: i18n.ngettext(singular, plural, n),
        newstyle=True,
    )
    env.filters["money"] = lambda minor, currency: i18n.money(minor or 0, currency)
    return env


def render_html(
    view: dict[str, Any],
    settings: Settings,
    *,
    layout: str = "a4",
    locale: str | None = None,
    screen: bool = True,
    autoprint: bool = False,
) -> str:
    """The invoice document. ``screen`` adds the stylesheet link and the toolbar (Print,
    download, other layouts) that the PDF leaves out."""
    layout = layout_or_default(layout)
    with i18n.use_locale(locale or i18n.current_locale()):
        context = invoice_context(view, settings, layout=layout, screen=screen)
        context["autoprint"] = autoprint
        return _environment().get_template("invoice.html").render(context)


def render_pdf(
    view: dict[str, Any], settings: Settings, *, layout: str = "a4", locale: str | None = None
) -> bytes:
    """The invoice as PDF bytes, laid out in this process (CPU-bound, ~50 ms warm on a 2-core
    x86: call it in a thread). The servers lay out through ``appliance.invoices.renderer``
    instead, which keeps WeasyPrint out of their memory."""
    layout = layout_or_default(layout)
    html = render_html(view, settings, layout=layout, locale=locale, screen=False)
    return layout_pdf(html, layout)
