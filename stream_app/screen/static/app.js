// The center's screen. Plain JavaScript, no library, no network beyond this server: the map, a
// national summary or a province's indicators, live alerts (server-sent events read through fetch, so the
// token travels in a header) with filters kept in the URL, attention (sound, notification, title badge),
// operators' directives through in-page dialogs, CSV exports, reporting compliance and the printable
// daily briefing. One section per feature.
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
    refused_role: "Tài khoản này không có quyền chỉ đạo.",
    refused_too_long: "Nội dung quá dài.", refused_rate: "Gửi quá nhiều yêu cầu; thử lại sau ít giây.",
    refused_unavailable: "Hệ thống tạm thời không nhận chỉ đạo; kiểm tra cảnh báo trước khi gửi lại.",
    refused_other: "Yêu cầu không hợp lệ.", cancel: "Huỷ", confirm: "Xác nhận", send: "Gửi",
    close_confirm: "Đóng xử lý cảnh báo này?", escalate_note: "Ghi chú (không bắt buộc):",
    escalated_by: "Đã báo cáo lên bởi", all_regions: "Toàn quốc", region: "Tỉnh, thành phố",
    level: "Mức", all_levels: "Mọi mức", all_reporters: "Mọi đơn vị", unacknowledged: "Chưa tiếp nhận",
    filters: "Bộ lọc", export_csv: "Xuất CSV", attention_off: "Âm báo: tắt", attention_on: "Âm báo: bật",
    attention_from: "Báo từ mức", summary_title: "Tổng quan toàn quốc", by_level: "Cảnh báo đang mở theo mức",
    by_domain: "Theo lĩnh vực", worst_provinces: "Các tỉnh, thành phố cảnh báo cao nhất",
    compliance_today: "Tuân thủ báo cáo", back_to_summary: "← Tổng quan toàn quốc", alerts_word: "cảnh báo",
    new_alert: "Cảnh báo mới", on_time_count: "đúng hạn", late_count: "muộn", missing_count: "thiếu",
    domain_administration: "Hành chính", domain_disaster: "Thiên tai", domain_education: "Giáo dục",
    domain_energy: "Năng lượng", domain_environment: "Môi trường", domain_finance: "Tài chính",
    domain_health: "Y tế", domain_justice: "Tư pháp", domain_social_security: "An sinh xã hội",
    domain_socio_economic: "Kinh tế - xã hội", domain_traffic: "Giao thông", domain_transport: "Vận tải",
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
    refused_role: "This account may not direct.",
    refused_too_long: "The text is too long.", refused_rate: "Too many requests; try again in a few seconds.",
    refused_unavailable: "The system is not taking directives now; check the alert before sending again.",
    refused_other: "The request was not valid.", cancel: "Cancel", confirm: "Confirm", send: "Send",
    close_confirm: "Close the handling of this alert?", escalate_note: "Note (optional):",
    escalated_by: "Escalated by", all_regions: "Whole country", region: "Province",
    level: "Level", all_levels: "All levels", all_reporters: "All reporters", unacknowledged: "Unacknowledged",
    filters: "Filters", export_csv: "Export CSV", attention_off: "Sound: off", attention_on: "Sound: on",
    attention_from: "Alert from level", summary_title: "National summary", by_level: "Open alerts by level",
    by_domain: "By domain", worst_provinces: "Provinces most in alarm",
    compliance_today: "Reporting compliance", back_to_summary: "← National summary", alerts_word: "alerts",
    new_alert: "New alert", on_time_count: "on time", late_count: "late", missing_count: "missing",
    domain_administration: "Administration", domain_disaster: "Disasters", domain_education: "Education",
    domain_energy: "Energy", domain_environment: "Environment", domain_finance: "Finance",
    domain_health: "Health", domain_justice: "Justice", domain_social_security: "Social security",
    domain_socio_economic: "Socio-economy", domain_traffic: "Traffic", domain_transport: "Transport",
  },
};

const state = {
  lang: localStorage.getItem("screen.lang") || "vi",
  token: sessionStorage.getItem("screen.token") || "",
  who: null, indicators: [], tiles: [], stations: {}, alerts: new Map(), overview: null, compliance: null,
  filters: null, // what the alert list and the map show, as the URL says (readFilters)
  refused: new Map(), // alert key -> {code, action, detail}: the operator's last directive about it, refused
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
  if (!response.ok) {
    throw Object.assign(new Error(body.detail || response.statusText),
      { reason: body.reason, error: body.error, status: response.status });
  }
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
const domainName = (code) => (TEXT[state.lang][`domain_${code}`] ?? code);
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

// --------------------------------------------------------------------------------------- filters
// One view, in the URL's query string (?indicator=…&region=…&level=…&reporter=…&unack=1): a link shows
// the same alerts and map. The region is also the province whose panel fills the middle.
const LEVELS = [1, 2, 3, 4, 5];
function readFilters(search = location.search) {
  const q = new URLSearchParams(search);
  return { indicator: q.get("indicator") || "", region: q.get("region") || "",
    level: Number(q.get("level")) || 0, reporter: q.get("reporter") || "", unack: q.get("unack") === "1" };
}
function filtersQuery(f) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(f)) if (v) q.set(k, v === true ? "1" : String(v));
  return q.toString();
}
function shown(a, f = state.filters) { // whether an alert passes the filters
  return (!f.indicator || a.indicator === f.indicator) && (!f.region || a.region === f.region)
    && (!f.level || a.level >= f.level) && (!f.reporter || a.reporter === f.reporter)
    && (!f.unack || !a.acknowledged_by);
}
function setFilters(changes) {
  const before = state.filters;
  state.filters = { ...before, ...changes };
  const query = filtersQuery(state.filters);
  history.replaceState(null, "", query ? `?${query}` : location.pathname);
  syncFilterControls();
  if (before.indicator !== state.filters.indicator) loadOverview().catch(report);
  if (before.region !== state.filters.region) showMiddle();
  drawAlerts(null);
  drawMap();
}
function fillFilterControls() { // the choices, in the page's language
  const region = $("#f-region");
  region.replaceChildren(el("option", { value: "", text: t("all_regions") }),
    ...[...state.tiles].sort((x, y) => x.name.localeCompare(y.name, "vi"))
      .map((tile) => el("option", { value: tile.region, text: tile.name })));
  $("#f-level").replaceChildren(el("option", { value: "0", text: t("all_levels") }),
    ...LEVELS.map((n) => el("option", { value: String(n), text: `≥ ${n}` })));
  const reporters = [...new Set(state.indicators.flatMap((i) => i.reporters || []))].sort();
  $("#f-reporter").replaceChildren(el("option", { value: "", text: t("all_reporters") }),
    ...reporters.map((r) => el("option", { value: r, text: r })));
  syncFilterControls();
}
function syncFilterControls() {
  const f = state.filters;
  $("#indicator").value = f.indicator;
  $("#f-region").value = f.region;
  $("#f-level").value = String(f.level);
  $("#f-reporter").value = f.reporter;
  $("#f-unack").checked = f.unack;
}
function bindFilters() {
  $("#indicator").addEventListener("change", (e) => setFilters({ indicator: e.target.value }));
  $("#f-region").addEventListener("change", (e) => setFilters({ region: e.target.value }));
  $("#f-level").addEventListener("change", (e) => setFilters({ level: Number(e.target.value) }));
  $("#f-reporter").addEventListener("change", (e) => setFilters({ reporter: e.target.value }));
  $("#f-unack").addEventListener("change", (e) => setFilters({ unack: e.target.checked }));
}

// ------------------------------------------------------------------------------------------ map
function worstAlerts() { // region -> its worst open alert the filters show (every region), in one pass
  const view = { ...state.filters, region: "" };
  const worst = new Map();
  for (const a of state.alerts.values()) {
    if (!shown(a, view)) continue;
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
      el("span", { class: "name", text: tile.name }), el("span", { class: "val" }), el("span", { class: "lvl" }));
      button.addEventListener("click", () => chooseRegion(tile.region));
      tiles.set(tile.region, button);
      map.append(button);
    }
    const alert = worst.get(tile.region);
    const value = latest.get(tile.region);
    const colour = alert ? alert.colour : "";
    button.dataset.levelCode = alert ? alert.level_code : "";
    button.setAttribute("aria-pressed", String(state.filters.region === tile.region));
    // the level in words, not colour alone (WCAG 1.4.1): on the tile and in its name
    button.title = alert ? `${tile.name}: ${levelName(alert)}` : tile.name;
    button.setAttribute("aria-label", button.title);
    button.style.backgroundColor = colour;
    button.style.borderColor = colour;
    button.style.color = colour ? textOn(colour) : "";
    button.querySelector(".val").textContent = value ? fmt(value.value) : "";
    button.querySelector(".lvl").textContent = alert ? levelName(alert) : "";
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
  const code = state.filters.indicator;
  const asked = ++overviews;
  const answer = await api(`overview${code ? `?indicator=${encodeURIComponent(code)}` : ""}`);
  if (asked !== overviews) return; // a newer question was asked meanwhile
  state.overview = answer;
  drawMap();
}

// ------------------------------------------------------------------- the middle: summary or province
function chooseRegion(code) { setFilters({ region: code }); }
function showMiddle() {
  if (state.filters.region) selectRegion(state.filters.region).catch(report);
  else drawSummary();
}
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
function backToSummary() {
  const button = el("button", { type: "button", class: "back", text: t("back_to_summary") });
  button.addEventListener("click", () => setFilters({ region: "" }));
  return button;
}
async function selectRegion(code) {
  const detail = await api(`region?region=${encodeURIComponent(code)}`);
  if (state.filters.region !== code) return;
  const box = $("#detail");
  box.dataset.view = "region";
  box.replaceChildren(backToSummary(), el("h2", { text: detail.name }));
  if (!detail.series.length) box.append(el("p", { class: "hint", text: t("no_data") }));
  for (const s of detail.series) {
    const name = state.lang === "vi" ? s.name_vi : s.name_en;
    box.append(el("div", { class: "series", "data-indicator": s.indicator, "data-station": s.station || "" },
      el("div", {}, el("strong", { text: name }), el("small", { text: s.station_name || "" })),
      el("div", {}, el("span", { class: "big", text: fmt(s.value) }), ` ${s.unit}`,
        el("small", { text: `${t("latest")}: ${s.event_time.replace("T", " ").slice(0, 16)}` })),
      sparkline(s.last_30_days),
      el("div", {}, el("span", { text: `${t("period_to_date")} ${s.period}: ${fmt(s.period_to_date)}` }),
        el("small", { text: `${t("last_year")}: ${fmt(s.same_period_last_year)}` })),
      chartSlot(s)));
  }
  loadCharts(code, detail.series).catch(report);
}
function summaryOf(alerts) { // open alerts by level and domain, and the provinces most in alarm
  const byLevel = new Map(), byDomain = new Map(), byRegion = new Map();
  for (const a of alerts) {
    const lv = byLevel.get(a.level_code) || { alert: a, count: 0 };
    lv.count += 1;
    byLevel.set(a.level_code, lv);
    byDomain.set(a.domain, (byDomain.get(a.domain) || 0) + 1);
    const r = byRegion.get(a.region) || { region: a.region, worst: a, count: 0 };
    r.count += 1;
    if (a.level > r.worst.level) r.worst = a;
    byRegion.set(a.region, r);
  }
  return {
    levels: [...byLevel.values()].sort((x, y) => y.alert.level - x.alert.level || y.count - x.count),
    domains: [...byDomain.entries()].sort((x, y) => y[1] - x[1]),
    regions: [...byRegion.values()].sort((x, y) => y.worst.level - x.worst.level || y.count - x.count).slice(0, 5),
  };
}
function drawSummary() {
  const box = $("#detail");
  if (state.filters.region) return;
  const s = summaryOf([...state.alerts.values()].filter((a) => shown(a)));
  box.dataset.view = "summary";
  const chip = (a, text) => el("li", { class: "chip", "data-level-code": a.level_code,
    style: { backgroundColor: a.colour, color: textOn(a.colour) }, text });
  const regions = el("ol", { class: "worst" }, ...s.regions.map((r) => {
    const button = el("button", { type: "button", "data-region": r.region,
      text: `${regionName(r.region)} · ${levelName(r.worst)} · ${r.count} ${t("alerts_word")}` });
    button.addEventListener("click", () => chooseRegion(r.region));
    return el("li", {}, button);
  }));
  const c = state.compliance && state.compliance.summary;
  const totals = state.compliance ? state.compliance.reporters.flatMap((r) => r.indicators)
    .reduce((n, i) => ({ on: n.on + i.on_time, late: n.late + i.late, missing: n.missing + i.missing }),
      { on: 0, late: 0, missing: 0 }) : null;
  box.replaceChildren(el("h2", { text: t("summary_title") }),
    el("h3", { text: t("by_level") }),
    s.levels.length ? el("ul", { class: "chips", id: "summary-levels" },
      ...s.levels.map((lv) => chip(lv.alert, `${levelName(lv.alert)}: ${lv.count}`)))
      : el("p", { class: "hint", text: t("no_alerts") }),
    el("h3", { text: t("by_domain") }),
    el("p", { id: "summary-domains", text: s.domains.map(([d, n]) => `${domainName(d)} ${n}`).join(" · ") || "0" }),
    el("h3", { text: t("worst_provinces") }), regions,
    el("h3", { text: t("compliance_today") }),
    el("p", { id: "summary-compliance", text: c ? `${c.indicators_connected} ${t("connected_of")} ${
      c.indicators_expected} · ${totals.on} ${t("on_time_count")} · ${totals.late} ${t("late_count")} · ${
      totals.missing} ${t("missing_count")}` : "–" }));
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
  if (a.escalated) {
    item.append(el("div", { class: "ack escalated", text: `${t("escalated_by")} ${a.escalated.by} ${t("at")} ${when(a.escalated.at)}` }));
  }
  if (a.assigned_to) item.append(el("div", { class: "ack", text: `${t("assigned_to")}: ${a.assigned_to}` }));
  if (a.comment) item.append(el("div", { class: "ack", text: `${t("comment")}: ${a.comment}` }));
  if (a.event_type === "CLOSE") item.append(el("div", { class: "ack", text: t("handled_closed") }));
  const refusal = state.refused.get(a.alert_key);
  if (refusal) {
    item.append(el("div", { class: "refused", role: "alert", "data-reason": refusal.code },
      `${t("refused")} (${t(refusal.action)}): ${t(refusal.code)}`,
      refusal.detail ? el("small", { text: refusal.detail }) : null));
  }
  if (state.who && state.who.may_direct) {
    const actions = el("div", { class: "actions" });
    for (const action of ["ACKNOWLEDGE", "ASSIGN", "COMMENT", "ESCALATE", "CLOSE"]) {
      const button = el("button", { type: "button", "data-action": action, text: t(action) });
      button.addEventListener("click", () => direct(a, action, button).catch(report));
      actions.append(button);
    }
    item.append(actions);
  }
  return item;
}
function visibleAlerts() {
  return [...state.alerts.values()].filter((a) => shown(a))
    .sort((x, y) => y.level - x.level || y.event_time - x.event_time);
}
function drawAlerts(fresh) {
  const list = $("#alerts");
  const focused = document.activeElement && list.contains(document.activeElement)
    ? [document.activeElement.closest("li")?.dataset.alertKey, document.activeElement.dataset.action] : null;
  const sorted = visibleAlerts();
  list.replaceChildren(...sorted.map((a) => alertItem(a, fresh && fresh.has(a.alert_key))));
  if (!sorted.length) list.append(el("li", { class: "hint", text: t("no_alerts") }));
  $("#alert-count").textContent = sorted.length === state.alerts.size ? String(sorted.length)
    : `${sorted.length}/${state.alerts.size}`;
  if (focused) { // a keyboard user keeps their place across a redraw
    const again = list.querySelector(`li[data-alert-key="${CSS.escape(focused[0] || "")}"] button[data-action="${focused[1]}"]`);
    if (again) again.focus();
  }
  drawBadge();
  if (!state.filters.region) drawSummary();
}
function applyAlert(a) {
  const known = state.alerts.get(a.alert_key);
  if (known && known.processing_time > a.processing_time) return; // an older change, after the snapshot
  // a directive's record is timed when it was issued: the alert's level has held since its last transition
  a.since = (a.event_type || "TRANSITION") === "TRANSITION" ? a.event_time
    : (known && known.since) || a.since || a.event_time;
  // an escalation is the change of one record: the page carries it on the occurrence's later changes
  if (a.event_type === "ESCALATE") a.escalated = { by: (a.detail || "").replace(/^escalate by /, ""), at: a.event_time };
  else if (known && known.escalated && !isNewAlarm(a)) a.escalated = known.escalated;
  if (a.transition === "RESOLVED" && (a.event_type || "TRANSITION") === "TRANSITION") state.alerts.delete(a.alert_key);
  else state.alerts.set(a.alert_key, a);
  if (isNewAlarm(a)) { announce(a); attend(a); }
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
  recallEscalations().catch(report); // from the timeline (timeline.js)
}

// ---------------------------------------------------------------------- attention: sound, notification
// Muted by default (a wall screen must not beep at whoever walks by); one click enables both, remembered
// in this browser. A page opened with it on beeps once the browser allows sound (after a click, or
// always with chromium's --autoplay-policy=no-user-gesture-required on a wall screen).
const attention = {
  on: localStorage.getItem("screen.attention") === "on",
  min: Number(localStorage.getItem("screen.attention.level")) || 3,
  audio: null,
};
const isNewAlarm = (a) => (a.event_type || "TRANSITION") === "TRANSITION"
  && (a.transition === "FIRING" || a.transition === "ESCALATED");
function attend(a) {
  if (!attention.on || a.level < attention.min) return;
  beep(a.level);
  notify(a);
}
function beep(level) { // two falling tones, repeated once per level above the threshold
  try {
    attention.audio = attention.audio || new AudioContext();
    const ctx = attention.audio;
    ctx.resume().catch(() => {});
    const repeats = Math.min(3, 1 + level - attention.min);
    for (let i = 0; i < repeats * 2; i++) {
      const osc = ctx.createOscillator(), gain = ctx.createGain();
      const at = ctx.currentTime + i * 0.18;
      osc.frequency.value = i % 2 ? 660 : 880;
      gain.gain.setValueAtTime(0.0001, at);
      gain.gain.exponentialRampToValueAtTime(0.25, at + 0.02);
      gain.gain.exponentialRampToValueAtTime(0.0001, at + 0.16);
      osc.connect(gain).connect(ctx.destination);
      osc.start(at);
      osc.stop(at + 0.17);
    }
  } catch (error) { console.warn("no sound", error); }
}
function notify(a) {
  if (!("Notification" in window) || Notification.permission !== "granted") return;
  const where = a.station ? `${regionName(a.region)} · ${state.stations[a.station] || a.station}` : regionName(a.region);
  new Notification(`${levelName(a)} · ${where}`, { // eslint-disable-line no-new
    body: `${indicatorName(a.indicator)}: ${fmt(a.value)}`, tag: a.alert_key, lang: state.lang,
    requireInteraction: a.level >= attention.min + 1 });
}
async function toggleAttention() {
  attention.on = !attention.on;
  localStorage.setItem("screen.attention", attention.on ? "on" : "off");
  drawAttention();
  if (!attention.on) return;
  attention.audio = attention.audio || new AudioContext(); // created on a click: allowed to sound
  await attention.audio.resume();
  if ("Notification" in window && Notification.permission === "default") await Notification.requestPermission();
}
function drawAttention() {
  const button = $("#attention");
  button.textContent = t(attention.on ? "attention_on" : "attention_off");
  button.setAttribute("aria-pressed", String(attention.on));
  const select = $("#attention-level");
  select.replaceChildren(...LEVELS.map((n) => el("option", { value: String(n), text: `≥ ${n}` })));
  select.value = String(attention.min);
}
function bindAttention() {
  $("#attention").addEventListener("click", () => toggleAttention().catch(report));
  $("#attention-level").addEventListener("change", (e) => {
    attention.min = Number(e.target.value);
    localStorage.setItem("screen.attention.level", String(attention.min));
  });
}
function drawBadge() { // "(3) …": the unacknowledged alerts, seen from another tab or window
  let n = 0;
  for (const a of state.alerts.values()) if (!a.acknowledged_by) n += 1;
  document.title = n ? `(${n}) ${t("title")}` : t("title");
}
function announce(a) { // the screen reader hears each new alert once, never the list redrawn
  const box = $("#announcer");
  box.append(el("p", { text: `${t("new_alert")}: ${levelName(a)}, ${regionName(a.region)}, ${
    indicatorName(a.indicator)} ${fmt(a.value)}` }));
  while (box.childElementCount > 3) box.firstElementChild.remove();
}

// ------------------------------------------------------------------------------------- directives
const FIELDS = { // what each action asks in its dialog (none: sent at once)
  ASSIGN: { name: "assignee", prompt: "assignee_prompt", required: true, multiline: false },
  COMMENT: { name: "comment", prompt: "comment_prompt", required: true, multiline: true },
  ESCALATE: { name: "comment", prompt: "escalate_note", required: false, multiline: true },
  CLOSE: { confirm: "close_confirm" },
};
function ask(alert, action, opener) { // the dialog's answer: the body's extra fields, or null (cancelled)
  const spec = FIELDS[action];
  if (!spec) return Promise.resolve({});
  const dialog = $("#directive");
  const form = $("#directive-form");
  $("#directive-title").textContent = t(action);
  $("#directive-about").textContent = `${levelName(alert)} · ${regionName(alert.region)} · ${indicatorName(alert.indicator)}`;
  const slot = $("#directive-field");
  let field = null;
  if (spec.name) {
    field = el(spec.multiline ? "textarea" : "input", { id: "directive-input", name: spec.name,
      required: spec.required, rows: spec.multiline ? "4" : null, autocomplete: "off" });
    slot.replaceChildren(el("label", {}, el("span", { text: t(spec.prompt) }), field));
  } else {
    slot.replaceChildren(el("p", { text: t(spec.confirm) }));
  }
  $("#directive-ok").textContent = t(spec.name ? "send" : "confirm");
  $("#directive-cancel").textContent = t("cancel");
  dialog.returnValue = "";
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => {
      // focus goes back to the button that opened it (drawn anew if the list was redrawn meanwhile)
      const again = opener.isConnected ? opener : $("#alerts").querySelector(
        `li[data-alert-key="${CSS.escape(alert.alert_key)}"] button[data-action="${action}"]`);
      if (again) again.focus();
      const value = field ? field.value.trim() : "";
      if (dialog.returnValue !== "ok") resolve(null);
      else resolve(spec.name && value ? { [spec.name]: value } : {});
    }, { once: true });
    form.reset();
    dialog.showModal();
    (field || $("#directive-cancel")).focus(); // a confirmation starts on Cancel: Enter does no harm
  });
}
function refusalOf(error) { // the page's words for why the workers (or the screen) refused a directive
  if (error.reason === "stale_alert") return "stale_alert";
  if (error.status === 403) return "refused_role";
  if (error.status === 413 || / longer than /.test(error.message)) return "refused_too_long";
  if (error.status === 429) return "refused_rate";
  if (error.status === 503) return "refused_unavailable";
  return "refused_other";
}
async function direct(alert, action, button) {
  const extra = await ask(alert, action, button);
  if (extra === null) return;
  const body = { action, alert_id: alert.alert_id, ...extra };
  button.disabled = true;
  try {
    await api(`alerts/${encodeURIComponent(alert.alert_key)}/directives`, {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
    state.refused.delete(alert.alert_key);
    redraw(null);
  } catch (error) {
    if (error instanceof Unauthorized) throw error;
    button.disabled = false;
    state.refused.set(alert.alert_key, { code: refusalOf(error), action, detail: error.message });
    if (error.reason === "stale_alert") { // about an earlier occurrence: say so on the alert, show the new one
      await loadAlerts().catch(() => redraw(alert.alert_key));
    } else redraw(alert.alert_key);
  }
}

// ------------------------------------------------------------------------------------ live stream
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

// ------------------------------------------------------------------------------------------ CSV
// Made in the page from what it shows (no server round trip): UTF-8 with a BOM (Excel reads Vietnamese),
// a text that a spreadsheet would take for a formula is quoted with a leading apostrophe.
function csvCell(value) {
  if (value === null || value === undefined) return "";
  if (typeof value === "number") return String(value);
  let text = String(value);
  if (/^[=+\-@\t\r]/.test(text)) text = `'${text}`;
  return /[",\n\r;]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}
const csv = (header, rows) => [header, ...rows].map((row) => row.map(csvCell).join(",")).join("\r\n") + "\r\n";
const isoTime = (ms) => (ms ? new Date(ms).toISOString() : "");
function download(name, text) {
  const url = URL.createObjectURL(new Blob(["\ufeff", text], { type: "text/csv;charset=utf-8" }));
  const link = el("a", { href: url, download: name, hidden: true });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}
const stamp = () => new Date().toISOString().slice(0, 16).replace(/[-:]/g, "").replace("T", "-");
function exportAlerts() {
  const header = ["alert_key", "level", "level_code", "level_name", "domain", "indicator", "indicator_name",
    "region", "region_name", "station", "value", "since", "reporter", "acknowledged_by", "acknowledged_at",
    "assigned_to", "comment", "last_change"];
  const rows = visibleAlerts().map((a) => [a.alert_key, a.level, a.level_code, levelName(a), a.domain,
    a.indicator, indicatorName(a.indicator), a.region, regionName(a.region), a.station || "", a.value,
    isoTime(a.since || a.event_time), a.reporter, a.acknowledged_by || "", isoTime(a.acknowledged_at),
    a.assigned_to || "", a.comment || "", a.event_type || a.transition]);
  download(`alerts-${stamp()}.csv`, csv(header, rows));
}
function exportCompliance() {
  if (!state.compliance) return;
  const header = ["reporter", "reporter_name", "indicator", "period", "expected", "received", "on_time", "late",
    "missing", "test_only", "connected"];
  const rows = state.compliance.reporters.flatMap((r) => r.indicators.map((i) => [r.reporter,
    state.lang === "vi" ? r.name_vi : r.name_en, i.indicator, i.period, i.expected, i.received, i.on_time,
    i.late, i.missing, i.test_only, i.connected ? "yes" : "no"]));
  download(`compliance-${stamp()}.csv`, csv(header, rows));
}

// ------------------------------------------------------------------- charts: a series' year, and its CSV
// Each series of the province panel: its last year of periods against the same periods the year before
// (GET /api/v1/history), drawn here as inline SVG (no library, nothing fetched but the data), with the
// regulation levels it is judged by; a <title>, a <desc> and a visually hidden table say it in words.
// "Xuất CSV" under a chart downloads that series as the chart has it.
const CHART_TEXT = {
  vi: {
    chart_title: "Một năm gần nhất so với cùng kỳ năm trước", past_year: "Năm gần nhất",
    chart_period: "Kỳ báo cáo", chart_latest: "Kỳ gần nhất", chart_highest: "Cao nhất trong năm",
    chart_levels: "Ngưỡng", chart_no_values: "Chưa có số liệu trong năm.", chart_unavailable: "Không tải được biểu đồ.",
    export_series: "Xuất CSV chuỗi số liệu",
  },
  en: {
    chart_title: "The past year against the same periods the year before", past_year: "Past year",
    chart_period: "Reporting period", chart_latest: "Latest period", chart_highest: "Highest in the year",
    chart_levels: "Levels", chart_no_values: "No values in the year.", chart_unavailable: "The chart could not be loaded.",
    export_series: "Export the series as CSV",
  },
};
for (const lang of Object.keys(CHART_TEXT)) Object.assign(TEXT[lang], CHART_TEXT[lang]);
const SVG_NS = "http://www.w3.org/2000/svg";
const CHART = { width: 480, height: 190, left: 50, right: 46, top: 22, bottom: 36 }; // viewBox units
const CHART_FETCHES = 4; // a panel's charts asked a few at a time: the token's requests in flight are few
const MONTHS_EN = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
const seriesKey = (s) => `${s.indicator}|${s.station || ""}`;
let chartRound = 0; // the panel drawn last: answers for an earlier one are dropped
function chartSlot(s) {
  return el("figure", { class: "chart", "data-chart": seriesKey(s) }, el("p", { class: "hint", text: "…" }));
}
async function loadCharts(region, series) {
  const round = ++chartRound;
  const queue = [...series];
  const worker = async () => {
    for (let s = queue.shift(); s; s = queue.shift()) {
      const query = new URLSearchParams({ indicator: s.indicator, region });
      if (s.station) query.set("station", s.station);
      let answer = null, missing = "chart_unavailable";
      try {
        answer = await api(`history?${query}`);
      } catch (error) {
        if (error instanceof Unauthorized) throw error;
        if (error.status === 404) missing = "chart_no_values"; // nothing in the two years kept
      }
      if (round !== chartRound || state.filters.region !== region) return;
      const slot = $("#detail").querySelector(`figure.chart[data-chart="${CSS.escape(seriesKey(s))}"]`);
      if (!slot) continue;
      slot.replaceChildren(...(answer ? chartOf(answer, s) : [el("p", { class: "hint", text: t(missing) })]));
    }
  };
  await Promise.all(Array.from({ length: CHART_FETCHES }, worker));
}
function periodShort(label) { // 2025-08 -> "T8/25" | "Aug 25"; 2025-Q3 -> "Q3/25"; 2025-08-20 -> "20/8"
  const yy = label.slice(2, 4);
  if (/^\d{4}-\d{2}$/.test(label)) {
    const m = Number(label.slice(5, 7));
    return state.lang === "vi" ? `T${m}/${yy}` : `${MONTHS_EN[m - 1]} ${yy}`;
  }
  if (/^\d{4}-[QH]\d$/.test(label)) return `${label.slice(5)}/${yy}`;
  if (/^\d{4}-\d{2}-\d{2}$/.test(label)) return `${Number(label.slice(8))}/${Number(label.slice(5, 7))}`;
  return label;
}
function svgEl(tag, attrs = {}, text = null) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) if (v !== null && v !== undefined) node.setAttribute(k, String(v));
  if (text !== null) node.textContent = text;
  return node;
}
function chartLevels(levels, values) { // the alarm levels worth a line: those reached, and the next one
  const alarms = levels.filter((lv) => lv.index > 0).sort((a, b) => a.lower - b.lower);
  const top = values.length ? Math.max(...values) : -Infinity;
  const next = alarms.find((lv) => lv.lower > top);
  return alarms.filter((lv) => lv.lower <= top || lv === next);
}
function chartScale(h, values, lines) { // the value axis: round ticks around the values, the level lines, 0 for sums
  const all = [...values, ...lines.map((lv) => lv.lower)];
  if (h.aggregation === "sum") all.push(0);
  let lo = Math.min(...all), hi = Math.max(...all);
  if (!Number.isFinite(lo)) [lo, hi] = [0, 1];
  if (lo === hi) { lo -= Math.abs(lo) / 10 || 1; hi += Math.abs(hi) / 10 || 1; }
  const rough = (hi - lo) / 4, power = 10 ** Math.floor(Math.log10(rough));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * power).find((m) => m >= rough);
  const ticks = [];
  for (let v = Math.floor(lo / step) * step; v < hi + step * 0.999; v += step) ticks.push(Number(v.toPrecision(12)));
  return ticks;
}
const pct = (v) => (v === null || v === undefined ? "–" : `${v > 0 ? "+" : ""}${fmt(v)} %`);
function chartWords(h, name, lines) { // the chart said in a sentence or two (its <desc>)
  const known = h.periods.filter((p) => p.value !== null);
  if (!known.length) return t("chart_no_values");
  const latest = known[known.length - 1];
  const highest = known.reduce((a, b) => (b.value > a.value ? b : a));
  const parts = [`${t("chart_latest")} ${periodShort(latest.period)}: ${fmt(latest.value)} ${h.unit}; ${
    t("last_year").toLowerCase()}: ${fmt(latest.same_period_last_year)} ${h.unit} (${pct(latest.yoy_change_pct)}).`,
  `${t("chart_highest")}: ${fmt(highest.value)} ${h.unit} (${periodShort(highest.period)}).`];
  if (lines.length) {
    parts.push(`${t("chart_levels")}: ${lines.map((lv) => `${state.lang === "vi" ? lv.name_vi : lv.name_en} ${
      fmt(lv.lower)} ${h.unit}`).join(", ")}.`);
  }
  return `${name}. ${parts.join(" ")}`;
}
function chartOf(h, s) { // [the SVG, its legend, its table for screen readers, the CSV button]
  const name = state.lang === "vi" ? s.name_vi : s.name_en;
  const periods = h.periods;
  const now = periods.map((p) => p.value), before = periods.map((p) => p.same_period_last_year);
  const values = [...now, ...before].filter((v) => v !== null);
  const lines = chartLevels(h.levels || [], values);
  const ticks = chartScale(h, values, lines);
  const [lo, hi] = [ticks[0], ticks[ticks.length - 1]];
  const { width, height, left, right, top, bottom } = CHART;
  const plotW = width - left - right, plotH = height - top - bottom;
  const x = (i) => left + (periods.length === 1 ? plotW / 2 : (i * plotW) / (periods.length - 1));
  const y = (v) => top + plotH - ((v - lo) / (hi - lo)) * plotH;
  const id = `chart-${seriesKey(s).replace(/[^A-Za-z0-9]/g, "-")}`;
  const title = `${name}${s.station_name ? ` · ${s.station_name}` : ""}: ${t("chart_title")}`;
  const svg = svgEl("svg", { class: "year-chart", viewBox: `0 0 ${width} ${height}`, role: "img",
    "aria-labelledby": `${id}-title ${id}-desc`, "data-periods": periods.length,
    "data-frequency": h.frequency });
  svg.append(svgEl("title", { id: `${id}-title` }, title), svgEl("desc", { id: `${id}-desc` }, chartWords(h, name, lines)));
  for (const v of ticks) { // the value axis: its ticks and their grid lines
    svg.append(svgEl("line", { class: "grid", x1: left, x2: width - right, y1: y(v), y2: y(v) }),
      svgEl("text", { class: "tick", x: left - 5, y: y(v) + 4, "text-anchor": "end" }, fmt(v)));
  }
  svg.append(svgEl("text", { class: "axis", x: 4, y: 2, "dominant-baseline": "hanging" }, h.unit));
  const every = Math.ceil(periods.length / 6);
  periods.forEach((p, i) => { // the period axis: at most 6 labels, the latest period's always
    if ((periods.length - 1 - i) % every) return;
    svg.append(svgEl("text", { class: "tick", x: x(i), y: height - bottom + 15, "text-anchor": "middle" },
      periodShort(p.period)));
  });
  svg.append(svgEl("text", { class: "axis", x: left + plotW / 2, y: height - 3, "text-anchor": "middle" },
    t("chart_period")));
  for (const lv of lines) { // a regulation level: a dashed line in its colour, named at its end
    svg.append(svgEl("line", { class: "level", x1: left, x2: width - right, y1: y(lv.lower), y2: y(lv.lower),
      stroke: lv.colour, "data-level-code": lv.code }),
    svgEl("text", { class: "level-name", x: width - right + 4, y: y(lv.lower) + 4, fill: lv.colour }, lv.code));
  }
  const path = (series) => { // a line broken where a period has no value
    let d = "", open = false;
    series.forEach((v, i) => {
      if (v === null) { open = false; return; }
      d += `${open ? "L" : "M"}${x(i).toFixed(1)},${y(v).toFixed(1)}`;
      open = true;
    });
    return d;
  };
  svg.append(svgEl("path", { class: "before", d: path(before) }), svgEl("path", { class: "now", d: path(now) }));
  periods.forEach((p, i) => {
    const said = `${periodShort(p.period)}: ${fmt(p.value)} ${h.unit} · ${t("last_year")} ${periodShort(p.last_year_period)}: ${
      fmt(p.same_period_last_year)}`;
    if (before[i] !== null) svg.append(svgEl("circle", { class: "pt before", cx: x(i), cy: y(before[i]), r: 2.5 }));
    if (now[i] !== null) {
      const dot = svgEl("circle", { class: "pt now", cx: x(i), cy: y(now[i]), r: 3.5, "data-period": p.period });
      dot.append(svgEl("title", {}, said));
      svg.append(dot);
    }
  });
  const legend = el("p", { class: "chart-legend", "aria-hidden": "true" },
    el("span", { class: "key now", text: t("past_year") }), " ",
    el("span", { class: "key before", text: t("last_year") }));
  const table = el("table", { class: "visually-hidden" }, el("caption", { text: title }),
    el("thead", {}, el("tr", {}, ...[t("period"), `${t("value")} (${h.unit})`, t("last_year"), t("change")]
      .map((text) => el("th", { scope: "col", text })))),
    el("tbody", {}, ...periods.map((p) => el("tr", {}, el("th", { scope: "row", text: p.period }),
      el("td", { text: fmt(p.value) }), el("td", { text: fmt(p.same_period_last_year) }),
      el("td", { text: pct(p.yoy_change_pct) })))));
  const button = el("button", { type: "button", class: "export-series", "aria-label": `${t("export_series")}: ${title}`,
    text: t("export_csv") });
  button.addEventListener("click", () => exportSeries(h, s));
  return [svg, el("div", { class: "chart-foot" }, legend, button), table];
}
function exportSeries(h, s) { // the series as its chart has it, one row per period
  const header = ["indicator", "indicator_name", "region", "region_name", "station", "station_name", "unit",
    "frequency", "period", "start", "end", "status", "value", "count", "quality", "last_year_period",
    "same_period_last_year", "yoy_change_pct"];
  const rows = h.periods.map((p) => [h.indicator, state.lang === "vi" ? s.name_vi : s.name_en, h.region,
    regionName(h.region), h.station || "", s.station_name || "", h.unit, h.frequency, p.period, p.start, p.end,
    p.status, p.value, p.count, p.quality || "", p.last_year_period, p.same_period_last_year, p.yoy_change_pct]);
  const where = [h.region, h.station].filter(Boolean).join("-");
  download(`series-${h.indicator}-${where}-${stamp()}.csv`, csv(header, rows));
}

// ------------------------------------------------------------------------ compliance, briefing
const STATUS = (i, connected) => (!connected ? ["never", "status-never"]
  : i.missing === i.expected ? ["missing", "status-missing"]
  : i.received > 0 && i.test_only === i.received ? ["test_only", "status-test"]
  : i.late > 0 || i.missing > 0 ? ["late", "status-late"] : ["on_time", "status-ontime"]);
async function fetchCompliance() {
  state.compliance = await api("compliance");
  if (!state.filters.region) drawSummary();
  return state.compliance;
}
async function loadCompliance() {
  const report = await fetchCompliance();
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
    el("td", { text: domainName(i.domain) }), el("td", { text: state.lang === "vi" ? i.name_vi : i.name_en }),
    el("td", { class: "num", text: `${fmt(i.value)} ${i.unit}` }),
    el("td", { class: "num", text: fmt(i.same_period_last_year) }),
    el("td", { class: "num", text: i.yoy_change_pct === null ? "–" : `${fmt(i.yoy_change_pct)} %` }))));
  $("#briefing-alerts").textContent = `${t("open_alerts_by_domain")}: ` +
    (Object.entries(b.open_alerts).map(([d, n]) => `${domainName(d)} ${n}`).join(" · ") || "0");
}

// ------------------------------------------------------------------------------ page furniture
function translate() {
  document.documentElement.lang = state.lang;
  for (const node of document.querySelectorAll("[data-i18n]")) node.textContent = t(node.dataset.i18n);
  drawLive();
  drawBadge(); // the title, with the count of unacknowledged alerts
  $("#lang").textContent = state.lang === "vi" ? "EN" : "VI";
  fillIndicators();
  if (state.tiles.length) fillFilterControls();
  drawAttention();
  if (state.who) $("#who").textContent = `${state.who.name} (${state.who.may_direct ? t("operator") : t("read_only")})`;
}
function fillIndicators() {
  const select = $("#indicator");
  select.replaceChildren(el("option", { value: "", text: t("all_indicators") }),
    ...state.indicators.filter((i) => i.region_level !== "national").map((i) =>
      el("option", { value: i.code, text: `${state.lang === "vi" ? i.name_vi : i.name_en} (${i.code})` })));
  select.value = state.filters.indicator;
}
function showTab(name) {
  for (const tab of document.querySelectorAll("[role=tab]")) {
    const on = tab.id === `tab-${name}`;
    tab.setAttribute("aria-selected", String(on));
    tab.tabIndex = on ? 0 : -1;
    $(`#${tab.getAttribute("aria-controls")}`).hidden = !on;
  }
  if (name === "compliance") loadCompliance().catch(report);
  if (name === "briefing") loadBriefing().catch(report);
  showHistoryTab(name); // the timeline and the handover (timeline.js)
}
function bindTabs() { // click, or the arrow keys within the tab list (WAI-ARIA tabs)
  const tabs = [...document.querySelectorAll("[role=tab]")];
  for (const [n, tab] of tabs.entries()) {
    tab.addEventListener("click", () => showTab(tab.id.slice(4)));
    tab.addEventListener("keydown", (event) => {
      const step = { ArrowRight: 1, ArrowLeft: -1 }[event.key];
      if (!step) return;
      const next = tabs[(n + step + tabs.length) % tabs.length];
      showTab(next.id.slice(4));
      next.focus();
    });
  }
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
  showMiddle();
  await loadOverview();
  follow();
  fetchCompliance().catch(report);
  if (!state.timers) { // once, even when start() runs again after signing in anew
    state.timers = true;
    setInterval(() => { $("#clock").textContent = when(Date.now()); drawLive(); }, 1000);
    setInterval(() => { loadOverview().catch(report); drawAlerts(null); }, 30000); // values; "… ago" ages
    setInterval(() => { fetchCompliance().catch(report); }, 300000); // the summary's compliance
  }
}

document.addEventListener("DOMContentLoaded", () => {
  state.filters = readFilters();
  translate();
  bindFilters();
  bindAttention();
  bindTabs();
  $("#lang").addEventListener("click", () => {
    state.lang = state.lang === "vi" ? "en" : "vi";
    localStorage.setItem("screen.lang", state.lang);
    translate(); drawMap(); drawAlerts(null); showMiddle();
  });
  $("#print").addEventListener("click", () => window.print());
  $("#export-alerts").addEventListener("click", exportAlerts);
  $("#export-compliance").addEventListener("click", exportCompliance);
  $("#signout").addEventListener("click", () => { signIn(); location.reload(); });
  $("#directive-cancel").addEventListener("click", () => $("#directive").close(""));
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
