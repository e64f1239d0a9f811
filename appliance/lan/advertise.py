"""Advertise the web UI over multicast DNS, so tablets find the box by name.

The box registers an ``_http._tcp`` service named after the office, on the interfaces the web
server listens on: with ``--host 127.0.0.1`` only loopback, with ``0.0.0.0`` every LAN interface.
Registration runs in a thread of its own: probing takes a second or two and a network without
multicast must never delay or stop the web server. The thread re-checks the interface addresses
every minute, because a Raspberry Pi often boots before DHCP has given it an address.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import signal
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import metadata

import ifaddr
from zeroconf import IPVersion, ServiceInfo, Zeroconf

from appliance.settings import Settings

log = logging.getLogger(__name__)

SERVICE_TYPE = "_http._tcp.local."
# Marks our services among the printers and routers that also advertise _http._tcp.
APP_TAG = "ctvms"
WILDCARD_HOSTS = frozenset({"", "0.0.0.0", "::", "*"})  # noqa: S104
RECHECK_SECONDS = 60.0
_MAX_LABEL = 63  # bytes of one DNS label, the limit of an instance name


def version() -> str:
    try:
        return metadata.version("ctvms")
    except metadata.PackageNotFoundError:
        return "unknown"


def instance_name(settings: Settings) -> str:
    """``Office name (CODE)``, cut to one DNS label; dots would split the name, so they go."""
    suffix = f" ({settings.office_code})"
    name = re.sub(r"[.\x00-\x1f]+", " ", settings.office_name).strip() or "CTVMS"
    budget = _MAX_LABEL - len(suffix.encode())
    name = name.encode()[:budget].decode(errors="ignore").rstrip()
    return name + suffix


def server_name(settings: Settings) -> str:
    """The host name the box answers to, as a fully qualified mDNS name (``ctvms.local.``)."""
    return settings.mdns_hostname.rstrip(".") + "."


def lan_addresses() -> list[str]:
    """IPv4 addresses of this machine's interfaces, loopback left out."""
    found = []
    for adapter in ifaddr.get_adapters():
        for ip in adapter.ips:
            if not ip.is_IPv4 or ip.network_prefix == 32:
                continue
            if ipaddress.IPv4Address(ip.ip).is_loopback:
                continue
            found.append(str(ip.ip))
    return sorted(set(found))


def addresses_for_host(host: str) -> list[str]:
    """The IPv4 addresses to advertise (and to multicast on) for the server's ``--host``.

    A wildcard means every LAN interface; a specific address or name means just that address.
    IPv6-only hosts give an empty list: the advertiser speaks IPv4 mDNS only.
    """
    if host.strip() in WILDCARD_HOSTS:
        return lan_addresses()
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        try:
            address = ipaddress.ip_address(socket.gethostbyname(host))
        except OSError:
            return []
    return [str(address)] if address.version == 4 else []


def service_info(settings: Settings, *, port: int, addresses: list[str]) -> ServiceInfo:
    return ServiceInfo(
        SERVICE_TYPE,
        f"{instance_name(settings)}.{SERVICE_TYPE}",
        port=port,
        properties={
            "path": "/",
            "app": APP_TAG,
            "office": settings.office_code,
            "office_name": settings.office_name,
            "role": settings.role,
            "version": version(),
        },
        server=server_name(settings),
        addresses=[socket.inet_aton(a) for a in addresses],
    )


class Advertiser:
    """Keeps the service registered on the current addresses until :meth:`stop`."""

    def __init__(
        self,
        settings: Settings,
        *,
        host: str,
        port: int,
        recheck_seconds: float = RECHECK_SECONDS,
    ) -> None:
        self.settings = settings
        self.host = host
        self.port = port
        self.recheck_seconds = recheck_seconds
        self.registered = threading.Event()
        self.name: str | None = None
        self.addresses: list[str] = []
        self._stop = threading.Event()
        self._zc: Zeroconf | None = None
        self._info: ServiceInfo | None = None
        self._thread = threading.Thread(target=self._run, name="mdns-advertiser", daemon=True)

    def start(self) -> Advertiser:
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Withdraw the service (goodbye packets) and end the thread."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        warned = False
        while not self._stop.is_set():
            try:
                addresses = addresses_for_host(self.host)
                if addresses != self.addresses:
                    self._withdraw()
                    if addresses:
                        self._register(addresses)
                    self.addresses = addresses
                if not addresses and not warned:
                    log.warning(
                        "no IPv4 address to advertise yet; will retry", extra={"host": self.host}
                    )
                warned = not addresses
            except Exception:
                # Advertising is a convenience: trouble is logged, the server keeps serving.
                log.warning("mDNS advertising failed; will retry", exc_info=True)
                self._withdraw()
                self.addresses = []
            self._stop.wait(self.recheck_seconds)
        self._withdraw()

    def _register(self, addresses: list[str]) -> None:
        zc = Zeroconf(interfaces=addresses, ip_version=IPVersion.V4Only)
        info = service_info(self.settings, port=self.port, addresses=addresses)
        try:
            zc.register_service(info, allow_name_change=True)
        except BaseException:
            zc.close()
            raise
        self._zc, self._info = zc, info
        self.name = info.name.removesuffix("." + SERVICE_TYPE)
        self.registered.set()
        log.info(
            "advertising the web UI over mDNS",
            extra={
                "service": self.name,
                "server": info.server,
                "addresses": ",".join(addresses),
                "port": self.port,
            },
        )

    def _withdraw(self) -> None:
        zc, info = self._zc, self._info
        self._zc = self._info = None
        self.registered.clear()
        if zc is None:
            return
        try:
            if info is not None:
                zc.unregister_service(info)
        except Exception:
            log.warning("could not withdraw the mDNS service", exc_info=True)
        finally:
            zc.close()


def start_advertising(settings: Settings, *, host: str, port: int) -> Advertiser | None:
    """Start advertising unless ``CTVMS_ADVERTISE`` is off. Never raises."""
    if not settings.advertise:
        log.info("mDNS advertising is off (CTVMS_ADVERTISE)")
        return None
    try:
        return Advertiser(settings, host=host, port=port).start()
    except Exception:
        log.warning("could not start mDNS advertising", exc_info=True)
        return None


@contextmanager
def advertising(settings: Settings, *, host: str, port: int) -> Iterator[Advertiser | None]:
    """Advertise while the block runs (the web server's lifetime)."""
    advertiser = start_advertising(settings, host=host, port=port)
    previous = None
    if advertiser is not None and threading.current_thread() is threading.main_thread():
        # uvicorn re-raises SIGTERM (how systemd stops the unit) once it has shut down; its
        # default action would end the process before the goodbye below goes out.
        previous = signal.signal(signal.SIGTERM, _exit_cleanly)
    try:
        yield advertiser
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        if advertiser is not None:
            advertiser.stop()


def _exit_cleanly(signum: int, frame: object) -> None:
    raise SystemExit(0)
