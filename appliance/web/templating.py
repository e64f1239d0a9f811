"""The Jinja2 environment shared by every page: translations, filters and globals."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from litestar.plugins.jinja import JinjaTemplateEngine as Engine
from litestar.template.config import TemplateConfig

from appliance import i18n
from appliance.plans.service import service_label
from appliance.settings import Settings
from appliance.web.health import storage_message, storage_status

TEMPLATE_DIRS = [Path(__file__).parent / "templates"]


def status_label(status: str) -> str:
    return {
        "active": i18n.gettext("Active"),
        "inactive": i18n.gettext("Inactive"),
        "suspended": i18n.gettext("Suspended"),
    }.get(status, status)


def role_label(role: str) -> str:
    return {
        "owner": i18n.gettext("Owner"),
        "admin": i18n.gettext("Admin"),
        "agent": i18n.gettext("Field agent"),
        "customer": i18n.gettext("Customer"),
    }.get(role, role)


def _sync_alerts(settings: Settings) -> list[str]:
    from appliance.sync.review import box_alerts

    return box_alerts(settings)


def template_config(settings: Settings) -> TemplateConfig[Engine]:
    def configure(engine: Engine) -> None:
        env = engine.engine
        env.add_extension("jinja2.ext.i18n")
        env.install_gettext_callables(  # type: ignore[attr-defined]
            lambda m, **kw: i18n.gettext(m),
            lambda s, p, n, **kw: i18n.ngettext(s, p, n),
            newstyle=True,
        )
        env.filters.update(
            money=lambda minor: i18n.money(minor or 0, settings.currency),
            amount=i18n.decimal_amount,
            date=i18n.date,
            datetime=lambda v, fmt="medium": i18n.datetime(v, settings.tz, fmt),
            number=i18n.number,
            status=status_label,
            service=service_label,
            role=role_label,
            month=i18n.month_name,
        )
        globals_: dict[str, Any] = {
            "settings": settings,
            "locale": i18n.current_locale,
            "locales": i18n.SUPPORTED,
            "storage_problem": lambda: storage_message(storage_status(settings)),
            "sync_alerts": lambda: _sync_alerts(settings),
        }
        env.globals.update(globals_)

    return TemplateConfig(directory=TEMPLATE_DIRS, engine=Engine, engine_callback=configure)
