// The center's screen. Plain JavaScript, no library, no network beyond this server: the map, a
// province's indicators, live alerts (server-sent events read through fetch, so the token travels in a
// header), operators' directives, reporting compliance and the printable daily briefing.
"use strict";

const TEXT = {
  vi: {
    title: "Trung tâm Thông tin, Chỉ đạo điều hành của Chính phủ", indicator: "Chỉ tiêu",
    all_indicators: "Tất cả chỉ tiêu", online: "Trực tuyến", offline: "Mất kết nối", sign_out: "Đăng xuất",
    stale: "Chưa cập nhật — lần cuối {n} giây trước",
    sign_in: "Đăng nhập", token: "Mã truy cập (token)", bad_token: "Mã truy cập không hợp lệ.",
    tab_map: "Bản đồ", tab_compliance: "Tuân thủ báo cáo", tab_briefing: "Bản tin hằng ngày",
    pick_province: "Chọn một tỉnh, thành phố trên bản đồ để xem các chỉ tiêu.",
    compliance_title: "Tình hình báo cáo kỳ gần nhất đã quá hạn", reporter: "Đơn vị báo cáo", period: "Kỳ",
    status: "Trạng thái", on_time: "Đúng hạn", late: "Muộn", missing: "Thiếu", test_only: "Chỉ dữ liệu thử",
    never: "Chưa kết nối", briefing_title: "Bản tin hằng ngày", print: "In bản tin", domain: "Lĩnh vực",
    value: "Giá trị", last_year: "Cùng kỳ năm trước", change: "Thay đổi", live_alerts: "Cảnh báo đang mở",
    no_alerts: "Không có cảnh báo đang mở.", no_data: "Chưa có số liệu.", since: "từ", ago: "trước",
    minutes: "phút", hours: "giờ", days: "ngày", acknowledged_by: "Đã tiếp nhận bởi", at: "lúc",
    assigned_to: "Giao cho", comment: "Ý kiến", ACKNOWLEDGE: "Tiếp nhận", ASSIGN: "Giao xử lý",
    COMMENT: "Ý kiến", CLOSE: "Đóng xử lý", ESCALATE: "Báo cáo lên", assignee_prompt: "Giao cho ai?",
    comment_prompt: "Ý kiến chỉ đạo:", period_to_date: "Kỳ này đến nay", latest: "Mới nhất",
    read_only: "chỉ xem", operator: "điều hành", connected_of: "chỉ tiêu đã kết nối trên",
    open_alerts_by_domain: "Cảnh báo đang mở theo lĩnh vực", handled_closed: "Đã đóng xử lý",
    refused: "Không thực hiện được", days30: "30 ngày",
    stale_alert: "Chỉ đạo không được ghi nhận: cảnh báo đã kết thúc và phát lại; đây là lần cảnh báo mới.",
  },
  en: {
    title: "Government Information and Direction Center", indicator: "Indicator",
    all_indicators: "All indicators", online: "Live", offline: "Disconnected", sign_out: "Sign out",
    stale: "Stale — last update {n}s ago",
    sign_in: "Sign in", token: "Access token", bad_token: "That token is not valid.",
    tab_map: "Map", tab_compliance: "Reporting compliance", tab_briefing: "Daily briefing",
    pick_province: "Pick a province on the map to see its indicators.",
    compliance_title: "Reporting for the latest period past its deadline", reporter: "Reporter", period: "Period",
    status: "Status", on_time: "On time", late: "Late", missing: "Missing", test_only: "Test data only",
    never: "Never connected", briefing_title: "Daily briefing", print: "Print the briefing", domain: "Domain",
    value: "Value", last_year: "Same period last year", change: "Change", live_alerts: "Open alerts",
    no_alerts: "No open alerts.", no_data: "No data yet.", since: "since", ago: "ago",
    minutes: "min", hours: "h", days: "d", acknowledged_by: "Acknowledged by", at: "at",
    assigned_to: "Assigned to", comment: "Comment", ACKNOWLEDGE: "Acknowledge", ASSIGN: "Assign",
    COMMENT: "Comment", CLOSE: "Close", ESCALATE: "Escalate", assignee_prompt: "Assign to whom?",
    comment_prompt: "Comment:", period_to_date: "Period to date", latest: "Latest",
    read_only: "read-only", operator: "operator", connected_of: "indicators connected of",
    open_alerts_by_domain: "Open alerts by domain", handled_closed: "Handling closed",
    refused: "Not done", days30: "30 days",
    stale_alert: "Directive not applied: the alert had resolved and fired again; this is the new occurrence.",
  },
};

const state = {
  lang: localStorage.getItem("screen.lang") || "vi",
  token: sessionStorage.getItem("screen.token") || "",
  who: null, indicators: [], tiles: [], stations: {}, alerts: new Map(), overview: null, region: null,
  refused: new Map(), // alert key -> the reason code of the operator's last directive about it, refused
  connected: false, // the live stream is open
  status: null, // the server's last word on its feed: {status, reader_age_s, at (ms, this page's clock)}
};
const STATUS_SILENCE_MS = 3500; // the server says every second; past this without a word, stale
const $ = (sel) => document.querySelector(sel);
const t = (key) => TEXT[state.lang][key] ?? key;
const el = (tag, attrs = {}, ...children) => {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "style") {
      for (const [name, value] of Object.entries(v)) {
        if (name.startsWith("--")) node.style.setProperty(name, value); else node.style[name] = value;
      }
    } else if (k === "text") node.textContent = v;
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const child of children) if (child !== null && child !== undefined) node.append(child);
  return node;
};

// ------------------------------------------------------------------------------------------- API
class Unauthorized extends Error {}
async function api(path, options = {}) {
  const response = await fetch(`/api/v1/${path}`, {
    ...options, headers: { Authorization: `Bearer ${state.token}`, ...(options.headers || {}) },
  });
  if (response.status === 401) throw new Unauthorized();
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw Object.assign(new Error(body.detail || response.statusText), { reason: body.reason });
  return body;
}

// -------------------------------------------------------------------------------------- colours
function textOn(hex) { // black or white text, whichever contrasts more with the regulation colour
  const m = /^#?([0-9a-f]{6})$/i.exec(hex || "");
  if (!m) return "#ffffff";
  const n = parseInt(m[1], 16);
  const lin = (c) => { c /= 255; return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4; };
  const L = 0.2126 * lin(n >> 16) + 0.7152 * lin((n >> 8) & 255) + 0.0722 * lin(n & 255);
  return (L + 0.05) / 0.05 >= 1.05 / (L + 0.05) ? "#000000" : "#ffffff";
}
const levelName = (a) => (state.lang === "vi" ? a.level_name_vi : a.level_name_en) || a.level_code;
const indicatorName = (code) => {
  const i = state.indicators.find((x) => x.code === code);
  return i ? (state.lang === "vi" ? i.name_vi : i.name_en) : code;
};
const regionName = (code) => (state.tiles.find((x) => x.region === code) || {}).name || code;
const fmt = (v) => (v === null || v === undefined ? "–" :
  Number(v).toLocaleString(state.lang === "vi" ? "vi-VN" : "en-GB", { maximumFractionDigits: 2 }));
function elapsed(ms) {
  const m = Math.max(0, Math.round((Date.now() - ms) / 60000));
  if (m < 60) return `${m} ${t("minutes")}`;
  if (m < 2880) return `${Math.round(m / 60)} ${t("hours")}`;
  return `${Math.round(m / 1440)} ${t("days")}`;
}
const when = (ms) => new Date(ms).toLocaleString(state.lang === "vi" ? "vi-VN" : "en-GB",
  { timeZone: "Asia/Ho_Chi_Minh", hour12: false });

// ------------------------------------------------------------------------------------------ map
function worstAlerts() { // region -> its worst open alert (of the chosen indicator), in one pass
  const wanted = $("#indicator").value;
  const worst = new Map();
  for (const a of state.alerts.values()) {
    if (wanted && a.indicator !== wanted) continue;
    const known = worst.get(a.region);
    if (!known || a.level > known.level) worst.set(a.region, a);
  }
  return worst;
}
const tiles = new Map(); // region -> its button, made once: redraws keep focus and cost little
function drawMap() {
  const map = $("#map");
  const latest = new Map(((state.overview && state.overview.regions) || []).map((r) => [r.region, r.latest]));
  const worst = worstAlerts();
  for (const tile of state.tiles) {
    let button = tiles.get(tile.region);
    if (!button) {
      button = el("button", { class: "tile", type: "button", "data-region": tile.region,
        style: { gridRow: String(tile.row + 1), gridColumn: String(tile.col + 1) } },
      el("span", { class: "name", text: tile.name }), el("span", { class: "val" }));
      button.addEventListener("click", () => selectRegion(tile.region).catch(report));
      tiles.set(tile.region, button);
      map.append(button);
    }
    const alert = worst.get(tile.region);
    const value = latest.get(tile.region);
    const colour = alert ? alert.colour : "";
    button.dataset.levelCode = alert ? alert.level_code : "";
    button.setAttribute("aria-pressed", String(state.region === tile.region));
    button.title = alert ? `${tile.name}: ${levelName(alert)}` : tile.name;
    button.style.backgroundColor = colour;
    button.style.borderColor = colour;
    button.style.color = colour ? textOn(colour) : "";
    button.lastChild.textContent = value ? fmt(value.value) : alert ? levelName(alert) : "";
  }
  drawLegend();
}
function drawLegend() {
  const legend = $("#legend");
  legend.replaceChildren();
  const levels = (state.overview && state.overview.levels) || [];
  for (const lv of levels) {
    legend.append(el("li", { style: { backgroundColor: lv.colour, color: textOn(lv.colour) },
      text: `${lv.code} · ${state.lang === "vi" ? lv.name_vi : lv.name_en}` }));
  }
}
let overviews = 0;
async function loadOverview() {
  const code = $("#indicator").value;
  const asked = ++overviews;
  const answer = await api(`overview${code ? `?indicator=${encodeURIComponent(code)}` : ""}`);
  if (asked !== overviews) return; // a newer question was asked meanwhile
  state.overview = answer;
  drawMap();
}

// --------------------------------------------------------------------------------- a province
function sparkline(points) {
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("class", "spark");
  svg.setAttribute("viewBox", "0 0 100 30");
  svg.setAttribute("preserveAspectRatio", "none");
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", t("days30"));
  if (points.length > 1) {
    const values = points.map((p) => p.value);
    const lo = Math.min(...values), hi = Math.max(...values), span = hi - lo || 1;
    const line = document.createElementNS("http://www.w3.org/2000/svg", "polyline");
    line.setAttribute("points", values.map((v, i) =>
      `${(100 * i / (values.length - 1)).toFixed(1)},${(28 - 26 * (v - lo) / span).toFixed(1)}`).join(" "));
    svg.append(line);
  }
  return svg;
}
async function selectRegion(code) {
  state.region = code;
  drawMap();
  const detail = await api(`region?region=${encodeURIComponent(code)}`);
  if (state.region !== code) return;
  const box = $("#detail");
  box.replaceChildren(el("h2", { text: detail.name }));
  if (!detail.series.length) box.append(el("p", { class: "hint", text: t("no_data") }));
  for (const s of detail.series) {
    const name = state.lang === "vi" ? s.name_vi : s.name_en;
    box.append(el("div", { class: "series", "data-indicator": s.indicator, "data-station": s.station || "" },
      el("div", {}, el("strong", { text: name }), el("small", { text: s.station_name || "" })),
      el("div", {}, el("span", { class: "big", text: fmt(s.value) }), ` ${s.unit}`,
        el("small", { text: `${t("latest")}: ${s.event_time.replace("T", " ").slice(0, 16)}` })),
      sparkline(s.last_30_days),
      el("div", {}, el("span", { text: `${t("period_to_date")} ${s.period}: ${fmt(s.period_to_date)}` }),
        el("small", { text: `${t("last_year")}: ${fmt(s.same_period_last_year)}` }))));
  }
}

// ------------------------------------------------------------------------------------- alerts
function alertItem(a, fresh) {
  const where = a.station ? `${regionName(a.region)} · ${state.stations[a.station] || a.station}`
    : regionName(a.region);
  const item = el("li", { class: `alert${fresh ? " fresh" : ""}`, "data-alert-key": a.alert_key,
    "data-level-code": a.level_code, style: { "--level": a.colour } },
    el("span", { class: "level", style: { backgroundColor: a.colour, color: textOn(a.colour) },
      text: levelName(a) }), " ",
    el("span", { class: "other-lang", lang: state.lang === "vi" ? "en" : "vi",
      text: (state.lang === "vi" ? a.level_name_en : a.level_name_vi) || "" }), " ",
    el("span", { class: "where", text: where }),
    el("div", { text: `${indicatorName(a.indicator)}: ${fmt(a.value)}` }),
    el("div", { class: "meta", text: `${t("since")} ${when(a.since || a.event_time)} (${elapsed(a.since || a.event_time)} ${t("ago")})` }));
  if (a.acknowledged_by) {
    item.append(el("div", { class: "ack", text:
      `${t("acknowledged_by")} ${a.acknowledged_by} ${t("at")} ${when(a.acknowledged_at)}` }));
  }
  if (a.assigned_to) item.append(el("div", { class: "ack", text: `${t("assigned_to")}: ${a.assigned_to}` }));
  if (a.comment) item.append(el("div", { class: "ack", text: `${t("comment")}: ${a.comment}` }));
  if (a.event_type === "CLOSE") item.append(el("div", { class: "ack", text: t("handled_closed") }));
  const refusal = state.refused.get(a.alert_key);
  if (refusal) item.append(el("div", { class: "refused", role: "status", "data-reason": refusal, text: t(refusal) }));
  if (state.who && state.who.may_direct) {
    const actions = el("div", { class: "actions" });
    for (const action of ["ACKNOWLEDGE", "ASSIGN", "COMMENT", "CLOSE"]) {
      const button = el("button", { type: "button", "data-action": action, text: t(action) });
      button.addEventListener("click", () => direct(a, action, button));
      actions.append(button);
    }
    item.append(actions);
  }
  return item;
}
function drawAlerts(fresh) {
  const list = $("#alerts");
  const sorted = [...state.alerts.values()].sort((x, y) => y.level - x.level || y.event_time - x.event_time);
  list.replaceChildren(...sorted.map((a) => alertItem(a, fresh && fresh.has(a.alert_key))));
  if (!sorted.length) list.append(el("li", { class: "hint", text: t("no_alerts") }));
  $("#alert-count").textContent = String(sorted.length);
}
function applyAlert(a) {
  const known = state.alerts.get(a.alert_key);
  if (known && known.processing_time > a.processing_time) return; // an older change, after the snapshot
  // a directive's record is timed when it was issued: the alert's level has held since its last transition
  a.since = (a.event_type || "TRANSITION") === "TRANSITION" ? a.event_time
    : (known && known.since) || a.since || a.event_time;
  if (a.transition === "RESOLVED" && (a.event_type || "TRANSITION") === "TRANSITION") state.alerts.delete(a.alert_key);
  else state.alerts.set(a.alert_key, a);
  redraw(a.alert_key);
  scheduleOverview();
}
let pending = null; // a burst of changes is drawn once per frame
function redraw(freshKey) {
  if (pending) { pending.add(freshKey); return; }
  pending = new Set([freshKey]);
  requestAnimationFrame(() => {
    const fresh = pending;
    pending = null;
    drawAlerts(fresh);
    drawMap();
  });
}
let overviewTimer = null;
function scheduleOverview() { // values on the tiles follow within a second or two; colours are immediate
  if (overviewTimer) return;
  overviewTimer = setTimeout(() => { overviewTimer = null; loadOverview().catch(() => {}); }, 1500);
}
async function loadAlerts() {
  const active = await api("alerts/active");
  const list = Array.isArray(active) ? active : active.alerts || [];
  state.alerts = new Map(list.map((a) => [a.alert_key, a]));
  drawAlerts(null);
  drawMap();
}
async function direct(alert, action, button) {
  const body = { action, alert_id: alert.alert_id };
  if (action === "ASSIGN") { body.assignee = prompt(t("assignee_prompt")); if (!body.assignee) return; }
  if (action === "COMMENT") { body.comment = prompt(t("comment_prompt")); if (!body.comment) return; }
  button.disabled = true;
  try {
    await api(`alerts/${encodeURIComponent(alert.alert_key)}/directives`, {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
    state.refused.delete(alert.alert_key);
  } catch (error) {
    button.disabled = false;
    button.title = `${t("refused")}: ${error.message}`;
    if (error.reason === "stale_alert") { // about an earlier occurrence: say so on the alert, show the new one
      state.refused.set(alert.alert_key, error.reason);
      await loadAlerts().catch(() => redraw(alert.alert_key));
    }
  }
}
async function follow() { // server-sent events through fetch: the token goes in a header
  for (;;) {
    try {
      const response = await fetch("/api/v1/alerts/stream", { headers: { Authorization: `Bearer ${state.token}` } });
      if (response.status === 401) throw new Unauthorized();
      if (!response.ok || !response.body) throw new Error(String(response.status));
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      try {
        await loadAlerts(); // after subscribing: nothing falls between the snapshot and the stream
        state.connected = true; // "Live" once the server says its feed is fresh (within a second)
        let buffer = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer += value;
          let cut;
          while ((cut = buffer.indexOf("\n\n")) >= 0) {
            const block = buffer.slice(0, cut);
            buffer = buffer.slice(cut + 2);
            const data = block.split("\n").filter((l) => l.startsWith("data: ")).map((l) => l.slice(6)).join("\n");
            if (block.includes("event: alert") && data) applyAlert(JSON.parse(data));
            else if (block.includes("event: status") && data) {
              state.status = { ...JSON.parse(data), at: Date.now() };
              drawLive();
            }
          }
        }
      } finally {
        reader.cancel().catch(() => {}); // the connection is closed, whatever ended the loop
      }
    } catch (error) {
      if (error instanceof Unauthorized) { signIn(); return; }
    }
    state.connected = false;
    state.status = null;
    drawLive();
    await new Promise((resolve) => setTimeout(resolve, 2000));
  }
}
function drawLive() { // "Live" only while the server's feed is fresh and the server keeps saying so
  const live = $("#live");
  const s = state.connected ? state.status : null;
  const silent = s ? Date.now() - s.at : 0;
  let look = "off", text = t("offline");
  if (s && s.status === "live" && silent <= STATUS_SILENCE_MS) [look, text] = ["on", t("online")];
  else if (s) [look, text] = ["stale", t("stale").replace("{n}", String(Math.round(s.reader_age_s + silent / 1000)))];
  live.className = `live ${look}`;
  if (live.textContent !== text) live.textContent = text; // announced (aria-live) only when it changes
}

// ------------------------------------------------------------------------ compliance, briefing
const STATUS = (i, connected) => (!connected ? ["never", "status-never"]
  : i.missing === i.expected ? ["missing", "status-missing"]
  : i.received > 0 && i.test_only === i.received ? ["test_only", "status-test"]
  : i.late > 0 || i.missing > 0 ? ["late", "status-late"] : ["on_time", "status-ontime"]);
async function loadCompliance() {
  const report = await api("compliance");
  const body = $("#compliance-table tbody");
  body.replaceChildren();
  for (const r of report.reporters) {
    for (const i of r.indicators) {
      const [key, cls] = STATUS(i, i.connected);
      body.append(el("tr", { "data-reporter": r.reporter, "data-indicator": i.indicator, "data-status": key },
        el("td", { text: `${r.reporter} · ${state.lang === "vi" ? r.name_vi : r.name_en}` }),
        el("td", { text: i.indicator }), el("td", { text: i.period }),
        el("td", { class: cls, text: t(key) }),
        el("td", { class: "num", text: String(i.on_time) }), el("td", { class: "num", text: String(i.late) }),
        el("td", { class: "num", text: String(i.missing) }), el("td", { class: "num", text: String(i.test_only) })));
    }
  }
  const s = report.summary;
  $("#compliance-summary").textContent =
    `${s.indicators_connected} ${t("connected_of")} ${s.indicators_expected} · ${t("missing")}: ${s.indicators_missing}`;
}
async function loadBriefing() {
  const b = await api("briefing");
  $("#briefing-date").textContent = b.date;
  const body = $("#briefing-table tbody");
  body.replaceChildren(...b.items.map((i) => el("tr", { "data-indicator": i.indicator },
    el("td", { text: i.domain }), el("td", { text: state.lang === "vi" ? i.name_vi : i.name_en }),
    el("td", { class: "num", text: `${fmt(i.value)} ${i.unit}` }),
    el("td", { class: "num", text: fmt(i.same_period_last_year) }),
    el("td", { class: "num", text: i.yoy_change_pct === null ? "–" : `${fmt(i.yoy_change_pct)} %` }))));
  $("#briefing-alerts").textContent = `${t("open_alerts_by_domain")}: ` +
    (Object.entries(b.open_alerts).map(([d, n]) => `${d} ${n}`).join(" · ") || "0");
}

// ------------------------------------------------------------------------------ page furniture
function translate() {
  document.documentElement.lang = state.lang;
  for (const node of document.querySelectorAll("[data-i18n]")) node.textContent = t(node.dataset.i18n);
  drawLive();
  document.title = t("title");
  $("#lang").textContent = state.lang === "vi" ? "EN" : "VI";
  fillIndicators();
  if (state.who) $("#who").textContent = `${state.who.name} (${state.who.may_direct ? t("operator") : t("read_only")})`;
}
function fillIndicators() {
  const select = $("#indicator");
  const chosen = select.value;
  select.replaceChildren(el("option", { value: "", text: t("all_indicators") }),
    ...state.indicators.filter((i) => i.region_level !== "national").map((i) =>
      el("option", { value: i.code, text: `${state.lang === "vi" ? i.name_vi : i.name_en} (${i.code})` })));
  select.value = chosen;
}
function showTab(name) {
  for (const tab of document.querySelectorAll("[role=tab]")) {
    const on = tab.id === `tab-${name}`;
    tab.setAttribute("aria-selected", String(on));
    $(`#${tab.getAttribute("aria-controls")}`).hidden = !on;
  }
  if (name === "compliance") loadCompliance().catch(report);
  if (name === "briefing") loadBriefing().catch(report);
}
function report(error) { if (error instanceof Unauthorized) signIn(); else console.error(error); }
function signIn() {
  sessionStorage.removeItem("screen.token");
  state.token = "";
  const dialog = $("#signin");
  if (!dialog.open) dialog.showModal();
}
async function start() {
  try {
    state.who = await api("whoami");
  } catch (error) {
    if (error instanceof Unauthorized) { signIn(); return; }
    throw error;
  }
  $("#signout").hidden = false;
  const [indicators, layout] = await Promise.all([api("indicators"),
    fetch("/screen/layout.json").then((r) => r.json())]);
  state.indicators = indicators.indicators;
  state.tiles = layout.tiles;
  state.stations = layout.stations;
  translate();
  drawMap();
  await loadOverview();
  follow();
  if (!state.timers) { // once, even when start() runs again after signing in anew
    state.timers = true;
    setInterval(() => { $("#clock").textContent = when(Date.now()); drawLive(); }, 1000);
    setInterval(() => { loadOverview().catch(report); drawAlerts(null); }, 30000); // values; "… ago" ages
  }
}

document.addEventListener("DOMContentLoaded", () => {
  translate();
  $("#lang").addEventListener("click", () => {
    state.lang = state.lang === "vi" ? "en" : "vi";
    localStorage.setItem("screen.lang", state.lang);
    translate(); drawMap(); drawAlerts(null);
    if (state.region) selectRegion(state.region).catch(report);
  });
  $("#indicator").addEventListener("change", () => loadOverview().catch(report));
  $("#print").addEventListener("click", () => window.print());
  $("#signout").addEventListener("click", () => { signIn(); location.reload(); });
  for (const tab of document.querySelectorAll("[role=tab]")) {
    tab.addEventListener("click", () => showTab(tab.id.slice(4)));
  }
  $("#signin-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    state.token = $("#token").value.trim();
    try {
      state.who = await api("whoami");
    } catch {
      $("#signin-error").textContent = t("bad_token");
      return;
    }
    sessionStorage.setItem("screen.token", state.token);
    $("#signin").close();
    start().catch(report);
  });
  start().catch(report);
});
