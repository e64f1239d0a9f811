"""Piccolo configuration used at run time.

``DB`` is replaced by :func:`appliance.db.configure`, so Piccolo's migration machinery works on
whatever database the settings (or a test) chose.
"""

from piccolo.conf.apps import AppRegistry

DB = None
APP_REGISTRY = AppRegistry(apps=["appliance.piccolo_app"])
