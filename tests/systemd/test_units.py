"""The systemd units and the install script: verified by systemd's own tools where present,
parsed for the hardening everywhere, and the script's helpers run against this checkout."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from appliance.cli import parser as ctvms_parser
from appliance.settings import registry

ROOT = Path(__file__).resolve().parents[2]
UNITS = ROOT / "systemd"
INSTALL = UNITS / "install.sh"
SERVICES = sorted(UNITS.glob("ctvms-*.service"))
ALL_UNITS = [UNITS / "ctvms.target", *SERVICES]
CTVMS = Path(sys.executable).with_name("ctvms")


def require_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is missing, and CI needs it (see .ci/run)")
        pytest.skip(f"{name} is not installed here (set CI=1 to make this fail)")
    return path


def parse_unit(path: Path) -> dict[str, dict[str, list[str]]]:
    """Sections → key → every value (systemd keys may repeat)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        key, _, value = line.partition("=")
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def script_values(*names: str) -> list[str]:
    """Values of install.sh variables, read by sourcing it (which does not run main)."""
    expr = " ".join(f'"${{{n}}}"' for n in names)
    done = subprocess.run(
        ["bash", "-c", f'source "$1"; printf "%s\\n" {expr}', "bash", str(INSTALL)],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.splitlines()


def sandbox_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CTVMS_")}
    env.update(extra)
    return env


# -- systemd's own checks ---------------------------------------------------------------------


@pytest.fixture
def runnable_units(tmp_path) -> list[Path]:
    """The units with the virtualenv path pointed at this checkout's ``ctvms``, because verify
    insists that every command it names exists."""
    venv = script_values("VENV")[0]
    copies = []
    for unit in ALL_UNITS:
        copy = tmp_path / unit.name
        copy.write_text(unit.read_text().replace(f"{venv}/bin/ctvms", str(CTVMS)))
        copies.append(copy)
    return copies


def test_systemd_analyze_verify_accepts_the_units(runnable_units):
    tool = require_tool("systemd-analyze")
    done = subprocess.run(
        [tool, "verify", *map(str, runnable_units)], capture_output=True, text=True, timeout=60
    )
    # verify exits 0 on unknown keys or bad values, so its complaints are read too.
    ours = [
        line
        for line in (done.stdout + done.stderr).splitlines()
        if any(u.name in line for u in runnable_units)
    ]
    assert done.returncode == 0 and not ours, done.stdout + done.stderr


@pytest.mark.parametrize("unit", [s.name for s in SERVICES])
def test_systemd_rates_the_services_well_sandboxed(runnable_units, unit):
    tool = require_tool("systemd-analyze")
    done = subprocess.run(
        [
            tool,
            "security",
            "--offline=yes",
            "--threshold=25",  # an exposure of 2.5 out of 10, given in tenths
            str(runnable_units[0].parent / unit),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr


# -- the unit files themselves ----------------------------------------------------------------


def test_there_is_a_unit_for_the_web_server_and_one_for_the_worker():
    commands = {}
    venv = script_values("VENV")[0]
    for service in SERVICES:
        (exec_start,) = parse_unit(service)["Service"]["ExecStart"]
        program, *args = exec_start.split()
        assert program == f"{venv}/bin/ctvms"
        ctvms_parser().parse_args(args)  # a command that exists, no placeholder
        commands[args[0]] = service.name
    assert commands["serve"] == "ctvms-web.service"
    assert commands["worker"] == "ctvms-worker.service"


@pytest.mark.parametrize("unit", SERVICES, ids=lambda p: p.name)
def test_every_service_runs_confined_as_the_ctvms_user(unit):
    data_dir, env_file, user = script_values("DATA_DIR", "ENV_FILE", "SERVICE_USER")
    sections = parse_unit(unit)
    service = {k: v[-1] for k, v in sections["Service"].items()}
    assert service["User"] == service["Group"] == user
    assert service["EnvironmentFile"] == env_file
    assert service["WorkingDirectory"] == data_dir
    assert service["Restart"] == "on-failure"
    assert service["StandardOutput"] == service["StandardError"] == "journal"
    for key, value in {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "PrivateDevices": "yes",
        "ProtectKernelTunables": "yes",
        "ProtectKernelModules": "yes",
        "ProtectControlGroups": "yes",
        "RestrictSUIDSGID": "yes",
        "CapabilityBoundingSet": "",
    }.items():
        assert service.get(key) == value, f"{unit.name}: {key}"
    # The data folder is the one place it may write; nothing adds another.
    assert sections["Service"]["ReadWritePaths"] == [data_dir]
    for key in ("StateDirectory", "CacheDirectory", "LogsDirectory", "ReadWriteDirectories"):
        assert key not in sections["Service"], f"{unit.name}: {key} adds a writable path"
    assert f"CTVMS_DATA_DIR={data_dir}" in " ".join(sections["Service"]["Environment"])
    assert sections["Unit"]["PartOf"] == ["ctvms.target"]
    assert sections["Install"]["WantedBy"] == ["ctvms.target"]


def test_the_target_starts_at_boot():
    target = parse_unit(UNITS / "ctvms.target")
    assert target["Install"]["WantedBy"] == ["multi-user.target"]


# -- the install script -----------------------------------------------------------------------


def test_the_install_script_is_valid_bash():
    done = subprocess.run(["bash", "-n", str(INSTALL)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert os.access(INSTALL, os.X_OK)


def test_shellcheck_finds_nothing_in_the_install_script():
    tool = shutil.which("shellcheck")
    if tool is None:
        if os.environ.get("CI"):
            pytest.fail("shellcheck is missing on a CI machine (.ci/run installs it)")
        pytest.skip("shellcheck is not installed here (apt-get install shellcheck)")
    done = subprocess.run([tool, str(INSTALL)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout


def test_the_install_script_installs_what_python_and_weasyprint_need():
    packages = set(script_values("APT_PACKAGES[@]"))
    assert {"python3.11", "python3.11-venv", "libpango-1.0-0", "libharfbuzz-subset0"} <= packages
    assert any(p.startswith("fonts-") for p in packages)


def test_the_sample_env_file_lists_every_setting_and_loads(tmp_path):
    venv = Path(sys.executable).parent.parent
    sample = subprocess.run(
        ["bash", "-c", 'source "$1"; VENV="$2"; env_sample', "bash", str(INSTALL), str(venv)],
        capture_output=True,
        text=True,
        check=True,
        env=sandbox_env(),
    ).stdout
    for setting in registry():
        assert f"#{setting.env}=" in sample, setting.env
    for line in sample.splitlines():
        assert not line or line.startswith("#") or "=" in line, line

    # The admin's ctvms command reads it as systemd does, values with spaces included.
    data = tmp_path / "data"
    env_file = tmp_path / "ctvms.env"
    env_file.write_text(
        sample.replace("CTVMS_DATA_DIR=/var/lib/ctvms", f"CTVMS_DATA_DIR={data}")
        + "CTVMS_OFFICE_NAME=Cabo Norte Sul\nCTVMS_OFFICE_CODE=CNS\n"
    )
    data.mkdir()
    command = write_admin_command(tmp_path, venv=venv, data_dir=data, env_file=env_file)
    done = subprocess.run(
        [str(command), "config"], capture_output=True, text=True, env=sandbox_env()
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert f"CTVMS_DATA_DIR={data}" in lines
    assert "CTVMS_OFFICE_NAME=Cabo Norte Sul" in lines
    assert "CTVMS_OFFICE_CODE=CNS" in lines
    assert "CTVMS_ADVERTISE=True" in lines


def write_admin_command(
    folder: Path, *, venv: Path, data_dir: Path, env_file: Path, user: str | None = None
) -> Path:
    """The /usr/local/bin/ctvms wrapper install.sh writes, made for these paths."""
    user = user or pwd.getpwuid(os.getuid()).pw_name
    script = subprocess.run(
        [
            "bash",
            "-c",
            'source "$1"; VENV="$2"; DATA_DIR="$3"; ENV_FILE="$4"; SERVICE_USER="$5"; '
            "admin_wrapper",
            "bash",
            str(INSTALL),
            str(venv),
            str(data_dir),
            str(env_file),
            user,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    path = folder / "ctvms"
    path.write_text(script)
    path.chmod(0o755)
    return path


def test_the_admin_command_is_valid_sh(tmp_path):
    command = write_admin_command(
        tmp_path, venv=Path("/opt/ctvms/venv"), data_dir=tmp_path, env_file=tmp_path / "e"
    )
    done = subprocess.run(["sh", "-n", str(command)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    tool = shutil.which("shellcheck")
    if tool is not None:
        done = subprocess.run([tool, "-s", "sh", str(command)], capture_output=True, text=True)
        assert done.returncode == 0, done.stdout


@pytest.mark.skipif(os.getuid() != 0, reason="switching users needs root")
def test_the_admin_command_runs_as_the_service_user():
    # A stand-in interpreter that reports who runs it, in a folder the other user can reach
    # (pytest's own temporary folders are private to root).
    with tempfile.TemporaryDirectory(prefix="ctvms-wrapper-") as name:
        folder = Path(name)
        folder.chmod(0o755)
        venv = folder / "venv"
        (venv / "bin").mkdir(parents=True)
        (venv / "bin" / "python").write_text("#!/bin/sh\nid -un\n")
        (venv / "bin" / "python").chmod(0o755)
        command = write_admin_command(
            folder, venv=venv, data_dir=folder, env_file=folder / "e", user="nobody"
        )
        done = subprocess.run([str(command)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "nobody"
