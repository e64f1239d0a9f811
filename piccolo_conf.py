"""Piccolo configuration for developers' use of the ``piccolo`` command from the repository root.

For example: ``piccolo migrations new ctvms --auto --auto_input=y``. The engine comes from the
same settings as the appliance (``CTVMS_DATABASE_URL`` / ``CTVMS_DATA_DIR``).
"""

from appliance import db
from appliance.piccolo_conf import APP_REGISTRY
from appliance.settings import Settings

DB = db.configure(Settings.from_env())

__all__ = ["APP_REGISTRY", "DB"]
