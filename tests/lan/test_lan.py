"""mDNS advertising and discovery, between real processes, on loopback only.

Every Zeroconf instance here is bound to 127.0.0.1, so no packet leaves the machine. Other
suites running at the same time may advertise their own test offices on loopback too, so each
test looks for an office name of its own.
"""

from __future__ import annotations

import json
import queue
import signal
import subprocess
import time
import uuid

import httpx
import pytest
from zeroconf import IPVersion, ServiceBrowser, ServiceListener, Zeroconf

from appliance.lan import advertise as adv
from appliance.lan.cli import cmd_discover
from appliance.lan.discover import Found, discover
from appliance.settings import SettingsError
from bench.server import ServerProcess, ctvms_command, free_port, server_env
from tests.conftest import make_settings

LOOPBACK = ["127.0.0.1"]


def unique_office() -> str:
    return f"LAN Test {uuid.uuid4().hex[:8]}"


def named(office_name: str):
    def match(found: list[Found]) -> bool:
        return any(box.office_name == office_name for box in found)

    return match


def pick(found: list[Found], office_name: str) -> Found:
    matches = [box for box in found if box.office_name == office_name]
    assert matches, f"{office_name!r} not among {[b.name for b in found]}"
    assert len(matches) == 1
    return matches[0]


class Watcher(ServiceListener):
    """Browse events for ``_http._tcp`` on loopback, to wait for an add or a goodbye."""

    def __init__(self) -> None:
        self.events: queue.Queue[tuple[str, str]] = queue.Queue()
        self.zc = Zeroconf(interfaces=LOOPBACK, ip_version=IPVersion.V4Only)
        self.browser = ServiceBrowser(self.zc, adv.SERVICE_TYPE, self)

    def add_service(self, zc, type_, name):
        self.events.put(("add", name))

    def update_service(self, zc, type_, name):
        pass

    def remove_service(self, zc, type_, name):
        self.events.put(("remove", name))

    def wait_for(self, kind: str, name: str, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                event = self.events.get(timeout=left)
            except queue.Empty:
                break
            if event == (kind, name):
                return
        raise AssertionError(f"no {kind} event for {name!r} within {timeout}s")

    def close(self) -> None:
        self.browser.cancel()
        self.zc.close()


def test_a_served_box_is_found_by_discover_on_loopback_and_withdrawn_on_stop(tmp_path):
    office = unique_office()
    server = ServerProcess(
        tmp_path / "box",
        env={"CTVMS_OFFICE_NAME": office, "CTVMS_OFFICE_CODE": "LN"},
    )
    server.ctvms("migrate")
    watcher = Watcher()
    try:
        server.start()
        found = discover(timeout=20, interfaces=LOOPBACK, until=named(office))
        box = pick(found, office)
        assert box.name == f"{office} (LN)"
        assert box.port == server.port
        # Served on 127.0.0.1, so advertised on loopback only, with no LAN address.
        assert box.addresses == ["127.0.0.1"]
        assert box.server == "ctvms.local."
        assert (box.office, box.role, box.path) == ("LN", "appliance", "/")
        assert box.version
        # The advertised address really reaches the web UI.
        assert httpx.get(box.url + "healthz", timeout=5).status_code == 200

        full_name = f"{box.name}.{adv.SERVICE_TYPE}"
        watcher.wait_for("add", full_name)
        server.stop()
        assert server.process is not None and server.process.returncode is not None
        watcher.wait_for("remove", full_name)  # the goodbye packet sent on shutdown
    finally:
        watcher.close()
        server.stop()


def test_the_discover_command_lists_a_central_instance_from_another_process(tmp_path, capsys):
    office = unique_office()
    settings = make_settings(
        tmp_path, role="central", office_name=office, office_code="HQ", mdns_hostname="hq.local"
    )
    port = free_port()
    with adv.advertising(settings, host="127.0.0.1", port=port) as advertiser:
        assert advertiser is not None and advertiser.registered.wait(20)
        done = subprocess.run(
            [*ctvms_command(), "discover", "--timeout", "3", "--interface", "127.0.0.1", "--json"],
            env=server_env(tmp_path),
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        # The table form, from this process.
        args = type("Args", (), {"timeout": 3.0, "interface": LOOPBACK, "json": False})()
        cmd_discover(args)
    found = json.loads(done.stdout)
    (entry,) = [e for e in found if e["office_name"] == office]
    assert entry["name"] == f"{office} (HQ)"
    assert entry["role"] == "central"
    assert entry["office"] == "HQ"
    assert entry["port"] == port
    assert entry["addresses"] == ["127.0.0.1"]
    assert entry["server"] == "hq.local."
    assert entry["url"] == f"http://127.0.0.1:{port}/"

    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["NAME", "ROLE", "OFFICE", "ADDRESS", "PORT", "HOST"]
    (row,) = [line for line in lines if line.startswith(f"{office} (HQ)")]
    assert row.split()[-5:] == ["central", "HQ", "127.0.0.1", str(port), "hq.local"]


def test_two_boxes_with_one_office_name_both_stay_visible(tmp_path):
    office = unique_office()
    settings = make_settings(tmp_path, office_name=office, office_code="DU")
    first = adv.Advertiser(settings, host="127.0.0.1", port=free_port()).start()
    second = adv.Advertiser(settings, host="127.0.0.1", port=free_port()).start()
    try:
        assert first.registered.wait(20) and second.registered.wait(20)
        # The second one to probe finds the name taken and picks another.
        assert first.name != second.name
        found = discover(
            timeout=20,
            interfaces=LOOPBACK,
            until=lambda f: sum(b.office_name == office for b in f) == 2,
        )
        assert {b.port for b in found if b.office_name == office} == {first.port, second.port}
    finally:
        first.stop()
        second.stop()


def test_advertising_off_starts_nothing(tmp_path):
    settings = make_settings(tmp_path, advertise=False)
    assert adv.start_advertising(settings, host="127.0.0.1", port=free_port()) is None
    with adv.advertising(settings, host="127.0.0.1", port=free_port()) as advertiser:
        assert advertiser is None


def test_serve_with_advertise_off_still_serves(tmp_path):
    server = ServerProcess(tmp_path / "box", env={"CTVMS_ADVERTISE": "off"})
    server.ctvms("migrate")
    with server:
        server.start()
        assert httpx.get(server.url("/healthz"), timeout=5).status_code == 200
    assert "advertising is off" in server.log_path.read_text()


def test_the_setting_is_read_from_the_environment(tmp_path):
    from appliance.settings import Settings

    env = {"CTVMS_DATA_DIR": str(tmp_path)}
    assert Settings.from_env(env).advertise is True
    assert Settings.from_env({**env, "CTVMS_ADVERTISE": "off"}).advertise is False
    assert Settings.from_env(env).mdns_hostname == "ctvms.local"
    custom = Settings.from_env({**env, "CTVMS_MDNS_HOSTNAME": "caixa-2.local"})
    assert adv.server_name(custom) == "caixa-2.local."
    for bad in ("ctvms", "CTVMS.local", "ctvms.example.com", "-x.local", "a b.local"):
        with pytest.raises(SettingsError, match="CTVMS_MDNS_HOSTNAME"):
            Settings.from_env({**env, "CTVMS_MDNS_HOSTNAME": bad})


def test_the_interfaces_follow_the_host_the_server_binds():
    assert adv.addresses_for_host("127.0.0.1") == ["127.0.0.1"]
    assert adv.addresses_for_host("localhost") == ["127.0.0.1"]
    lan = adv.addresses_for_host("0.0.0.0")  # noqa: S104
    assert lan == adv.lan_addresses()
    assert not any(a.startswith("127.") for a in lan)
    # IPv6 hosts are not advertised (IPv4 mDNS only): nothing, rather than the wrong address.
    assert adv.addresses_for_host("::1") == []


def test_an_address_to_advertise_on_missing_is_not_an_error(tmp_path):
    settings = make_settings(tmp_path)
    advertiser = adv.Advertiser(settings, host="::1", port=free_port()).start()
    advertiser.stop()
    assert not advertiser.registered.is_set()
    assert not advertiser._thread.is_alive()


def test_the_instance_name_is_the_office_and_fits_one_dns_label(tmp_path):
    assert adv.instance_name(make_settings(tmp_path, office_name="Cabo.Norte")) == (
        "Cabo Norte (TS)"
    )
    long = make_settings(tmp_path, office_name="Televisão a Cabo " * 8)
    name = adv.instance_name(long)
    assert len(name.encode()) <= 63
    assert name.endswith(" (TS)") and name.startswith("Televisão a Cabo")


def test_sigterm_is_a_clean_stop_for_the_advertising_server(tmp_path):
    """systemd stops the unit with SIGTERM: the goodbye must go out then too."""
    office = unique_office()
    server = ServerProcess(tmp_path / "box", env={"CTVMS_OFFICE_NAME": office})
    server.ctvms("migrate")
    watcher = Watcher()
    try:
        server.start()
        full_name = f"{office} (MM).{adv.SERVICE_TYPE}"  # MM: the default office code
        watcher.wait_for("add", full_name)
        assert server.process is not None
        server.process.send_signal(signal.SIGTERM)
        server.process.wait(timeout=20)
        watcher.wait_for("remove", full_name)
    finally:
        watcher.close()
        server.stop()
