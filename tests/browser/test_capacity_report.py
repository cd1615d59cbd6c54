"""The capacity report's HTML page in real Chromium (headless Debian chromium): every plot renders (node plan,
cost per team, forecasts with their band, usage vs request vs recommendation per service), with visible
geometry, and the page is screenshotted (saved next to the report; the image is checked to hold drawn pixels)."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import pytest

from pitstop.activities.capacity import write_report
from pitstop.capacity import cluster
from pitstop.capacity.collection import region_capacity
from pitstop.capacity.forecast import ForecastSettings
from pitstop.capacity.policy import CapacityPolicy
from pitstop.capacity.strategies import Strategy
from pitstop.steps.capacity import ReportArgs
from tests.unit.test_capacity_report import node, synthetic_region

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]


def png_pixels(png: bytes) -> tuple[int, int, bytes]:
    """(width, height, raw filtered scanlines) of a PNG."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", png[16:24])
    data, offset = b"", 8
    while offset < len(png):
        (length,) = struct.unpack(">I", png[offset:offset + 4])
        kind = png[offset + 4:offset + 8]
        if kind == b"IDAT":
            data += png[offset + 8:offset + 8 + length]
        offset += 12 + length
    return width, height, zlib.decompress(data)


async def test_the_capacity_report_renders_its_plots_in_chromium(tmp_path: Path) -> None:
    if not CHROMIUM.exists():
        pytest.fail("/usr/bin/chromium is missing: apt-get install -y chromium")
    from playwright.async_api import async_playwright

    infos, usage = synthetic_region()
    nodes = cluster.nodes([node(f"n{i}", "m6i.xlarge", "4", "16Gi", "0.192") for i in range(3)])
    capacity = region_capacity(region="eu-central", usage=usage, workloads=infos, nodes=nodes, quotas=[],
                               policy=CapacityPolicy(), strategy=Strategy.SIMPLE, forecast=ForecastSettings())
    result = write_report(ReportArgs(regions=[capacity]), tmp_path)
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            page = await browser.new_page(viewport={"width": 1200, "height": 900})
            await page.goto(Path(result.html_path).as_uri(), wait_until="load")
            assert await page.title() == "Capacity report"
            plots = page.locator("svg")
            assert await plots.count() == 2 + 2 + 2 * 2  # node plan, cost, 2 forecasts, CPU + memory per service with usage
            for i in range(await plots.count()):
                box = await plots.nth(i).bounding_box()
                assert box is not None and box["width"] > 300 and box["height"] > 50, (i, box)
            widths = await page.eval_on_selector_all(
                "polyline.series", "els => els.map(e => e.getBBox().width)")
            assert len(widths) == 2 * 2 + 2 * 2 and all(w > 100 for w in widths), widths
            band = await page.eval_on_selector_all("polygon.band", "els => els.map(e => e.getBBox().height)")
            assert len(band) == 2 and all(h > 0 for h in band), band
            bars = await page.eval_on_selector_all("rect.bar", "els => els.map(e => e.getBBox().width)")
            assert bars and all(w > 0 for w in bars)
            shot = tmp_path / "capacity.png"
            await page.screenshot(path=str(shot), full_page=True)
            plot_shot = await plots.nth(2).screenshot()
        finally:
            await browser.close()
    width, height, pixels = png_pixels(shot.read_bytes())
    assert width == 1200 and height > 900
    _, _, plot_pixels = png_pixels(plot_shot)
    assert len(set(plot_pixels)) > 20  # lines, band and text drawn, not a blank box
    print(f"screenshot: {shot} ({width}x{height})")
