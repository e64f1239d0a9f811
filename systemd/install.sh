#!/usr/bin/env bash
# Install or upgrade CTVMS as systemd services on Raspberry Pi OS or Debian 12 (bookworm).
#
#   sudo systemd/install.sh        (from a copy of the project; run it again to upgrade)
#
# What it does: installs the system packages Python and WeasyPrint need; creates the `ctvms`
# user and the data folder /var/lib/ctvms; builds a virtualenv in /opt/ctvms/venv with the
# project in it; writes /etc/ctvms/ctvms.env on first install (kept afterwards: edit it there);
# installs /usr/local/bin/ctvms, which runs ctvms with those settings as the `ctvms` user;
# takes a backup before upgrading an existing office; runs `ctvms init` (migrations and the
# first admin, whose password it prints once); installs the units and enables ctvms.target.
#
# Sourcing the script (tests do) defines the functions and variables without running main.
set -euo pipefail

SRC_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# These paths are also written in the unit files; a test keeps the two in step.
PREFIX=/opt/ctvms
VENV=/opt/ctvms/venv
DATA_DIR=/var/lib/ctvms
CONF_DIR=/etc/ctvms
ENV_FILE=/etc/ctvms/ctvms.env
UNIT_DIR=/etc/systemd/system
ADMIN_COMMAND=/usr/local/bin/ctvms
SERVICE_USER=ctvms
PYTHON=python3.11
APT_PACKAGES=(
  python3.11 python3.11-venv
  libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz0b libharfbuzz-subset0
  fontconfig fonts-dejavu-core
)

say() { printf '==> %s\n' "$*"; }
die() {
  printf 'install.sh: %s\n' "$*" >&2
  exit 1
}

systemd_running() { [ -d /run/systemd/system ]; }

# The first env file: the usual settings, then every setting of the registry, commented out.
env_sample() {
  cat <<EOF
# CTVMS settings, read by the ctvms-* services. Lines are NAME=value; no quotes needed.
# After a change: systemctl restart ctvms.target
CTVMS_DATA_DIR=$DATA_DIR
CTVMS_OFFICE_CODE=MM
CTVMS_OFFICE_NAME=CTVMS Office
CTVMS_HOST=0.0.0.0
CTVMS_PORT=8000
CTVMS_ADVERTISE=on
CTVMS_MDNS_HOSTNAME=ctvms.local
# A backup folder outside $DATA_DIR must also be made writable for the services, in a
# drop-in of each unit (systemctl edit ctvms-worker.service): ReadWritePaths=<folder>

# Every setting, with its default:
EOF
  "$VENV/bin/python" -c '
from appliance.settings import registry
for setting in registry():
    default = setting.default or ""
    print(f"# {setting.help}")
    print(f"#{setting.env}={default}")
'
}

# Python that runs a ctvms command with the settings of an env file (argv: the file, then the
# command's arguments), parsed by CTVMS itself the way systemd reads it: NAME=value lines,
# values may hold spaces. It must hold no single quote: admin_wrapper quotes it with them.
ENV_LOADER='
import os, sys
from pathlib import Path
from appliance.settings import read_dotenv
os.environ.update(read_dotenv(Path(sys.argv[1])))
from appliance.cli import main
main(sys.argv[2:])
'

# The `ctvms` command for the administrator ($ADMIN_COMMAND): the services' settings, run as
# the service user, so what it writes (a restore, a backup) stays readable by the services.
admin_wrapper() {
  cat <<EOF
#!/bin/sh
# ctvms as the services run it: settings from $ENV_FILE, as the $SERVICE_USER user.
# Written by install.sh.
set -e
cd "$DATA_DIR"
loader='$ENV_LOADER'
set -- env HOME="$DATA_DIR" XDG_CACHE_HOME="$DATA_DIR/.cache" CTVMS_DATA_DIR="$DATA_DIR" \\
  "$VENV/bin/python" -c "\$loader" "$ENV_FILE" "\$@"
service_user="$SERVICE_USER"
if [ "\$(id -un)" != "\$service_user" ]; then
  exec runuser -u "\$service_user" -- "\$@"
fi
exec "\$@"
EOF
}

main() {
  [ "$(id -u)" -eq 0 ] || die "run me as root: sudo $0"
  [ -f "$SRC_DIR/pyproject.toml" ] || die "$SRC_DIR does not look like the CTVMS project"
  command -v apt-get >/dev/null || die "this script is for Debian or Raspberry Pi OS (apt-get)"

  say "Installing system packages"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${APT_PACKAGES[@]}"

  say "Creating the $SERVICE_USER user and $DATA_DIR"
  if ! getent passwd "$SERVICE_USER" >/dev/null; then
    useradd --system --user-group --home-dir "$DATA_DIR" --no-create-home \
      --shell /usr/sbin/nologin --comment "CTVMS appliance" "$SERVICE_USER"
  fi
  install -d -o "$SERVICE_USER" -g "$SERVICE_USER" -m 0750 "$DATA_DIR"
  install -d -o root -g "$SERVICE_USER" -m 0750 "$CONF_DIR"
  install -d -o root -g root -m 0755 "$PREFIX"

  say "Building the virtualenv in $VENV"
  [ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --upgrade pip
  "$VENV/bin/pip" install --quiet "babel>=2.14"
  if [ -f "$SRC_DIR/appliance/locale/pt_BR/LC_MESSAGES/messages.po" ]; then
    "$VENV/bin/pybabel" compile --use-fuzzy -d "$SRC_DIR/appliance/locale" -D messages
  fi
  "$VENV/bin/pip" install --quiet --upgrade "$SRC_DIR"

  say "Installing the ctvms command as $ADMIN_COMMAND"
  admin_wrapper >"$ADMIN_COMMAND.new"
  chmod 0755 "$ADMIN_COMMAND.new"
  mv "$ADMIN_COMMAND.new" "$ADMIN_COMMAND"

  if [ ! -f "$ENV_FILE" ]; then
    say "Writing $ENV_FILE"
    env_sample >"$ENV_FILE.new"
    chown root:"$SERVICE_USER" "$ENV_FILE.new"
    chmod 0640 "$ENV_FILE.new"
    mv "$ENV_FILE.new" "$ENV_FILE"
  fi

  if systemd_running && systemctl is-active --quiet ctvms.target; then
    say "Stopping the running services for the upgrade"
    systemctl stop ctvms.target
  fi

  if [ -f "$DATA_DIR/ctvms.sqlite3" ]; then
    say "Backing the office up before upgrading"
    "$ADMIN_COMMAND" backup "$DATA_DIR/backups"
  fi

  say "Initialising the database"
  "$ADMIN_COMMAND" init

  say "Installing the systemd units"
  local units=(ctvms.target) unit
  for unit in "$SRC_DIR"/systemd/ctvms-*.service; do
    units+=("$(basename "$unit")")
  done
  install -m 0644 "$SRC_DIR"/systemd/ctvms.target "$SRC_DIR"/systemd/ctvms-*.service "$UNIT_DIR/"

  if systemd_running; then
    systemctl daemon-reload
    systemctl enable "${units[@]}"
    systemctl restart ctvms.target
    say "CTVMS is running: systemctl status ctvms.target; logs: journalctl -u 'ctvms-*'"
  else
    say "systemd is not running here; later: systemctl enable --now ${units[*]}"
  fi
  say "Edit $ENV_FILE (office name, code, e-mail), then: systemctl restart ctvms.target"
  say "Back up with: sudo ctvms backup /media/usb; restore with: sudo ctvms restore FILE"
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  main "$@"
fi
