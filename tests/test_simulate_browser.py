"""The backtest's HTML report in a real headless browser: Chromium renders it and the
screenshot is a real, non-blank picture. CI installs Debian's chromium; without it this skips."""

from __future__ import annotations

import shutil
import struct
import subprocess
import zlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from leadflow import default_rules
from leadflow.simulate import SimulationSettings, render_html, simulate

BROWSER = next(
    (p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None
)
pytestmark = pytest.mark.skipif(
    BROWSER is None, reason="needs a headless Chromium (Debian's chromium; .ci/run installs it)"
)


def _history(count: int) -> list[dict[str, object]]:
    start = datetime(2026, 3, 2, 8, tzinfo=UTC)
    sources = ["website", "referral", "phone"]
    return [
        {
            "eventId": f"e{n}",
            "eventType": "opportunity.created",
            "occurredAt": (start + timedelta(hours=3 * n)).isoformat(),
            "payload": {"opportunityId": f"opp-{n}", "leadSource": sources[n % 3]},
        }
        for n in range(count)
    ]


def _png_pixels(data: bytes) -> tuple[int, int, bytes]:
    """Width, height and the decompressed scanlines of a PNG (no imaging library needed)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    position, idat, size = 8, b"", (0, 0)
    while position < len(data):
        (length,) = struct.unpack(">I", data[position : position + 4])
        kind = data[position + 4 : position + 8]
        body = data[position + 8 : position + 8 + length]
        if kind == b"IHDR":
            size = struct.unpack(">II", body[:8])
        elif kind == b"IDAT":
            idat += body
        position += 12 + length
    return size[0], size[1], zlib.decompress(idat)


WEB_EMAIL = {
    "sequenceId": "web-email",
    "name": "E-mail website leads",
    "entry": {
        "eventType": "opportunity.created",
        "conditions": [{"field": "leadSource", "operator": "equals", "value": "website"}],
    },
    "steps": [
        {"id": "wait", "kind": "wait", "delay": 2},
        {"id": "email", "kind": "action", "action": {"actionType": "send_email", "template": "hi"}},
    ],
}


def test_the_html_report_renders_in_a_headless_browser(tmp_path: Path) -> None:
    report = simulate(
        default_rules(),
        _history(120),
        sequences=[WEB_EMAIL],
        settings=SimulationSettings(reps=("ana", "ben", "cy")),
    )
    assert report.sequences["web-email"].sends == {"send_email": 40}
    html = render_html(report)
    assert "<h2>sequences</h2>" in html
    page = tmp_path / "report.html"
    page.write_text(html, encoding="utf-8")
    shot = tmp_path / "shot.png"
    assert BROWSER is not None
    subprocess.run(
        [
            BROWSER,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--window-size=1200,900",
            f"--screenshot={shot}",
            page.as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    width, height, pixels = _png_pixels(shot.read_bytes())
    assert (width, height) == (1200, 900)
    assert len(set(pixels)) > 16, "the screenshot is blank"
