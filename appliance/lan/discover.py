"""Find the CTVMS boxes and central instances that advertise themselves on the LAN."""

from __future__ import annotations

import queue
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from zeroconf import (
    InterfaceChoice,
    IPVersion,
    ServiceBrowser,
    ServiceInfo,
    ServiceListener,
    Zeroconf,
)

from appliance.lan.advertise import APP_TAG, SERVICE_TYPE

# Time allowed to resolve one service once its name is seen, within the overall timeout.
_RESOLVE_MS = 1500


@dataclass(frozen=True)
class Found:
    """One CTVMS web UI seen on the network."""

    name: str
    server: str
    addresses: list[str]
    port: int
    office: str
    office_name: str
    role: str
    version: str
    path: str = "/"
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        host = self.addresses[0] if self.addresses else self.server.rstrip(".")
        return f"http://{host}:{self.port}{self.path}"

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "url": self.url}


def _text(props: dict[bytes, bytes | None], key: str, default: str = "") -> str:
    value = props.get(key.encode())
    return value.decode(errors="replace") if value is not None else default


def from_info(info: ServiceInfo) -> Found | None:
    """A :class:`Found` for one of our services; ``None`` for anyone else's web server."""
    props = info.properties or {}
    if _text(props, "app") != APP_TAG:
        return None
    known = {"app", "path", "office", "office_name", "role", "version"}
    return Found(
        name=info.name.removesuffix("." + SERVICE_TYPE),
        server=info.server or "",
        addresses=[socket.inet_ntoa(a) for a in info.addresses if len(a) == 4],
        port=info.port or 0,
        office=_text(props, "office"),
        office_name=_text(props, "office_name"),
        role=_text(props, "role"),
        version=_text(props, "version"),
        path=_text(props, "path", "/") or "/",
        extra={
            k.decode(errors="replace"): (v or b"").decode(errors="replace")
            for k, v in props.items()
            if k.decode(errors="replace") not in known
        },
    )


class _Names(ServiceListener):
    """Passes browse events to the caller's thread, which resolves them."""

    def __init__(self) -> None:
        self.events: queue.Queue[tuple[str, str]] = queue.Queue()

    def add_service(self, zc: Zeroconf, type_: str, name: str) -> None:
        self.events.put(("add", name))

    def update_service(self, zc: Zeroconf, type_: str, name: str) -> None:
        self.events.put(("add", name))

    def remove_service(self, zc: Zeroconf, type_: str, name: str) -> None:
        self.events.put(("remove", name))


def discover(
    *,
    timeout: float = 3.0,
    interfaces: Sequence[str] | None = None,
    until: Callable[[list[Found]], bool] | None = None,
) -> list[Found]:
    """Browse for ``timeout`` seconds and return what answered, sorted by role and name.

    ``interfaces`` limits the search to those local IPv4 addresses (tests pass ``127.0.0.1``);
    by default every interface is used. ``until`` ends the search early once it returns true
    for what has been found so far.
    """
    zc = Zeroconf(
        interfaces=list(interfaces) if interfaces else InterfaceChoice.All,
        ip_version=IPVersion.V4Only,
    )
    listener = _Names()
    browser = ServiceBrowser(zc, SERVICE_TYPE, listener)
    found: dict[str, Found] = {}
    deadline = time.monotonic() + timeout
    try:
        while (left := deadline - time.monotonic()) > 0:
            try:
                kind, name = listener.events.get(timeout=left)
            except queue.Empty:
                break
            if kind == "remove":
                found.pop(name, None)
                continue
            info = zc.get_service_info(SERVICE_TYPE, name, timeout=_RESOLVE_MS)
            box = from_info(info) if info is not None else None
            if box is not None:
                found[name] = box
            if until is not None and until(list(found.values())):
                break
    finally:
        browser.cancel()
        zc.close()
    return sorted(found.values(), key=lambda b: (b.role != "central", b.name.casefold()))
