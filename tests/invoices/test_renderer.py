"""The child process that lays out invoice PDFs: the same PDF as a render in this process,
reused while warm, stopped when idle or after its render limit, replaced when it dies."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from appliance.invoices import layout, render, renderer
from appliance.invoices import service as invoices
from tests.conftest import make_settings
from tests.invoices.builders import make_view
from tests.invoices.test_render import pdf_text


@pytest.fixture(scope="module")
def office(tmp_path_factory):
    return make_settings(tmp_path_factory.mktemp("renderer"))


@pytest.fixture(scope="module")
def child():
    made = renderer.ChildRenderer(idle_s=60)
    yield made
    made.close()


def html_of(office, layout="a4", **view):
    return render.render_html(make_view(**view), office, layout=layout, locale="en", screen=False)


def described(data: bytes) -> tuple[list[tuple[float, float]], str]:
    """A PDF's page sizes and its text."""
    reader, text = pdf_text(data)
    return [(float(p.mediabox.width), float(p.mediabox.height)) for p in reader.pages], text


def render_in(child, html, layout_name="a4"):
    return child.render_now(html, layout_name)


def gone(pid: int, *, within_s: float = 15.0) -> bool:
    """The process has exited within ``within_s`` seconds (a zombie waiting for its parent to
    collect it counts as exited)."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
        except OSError:
            return True
        if state in ("Z", "X"):
            return True
        time.sleep(0.05)
    return False


def test_the_child_makes_the_same_invoice_as_this_process(office, child):
    html = html_of(office)
    data = render_in(child, html)
    assert child.last_pid not in (None, os.getpid())
    assert data.startswith(b"%PDF-")
    assert described(data) == described(layout.layout_pdf(html, "a4"))
    assert "TS-2026-000042" in described(data)[1]


def test_receipt_layouts_are_cut_to_their_content_in_the_child(office, child):
    html = html_of(office, "80mm")
    sizes, _text = described(render_in(child, html, "80mm"))
    assert (sizes, _text) == described(layout.layout_pdf(html, "80mm"))
    assert len(sizes) == 1 and sizes[0][1] < 3000 / 25.4 * 72 / 2  # cut, not 3 m of paper


def test_the_cache_renders_through_the_process_renderer(office):
    view = make_view()
    path = asyncio.run(invoices.ensure_pdf(office, view["number"], view=view, locale="en"))
    assert invoices.is_intact(path)
    assert renderer.renderer().last_pid not in (None, os.getpid())


def test_a_warm_child_serves_the_next_renders(office, child):
    html = html_of(office)
    render_in(child, html)
    first, started = child.last_pid, child.started
    render_in(child, html)
    assert (child.last_pid, child.started) == (first, started)


def test_an_idle_child_stops_and_a_new_one_starts_on_the_next_render(office):
    child = renderer.ChildRenderer(idle_s=0.2)
    try:
        html = html_of(office)
        render_in(child, html)
        first = child.last_pid
        assert gone(first)
        assert render_in(child, html).startswith(b"%PDF-")
        assert child.last_pid != first
        assert child.started == 2
    finally:
        child.close()


def test_a_child_is_replaced_after_its_render_limit(office):
    child = renderer.ChildRenderer(idle_s=60, max_renders=2)
    try:
        html = html_of(office)
        pids = []
        for _ in range(3):
            render_in(child, html)
            pids.append(child.last_pid)
        assert pids[0] == pids[1] != pids[2]
    finally:
        child.close()


def test_a_killed_child_is_replaced_and_the_render_still_succeeds(office, child):
    html = html_of(office)
    render_in(child, html)
    killed = child.last_pid
    os.kill(killed, signal.SIGKILL)
    assert gone(killed)
    data = render_in(child, html)
    assert data.startswith(b"%PDF-")
    assert child.last_pid != killed


def test_a_failed_layout_is_an_error_and_the_child_goes_on(office, child):
    render_in(child, html_of(office))
    pid = child.last_pid
    with pytest.raises(renderer.RenderFailed):
        render_in(child, None)  # not a document: WeasyPrint's error comes back as the message
    assert render_in(child, html_of(office)).startswith(b"%PDF-")
    assert child.last_pid == pid


def test_the_child_ends_when_its_parent_does(tmp_path):
    script = (
        "import sys; from appliance.invoices import renderer; "
        "child = renderer.ChildRenderer(idle_s=600); "
        "child.render_now('<p>x</p>', 'a4'); print(child.last_pid); sys.stdout.flush(); "
        "import os; os._exit(0)"  # no clean-up: as if the parent were killed
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    assert gone(int(done.stdout.strip()))


def test_close_stops_the_child(office):
    child = renderer.ChildRenderer(idle_s=60)
    render_in(child, html_of(office))
    pid = child.last_pid
    child.close()
    assert gone(pid)
