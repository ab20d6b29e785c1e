"""The center's screen through a duty officer's shift (issue 31), in Debian's chromium driven by
Playwright against a worker and a ``stream-app screen``: a level-3 flood alert at Long Biên draws
attention (a browser notification, a sound, the title's badge, one announcement to screen readers), the
operator filters to Hà Nội (the URL keeps the view across a reload), acknowledges, escalates and comments
through the page's dialogs (a refused too-long comment explained on the alert, CLOSE confirmed), exports
the list as CSV, and the national summary names Hà Nội. Then the shift's history: reloaded, the page
still shows the escalation; the handover lists the alert and the operator's acts (and prints alone); the
alert resolves; the timeline shows every step with names and its CSV holds them. Screenshots at
1920×1080 and 1366×768 in ``.local/screen/``.

The notification and the sound are observed where the page meets the browser: ``Notification`` and
``AudioContext.createOscillator`` are wrapped (and still called) by an init script.
"""

from __future__ import annotations

import csv
import io
import re
import time
from typing import Any

import pytest

from stream_app.config.blueprint import Blueprint
from stream_app.settings import Settings
from stream_app.wire import codecs

from .support import API_TOKENS, observation, produce
from .test_screen import (  # noqa: F401 - screen and screen_env: fixtures
    CHROMIUM,
    CHROMIUM_ARGS,
    FLOOD_KEY,
    LONG_BIEN,
    SHOTS,
    screen,
    screen_env,
)

playwright = pytest.importorskip("playwright.sync_api")
expect = playwright.expect

HANOI = "01"
OPERATOR = "test-operator"
# What the page asks of the browser, recorded (the real calls still happen)
SPY = """
window.__notified = [];
window.__tones = 0;
const RealNotification = window.Notification;
function SpyNotification(title, options) {
  window.__notified.push({ title, tag: options && options.tag });
  return new RealNotification(title, options);
}
Object.defineProperty(SpyNotification, "permission", { get: () => RealNotification.permission });
SpyNotification.requestPermission = (...args) => RealNotification.requestPermission(...args);
window.Notification = SpyNotification;
const createOscillator = AudioContext.prototype.createOscillator;
AudioContext.prototype.createOscillator = function () {
  window.__tones += 1;
  return createOscillator.call(this);
};
"""


def _badge(page: Any) -> int:
    """The count of unacknowledged alerts in the page's title, "(N) …" (0 without a badge)."""
    found = re.match(r"^\((\d+)\) ", page.title())
    return int(found.group(1)) if found else 0


def _history(page: Any, settings: Settings, blueprint: Blueprint, item: Any, level_name: str) -> None:
    """The shift's history: a page opened later still shows the escalation; the handover lists the open
    alert and what the operator did, and prints alone; the alert resolves; the timeline shows every step
    with names, newest first, and its CSV holds them oldest first."""
    page.reload()
    item.wait_for(timeout=15_000)
    expect(item.locator(".escalated")).to_contain_text(OPERATOR, timeout=10_000)

    page.click("#tab-handover")
    handover = page.locator("#view-handover")
    expect(handover.locator(f'#handover-open li[data-alert-key="{FLOOD_KEY}"]')).to_be_visible(timeout=10_000)
    expect(handover.locator("#handover-open")).to_contain_text(level_name)
    done = handover.locator(f'#handover-table tr[data-alert-key="{FLOOD_KEY}"]')
    expect(done).to_have_count(4)  # acknowledged, escalated, commented, closed
    expect(done.first).to_contain_text(OPERATOR)
    expect(page.locator("#handover-operator")).to_have_text(OPERATOR)
    page.evaluate("document.body.classList.add('printing-handover')")  # as its Print button does
    page.emulate_media(media="print")
    expect(handover).to_be_visible()
    expect(page.locator("#view-briefing")).to_be_hidden()
    expect(page.locator(".alerts")).to_be_hidden()
    page.pdf(path=str(SHOTS / "handover.pdf"))
    page.emulate_media(media="screen")

    lower = next(lv for lv in blueprint.catalogue.stations[LONG_BIEN].levels if lv.code == "BD1").lower - 1.0
    fall = observation(indicator="HYD.WATER_LEVEL", station=LONG_BIEN, value=lower, unit="m")
    value = codecs.encode(blueprint.schemas.latest("observation"), fall)
    produce(settings, blueprint.input_topic("MAE").name, [(LONG_BIEN.encode(), value)])
    expect(item).to_have_count(0, timeout=10_000)

    page.click("#tab-timeline")
    rows = page.locator(f'#timeline-table tr[data-alert-key="{FLOOD_KEY}"]')
    deadline = time.monotonic() + 15
    while (
        rows.first.get_attribute("data-step", timeout=5_000) != "resolved"
    ):  # the worker takes it in a moment
        assert time.monotonic() < deadline, "the timeline does not show the resolution"
        page.wait_for_timeout(500)
        page.click("#tl-load")
    steps = [(r.get_attribute("data-step"), r.locator("td").nth(2).inner_text()) for r in rows.all()]
    assert steps == [
        ("resolved", "–"),
        ("closed", OPERATOR),
        ("commented", OPERATOR),
        ("escalated", OPERATOR),
        ("acknowledged", OPERATOR),
        ("fired", "–"),
    ]
    page.screenshot(path=str(SHOTS / "shift-timeline.png"))
    with page.expect_download() as downloaded:
        page.click("#export-timeline")
    text = downloaded.value.path().read_bytes()
    assert text.startswith(b"\xef\xbb\xbf")  # UTF-8 with a BOM
    rows_csv = [
        r for r in csv.DictReader(io.StringIO(text.decode("utf-8-sig"))) if r["alert_key"] == FLOOD_KEY
    ]
    assert [(r["step"], r["by"]) for r in rows_csv] == [(s, "" if by == "–" else by) for s, by in steps[::-1]]
    assert rows_csv[0]["region_name"] == "Hà Nội"


def test_a_shift_notices_filters_acts_and_exports(
    settings: Settings,
    blueprint: Blueprint,
    start_worker: Any,
    screen: str,  # noqa: F811 - the fixture imported above
) -> None:
    start_worker(settings)
    SHOTS.mkdir(parents=True, exist_ok=True)
    bd3 = next(lv for lv in blueprint.catalogue.stations[LONG_BIEN].levels if lv.code == "BD3")
    started = time.monotonic()
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            context = browser.new_context(viewport={"width": 1920, "height": 1080}, accept_downloads=True)
            context.grant_permissions(["notifications"], origin=screen)
            context.add_init_script(SPY)
            page = context.new_page()
            page.goto(screen)
            page.fill("#token", API_TOKENS["operator"])
            page.click("#signin-form button[type=submit]")
            expect(page.locator("#map .tile")).to_have_count(34, timeout=15_000)
            page.wait_for_selector("#live.on", timeout=15_000)
            # the middle shows the national summary until a province is chosen
            expect(page.locator("#detail")).to_have_attribute("data-view", "summary")

            # muted by default; one click turns sound and notifications on, from level 3
            attention = page.locator("#attention")
            expect(attention).to_have_attribute("aria-pressed", "false")
            attention.click()
            expect(attention).to_have_attribute("aria-pressed", "true")
            assert page.evaluate("Notification.permission") == "granted"
            assert page.locator("#attention-level").input_value() == "3"
            assert _badge(page) == 0

            crest = observation(
                indicator="HYD.WATER_LEVEL", station=LONG_BIEN, value=bd3.lower + 0.4, unit="m"
            )
            value = codecs.encode(blueprint.schemas.latest("observation"), crest)
            produce(settings, blueprint.input_topic("MAE").name, [(LONG_BIEN.encode(), value)])
            item = page.locator(f'#alerts li[data-alert-key="{FLOOD_KEY}"]')
            item.wait_for(timeout=10_000)
            page.wait_for_function("window.__notified.length > 0", timeout=5_000)
            notified = page.evaluate("window.__notified")
            assert [n["tag"] for n in notified] == [FLOOD_KEY]
            assert bd3.name_vi in notified[0]["title"]
            assert page.evaluate("window.__tones") >= 2
            assert _badge(page) == 1
            # the level in words on the tile and the alert, and said once to screen readers
            hanoi = page.locator(f'#map .tile[data-region="{HANOI}"]')
            expect(hanoi.locator(".lvl")).to_have_text(bd3.name_vi)
            expect(page.locator("#announcer")).to_contain_text(bd3.name_vi)
            assert page.locator("#alerts[aria-live]").count() == 0

            # the operator filters to Hà Nội at level 3 and up: the URL keeps the view across a reload
            page.select_option("#f-region", HANOI)
            page.select_option("#f-level", "3")
            assert re.search(r"[?&]region=01(&|$)", page.url)
            assert re.search(r"[?&]level=3(&|$)", page.url)
            page.wait_for_selector(f'#detail .series[data-station="{LONG_BIEN}"]', timeout=5_000)
            page.reload()
            item.wait_for(timeout=15_000)
            assert page.locator("#f-region").input_value() == HANOI
            assert page.locator("#f-level").input_value() == "3"
            expect(hanoi).to_have_attribute("aria-pressed", "true")
            expect(attention).to_have_attribute("aria-pressed", "true")  # remembered
            page.set_viewport_size({"width": 1920, "height": 1080})
            page.screenshot(path=str(SHOTS / "shift-filtered.png"))

            # acknowledge: the badge counts it down
            item.locator('button[data-action="ACKNOWLEDGE"]').click()
            expect(item.locator(".ack").first).to_contain_text("test-operator", timeout=10_000)
            expect(page).to_have_title(re.compile(r"^(?!\()"), timeout=5_000)

            # escalate, with a note, through the page's dialog (focus in its field)
            dialog = page.locator("#directive")
            item.locator('button[data-action="ESCALATE"]').click()
            expect(dialog).to_be_visible()
            assert page.evaluate("document.activeElement.id") == "directive-input"
            page.fill("#directive-input", "Báo cáo Phó Thủ tướng")
            page.click("#directive-ok")
            expect(item.locator(".escalated")).to_contain_text("test-operator", timeout=10_000)

            # comment: Escape cancels and gives focus back; then a comment too long is explained
            item.locator('button[data-action="COMMENT"]').click()
            expect(dialog).to_be_visible()
            page.keyboard.press("Escape")
            expect(dialog).to_be_hidden()
            assert page.evaluate("document.activeElement.dataset.action") == "COMMENT"
            item.locator('button[data-action="COMMENT"]').click()
            page.fill("#directive-input", "x" * (settings.directive_comment_max_length + 1))
            page.click("#directive-ok")
            expect(item.locator('.refused[data-reason="refused_too_long"]')).to_be_visible(timeout=10_000)
            comment = "Sở NN&PTNT Hà Nội theo dõi, sơ tán bãi giữa"
            item.locator('button[data-action="COMMENT"]').click()
            page.fill("#directive-input", comment)
            page.keyboard.press("Enter")  # an Enter in the dialog's textarea is a new line, not a send
            page.click("#directive-ok")
            expect(item).to_contain_text(comment, timeout=10_000)
            expect(item.locator(".refused")).to_have_count(0)

            # the CSV of the list as filtered holds the alert, as the page shows it
            with page.expect_download() as downloaded:
                page.click("#export-alerts")
            text = downloaded.value.path().read_text(encoding="utf-8-sig")
            rows = list(csv.DictReader(io.StringIO(text)))
            assert [r["alert_key"] for r in rows] == [FLOOD_KEY]
            row = rows[0]
            shown = (row["level_code"], row["level_name"], row["region_name"])
            assert shown == ("BD3", bd3.name_vi, "Hà Nội")
            assert (row["acknowledged_by"], row["comment"]) == ("test-operator", comment)

            # CLOSE asks first: Cancel keeps it open, Confirm closes the handling
            item.locator('button[data-action="CLOSE"]').click()
            assert page.evaluate("document.activeElement.id") == "directive-cancel"
            page.click("#directive-cancel")
            expect(dialog).to_be_hidden()
            item.locator('button[data-action="CLOSE"]').click()
            page.click("#directive-ok")
            expect(item).to_contain_text("Đã đóng xử lý", timeout=10_000)
            page.set_viewport_size({"width": 1366, "height": 768})
            page.screenshot(path=str(SHOTS / "shift-filtered-laptop.png"))

            # back to the national summary: Hà Nội heads the provinces in alarm
            page.click("#detail .back")
            expect(page.locator("#detail")).to_have_attribute("data-view", "summary")
            assert "region=" not in page.url
            expect(page.locator("#detail .worst li").first).to_contain_text("Hà Nội")
            expect(page.locator("#summary-levels")).to_contain_text(bd3.name_vi)
            page.screenshot(path=str(SHOTS / "shift-summary-laptop.png"))
            page.set_viewport_size({"width": 1920, "height": 1080})
            page.screenshot(path=str(SHOTS / "shift-summary.png"))
            _history(page, settings, blueprint, item, bd3.name_vi)
        finally:
            browser.close()
    print(f"shift scenario: {time.monotonic() - started:.1f} s in the browser")
