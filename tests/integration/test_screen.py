"""The center's screen in a real browser (Debian's chromium, driven by Playwright) against a worker fed
by the simulator and a ``stream-app screen`` process: the map, a flood crest at Long Biên colouring Hà
Nội within 5 s, the province panel's charts (a year of landslide sites against the year before, Long
Biên's flood alarm levels) and a series' CSV, the live alert list, an operator's acknowledgement and
a viewer who cannot, the compliance table against the API, the printable briefing and the English
toggle; and the screen's own
health: its page says "stale" and ``/readyz`` answers 503 within seconds of its alerts' reader losing
the topic, and both recover with it.

Screenshots (and the briefing as a PDF) go to ``.local/screen/``; the page's weight and the time from
the flood observation to the tile's colour are written to ``.local/screen/figures.json``.
"""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from stream_app.config.blueprint import Blueprint
from stream_app.kafka import acl
from stream_app.kafka.acl import Grant
from stream_app.settings import REPO_ROOT, Settings
from stream_app.tools.simulation.live import run_live
from stream_app.wire import codecs

from .conftest import secured
from .support import (
    API_TOKENS,
    History,
    a_year_of_history,
    api_address,
    audit_trail,
    observation,
    produce,
    wait_consumed,
)

playwright = pytest.importorskip("playwright.sync_api")
expect = playwright.expect

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# Debian's chromium as root, on a machine with no internet: no sandbox, no background connections
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SHOTS = REPO_ROOT / ".local" / "screen"
LONG_BIEN = "HN-LONGBIEN"
FLOOD_KEY = f"levels:HYD.WATER_LEVEL|HYD.WATER_LEVEL|01|{LONG_BIEN}"


@pytest.fixture
def screen_env() -> dict[str, str]:
    """Settings of the test's screen beyond the test's own (a test parametrizes it to change them)."""
    return {}


@pytest.fixture
def screen(settings: Settings, start_screen: Any, *, screen_env: dict[str, str]) -> str:
    """The screen's process (the conftest's), answering and reading the center's alerts; its address."""
    start_screen(**screen_env)
    address = api_address(settings)
    deadline = time.monotonic() + 30
    while not _following(address):
        assert time.monotonic() < deadline, "the screen does not follow the center's alerts"
        time.sleep(0.2)
    return address


@pytest.fixture
def feed(settings: Settings, blueprint: Blueprint) -> Iterator[None]:
    """The simulator's live feeds of the police and the power system (no water levels: the test's own
    flood crest is the only one at Long Biên), for the test's duration."""
    stop = threading.Event()
    sender = threading.Thread(
        target=run_live,
        args=(settings, blueprint.catalogue, blueprint.schemas),
        kwargs={
            "reporters": ["MPS", "NSMO"],
            "scenario": "normal",
            "rate": 20.0,
            "duration": 40.0,
            "stop": stop,
        },
        daemon=True,
    )
    sender.start()
    yield
    stop.set()  # the test is over: no need to wait out the feed's duration
    sender.join(60)


def _following(address: str) -> bool:
    try:
        with urllib.request.urlopen(f"{address}/livez", timeout=1) as response:  # noqa: S310 - local
            return bool(json.loads(response.read())["following_alerts"])
    except OSError:
        return False


def _api(address: str, path: str, role: str, body: Any = None) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Authorization": f"Bearer {API_TOKENS[role]}", "Content-Type": "application/json"}
    request = urllib.request.Request(f"{address}/api/v1/{path}", data=data, headers=headers)  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - the local screen
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def _signed_in(browser: Any, address: str, role: str) -> Any:
    page = browser.new_page(viewport={"width": 1920, "height": 1080})
    page.goto(address)
    page.fill("#token", API_TOKENS[role])
    page.click("#signin-form button[type=submit]")
    expect(page.locator("#map .tile")).to_have_count(34, timeout=15_000)
    page.wait_for_selector("#live.on", timeout=15_000)
    return page


def _contrast(text: str, background: str) -> float:
    """WCAG contrast ratio of two CSS ``rgb(r, g, b)`` colours."""

    def luminance(css: str) -> float:
        channels = [int(c) / 255 for c in css[css.index("(") + 1 : css.index(")")].split(",")[:3]]
        r, g, b = (c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels)
        return 0.2126 * r + 0.7152 * g + 0.0722 * b

    high, low = sorted((luminance(text), luminance(background)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def test_the_center_sees_a_flood_on_the_map_and_acts_on_it(
    settings: Settings, blueprint: Blueprint, start_worker: Any, screen: str, feed: None
) -> None:
    start_worker(settings)
    SHOTS.mkdir(parents=True, exist_ok=True)
    bd3 = next(lv for lv in blueprint.catalogue.stations[LONG_BIEN].levels if lv.code == "BD3")
    figures: dict[str, Any] = {}
    # a year of Hà Nội's landslide sites, and the same months the year before: its chart in the panel
    landslides = a_year_of_history(blueprint, "DIS.LANDSLIDE_SITES", region="01", station=None, base=2.0)
    schema = blueprint.schemas.latest("observation")
    produce(
        settings,
        blueprint.input_topic("MAE").name,
        [(b"01", codecs.encode(schema, record)) for record in landslides.observations],
    )
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = _signed_in(browser, screen, "operator")
            # the page's weight on a first load: the document and everything it fetched
            figures["first_load_bytes"] = page.evaluate(
                "performance.getEntriesByType('navigation').concat(performance.getEntriesByType('resource'))"
                ".reduce((n, e) => n + (e.transferSize || e.encodedBodySize || 0), 0)"
            )
            assert page.locator("#map .tile").count() == 34
            page.select_option("#indicator", "HYD.WATER_LEVEL")
            expect(page.locator("#legend li")).to_have_count(4)
            hanoi = page.locator('#map .tile[data-region="01"]')
            assert hanoi.get_attribute("data-level-code") != "BD3"
            # every regulation colour carries its text legibly (black on BĐ I's yellow): WCAG AA, 4.5:1
            legend = page.eval_on_selector_all(
                "#legend li",
                "items => items.map(i => [getComputedStyle(i).color, getComputedStyle(i).backgroundColor])",
            )
            assert len(legend) == 4
            for text, background in legend:
                assert _contrast(text, background) >= 4.5, (text, background)

            crest = observation(
                indicator="HYD.WATER_LEVEL", station=LONG_BIEN, value=bd3.lower + 0.4, unit="m"
            )
            produced = time.monotonic()
            produce(
                settings,
                blueprint.input_topic("MAE").name,
                [(LONG_BIEN.encode(), codecs.encode(schema, crest))],
            )
            page.wait_for_selector('#map .tile[data-region="01"][data-level-code="BD3"]', timeout=5_000)
            figures["flood_to_tile_s"] = round(time.monotonic() - produced, 3)
            red, green, blue = (int(bd3.colour[i : i + 2], 16) for i in (1, 3, 5))
            # the tile fades to its colour in 0.3 s
            expect(hanoi).to_have_css("background-color", f"rgb({red}, {green}, {blue})", timeout=2_000)

            item = page.locator(f'#alerts li[data-alert-key="{FLOOD_KEY}"]')
            item.wait_for(timeout=5_000)
            assert item.get_attribute("data-level-code") == "BD3"
            assert bd3.name_vi in item.inner_text()
            assert bd3.name_en in item.inner_text()  # level names in both languages
            # keyboard: a tile is a button; Enter opens its province
            _until(lambda: _history_holds(screen, landslides), 20)  # consolidated by now, surely
            hanoi.press("Enter")
            page.wait_for_selector(f'#detail .series[data-station="{LONG_BIEN}"]', timeout=5_000)
            _check_charts(page, landslides)
            page.screenshot(path=str(SHOTS / "flood-vi.png"))
            page.set_viewport_size({"width": 1366, "height": 768})  # a laptop
            page.screenshot(path=str(SHOTS / "flood-vi-laptop.png"))
            page.set_viewport_size({"width": 1920, "height": 1080})

            # a viewer sees the alert and cannot act on it; the server refuses them too
            viewer = _signed_in(browser, screen, "viewer")
            viewer.locator(f'#alerts li[data-alert-key="{FLOOD_KEY}"]').wait_for(timeout=5_000)
            assert viewer.locator("#alerts button[data-action]").count() == 0
            status, _ = _api(screen, f"alerts/{urllib.parse.quote(FLOOD_KEY, safe='')}/directives", "viewer",
                             {"action": "ACKNOWLEDGE"})  # fmt: skip
            assert status == 403

            # the operator acknowledges; both pages show who and when
            item.locator('button[data-action="ACKNOWLEDGE"]').click()
            acknowledged = f'#alerts li[data-alert-key="{FLOOD_KEY}"] .ack'
            page.wait_for_selector(acknowledged, timeout=10_000)
            assert "test-operator" in page.locator(acknowledged).first.inner_text()
            # the screen forwarded it to the workers' API: one audit record of it, in the operator's
            # name; the viewer's attempt, one refusal (the workers audit before they answer: the audit
            # topic read to its end once every directive is consumed, not for a fixed 3 s; the internal
            # topic never settles here, under the live feed)
            wait_consumed(settings, blueprint, [blueprint.topic_by_role("directives").name])
            trail = audit_trail(settings, blueprint)
            assert [(a["actor"], a["subject"]) for a in trail if a["outcome"] == "accepted"] == [
                ("test-operator", FLOOD_KEY)
            ]
            refused = [(a["actor"], a["details"]["reason"]) for a in trail if a["outcome"] == "refused"]
            assert refused == [("test-viewer", "role")]
            viewer.wait_for_selector(acknowledged, timeout=10_000)
            viewer.screenshot(path=str(SHOTS / "viewer-vi.png"))

            # compliance: the table is the API's answer
            page.click("#tab-compliance")
            page.wait_for_selector("#compliance-table tbody tr")
            _, answer = _api(screen, "compliance", "viewer")
            counts = ("on_time", "late", "missing", "test_only")
            expected = {
                (r["reporter"], i["indicator"], *(str(i[c]) for c in counts))
                for r in answer["reporters"]
                for i in r["indicators"]
            }
            rows = page.eval_on_selector_all(
                "#compliance-table tbody tr",
                "rows => rows.map(r => [r.dataset.reporter, r.dataset.indicator,"
                " ...[...r.querySelectorAll('td.num')].map(c => c.textContent)])",
            )
            shown = {tuple(row) for row in rows}
            assert len(rows) == len(shown)
            assert shown == expected
            page.screenshot(path=str(SHOTS / "compliance-vi.png"))

            # the briefing, printable; then the English toggle
            page.click("#tab-briefing")
            page.wait_for_selector("#briefing-table tbody tr")
            _, briefing = _api(screen, "briefing", "viewer")
            assert page.locator("#briefing-table tbody tr").count() == len(briefing["items"])
            page.emulate_media(media="print")
            page.pdf(path=str(SHOTS / "briefing.pdf"))
            page.emulate_media(media="screen")
            page.click("#lang")
            page.click("#tab-map")
            assert page.locator("h1").inner_text() == "Government Information and Direction Center"
            assert bd3.name_en in page.locator(f'#alerts li[data-alert-key="{FLOOD_KEY}"]').inner_text()
            page.screenshot(path=str(SHOTS / "flood-en.png"))
        finally:
            browser.close()
    (SHOTS / "figures.json").write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    print(f"screen: {figures}")
    assert figures["flood_to_tile_s"] <= 5.0
    assert 0 < figures["first_load_bytes"] < 150_000  # no framework, no map data, no fonts fetched


def _history_holds(address: str, history: History) -> bool:
    status, body = _api(address, "history?indicator=DIS.LANDSLIDE_SITES&region=01", "viewer")
    got = {p["period"]: (p["value"], p["same_period_last_year"]) for p in body.get("periods", [])}
    return status == 200 and got == history.expected


def _check_charts(page: Any, landslides: History) -> None:
    """Hà Nội's panel: a chart per series, landslide sites' with a point per month of the year and per
    month of the year before that was sent, said in words for screen readers; Long Biên's with its
    three flood alarm levels (the crest is above them all); the landslides' CSV holds the series."""
    sites = page.locator('#detail figure.chart[data-chart="DIS.LANDSLIDE_SITES|"]')
    chart = sites.locator("svg.year-chart")
    expect(chart).to_have_attribute("data-periods", "12", timeout=5_000)
    expect(sites.locator(".pt.now")).to_have_count(12)
    before = sum(last is not None for _, last in landslides.expected.values())
    expect(sites.locator(".pt.before")).to_have_count(before)
    assert chart.get_attribute("role") == "img"
    described = chart.get_attribute("aria-labelledby").split()
    assert [page.locator(f"#{name}").evaluate("n => n.tagName") for name in described] == ["title", "desc"]
    expect(sites.locator("table.visually-hidden tbody tr")).to_have_count(12)
    flood = page.locator(f'#detail figure.chart[data-chart="HYD.WATER_LEVEL|{LONG_BIEN}"]')
    expect(flood.locator("line.level")).to_have_count(3)
    expect(flood.locator(".pt.now")).to_have_count(1)
    with page.expect_download() as downloaded:
        sites.locator(".export-series").click()
    raw = downloaded.value.path().read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")  # UTF-8 with a BOM: Excel reads Vietnamese
    rows = list(csv.DictReader(io.StringIO(raw.decode("utf-8-sig"))))
    held = {
        r["period"]: (
            float(r["value"]),
            float(r["same_period_last_year"]) if r["same_period_last_year"] else None,
        )
        for r in rows
    }
    assert held == landslides.expected
    assert {(r["indicator"], r["region_name"], r["frequency"]) for r in rows} == {
        ("DIS.LANDSLIDE_SITES", "Hà Nội", "monthly")
    }


def _get(address: str, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"{address}{path}", timeout=5) as response:  # noqa: S310 - local
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def _until(check: Any, timeout_s: float) -> float:
    """Seconds until ``check()`` held (fails past ``timeout_s``)."""
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < timeout_s, f"not within {timeout_s} s"
        time.sleep(0.1)
    return time.monotonic() - started


def _sample(address: str, name: str) -> float:
    _, body = _get(address, "/metrics")
    for line in body.decode().splitlines():
        if line.startswith(f"{name} "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics")


@pytest.mark.parametrize("screen_env", [{"STREAM_APP_SCREEN_READER_STALE_S": "2"}])
def test_the_page_says_stale_and_the_screen_is_not_ready_while_its_feed_stops(
    settings: Settings, blueprint: Blueprint, screen: str
) -> None:
    """The center's grants on its topics withdrawn (as an ACL mistake would): the reader reads nothing
    and cannot confirm it is caught up. No worker: an idle topic keeps the screen live by itself."""
    if not secured(settings):
        pytest.skip("the reader is stopped by withdrawing its Kafka ACLs: the services must enforce them")
    assert _until(lambda: _get(screen, "/readyz")[0] == 200, 10) < 10
    center = f"User:{settings.acl_center_user}"
    reads = [
        Grant(center, "TOPIC", f"{settings.topic_namespace}center.", "PREFIXED", op)
        for op in ("READ", "DESCRIBE")
    ]
    timings: dict[str, float] = {}
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = _signed_in(browser, screen, "viewer")
            page.click("#lang")
            expect(page.locator("#live")).to_have_text("Live")
            assert _sample(screen, "stream_app_screen_pages_connected") == 1
            assert _sample(screen, "stream_app_screen_ready") == 1

            acl.delete(settings, reads)  # the feed stops
            stopped = time.monotonic()
            page.wait_for_selector("#live.stale", timeout=10_000)
            timings["page_stale_s"] = time.monotonic() - stopped
            expect(page.locator("#live")).to_have_text(re.compile(r"^Stale — last update \d+s ago$"))
            status, body = _get(screen, "/readyz")
            timings["not_ready_s"] = time.monotonic() - stopped
            assert status == 503, body
            assert json.loads(body)["unavailable"] == ["alerts_reader"]
            assert _sample(screen, "stream_app_screen_ready") == 0
            assert _sample(screen, "stream_app_screen_reader_lag_seconds") > 2
            page.click("#lang")  # the same, in Vietnamese
            expect(page.locator("#live")).to_have_text(
                re.compile(r"^Chưa cập nhật — lần cuối \d+ giây trước$")
            )
            SHOTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SHOTS / "stale-vi.png"))

            acl.apply(blueprint, only={center})  # the feed is back
            resumed = time.monotonic()
            page.wait_for_selector("#live.on", timeout=15_000)
            timings["page_live_again_s"] = time.monotonic() - resumed
            expect(page.locator("#live")).to_have_text("Trực tuyến")
            _until(lambda: _get(screen, "/readyz")[0] == 200, 5)
        finally:
            browser.close()
    _, exposition = _get(screen, "/metrics")
    names = {family.name for family in text_string_to_metric_families(exposition.decode())}  # one valid text
    assert {"stream_app_screen_ready", "stream_app_api_requests_limited", "process_cpu_seconds"} <= names
    assert b'stream_app_screen_request_seconds_count{route="/readyz"}' in exposition
    assert b"stream_app_screen_events_pushed_total" in exposition
    print(f"screen health: { ({k: round(v, 1) for k, v in timings.items()}) }")
    assert timings["page_stale_s"] < 6  # 2 s of silence, a second's confirmation, a second's status
