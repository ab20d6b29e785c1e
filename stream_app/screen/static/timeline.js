// History: the alert timeline (GET /api/v1/alerts/timeline: every change of every alert, who made it
// and when, read by the screen from center.alerts), its CSV, and the shift handover with its printable
// page. Loaded after app.js, whose helpers it uses (state, api, el, t, when, csv, download, ...); its own
// words join app.js's TEXT before the page is first translated.
"use strict";

Object.assign(TEXT.vi, {
  tab_timeline: "Diễn biến", tab_handover: "Bàn giao ca", timeline_title: "Diễn biến cảnh báo",
  shift_from: "Từ", shift_to: "Đến", show: "Xem", more: "Xem thêm", time: "Thời gian", step: "Diễn biến",
  by: "Người thực hiện", note: "Nội dung", step_fired: "Phát cảnh báo", step_raised: "Tăng mức",
  step_lowered: "Giảm mức", step_resolved: "Kết thúc", step_acknowledged: "Tiếp nhận",
  step_assigned: "Giao xử lý", step_commented: "Ý kiến", step_escalated: "Báo cáo lên",
  step_closed: "Đóng xử lý", no_steps: "Không có diễn biến trong khoảng thời gian này.",
  steps_count: "diễn biến", incomplete: "(màn hình chưa đọc đủ lịch sử của khoảng này)",
  handover_title: "Biên bản bàn giao ca trực", print_handover: "In biên bản",
  handover_open: "Cảnh báo đang mở", handover_done: "Đã xử lý trong ca", handover_changes: "Diễn biến trong ca",
  handing_over: "Người bàn giao:", taking_over: "Người nhận ca:", operator_word: "Cán bộ trực",
  shift_word: "Ca trực", nothing_done: "Không có xử lý nào trong ca.", fired_count: "phát cảnh báo",
  resolved_count: "kết thúc",
});
Object.assign(TEXT.en, {
  tab_timeline: "Timeline", tab_handover: "Shift handover", timeline_title: "Alert timeline",
  shift_from: "From", shift_to: "To", show: "Show", more: "More", time: "Time", step: "Step", by: "By",
  note: "Note", step_fired: "Fired", step_raised: "Level raised", step_lowered: "Level lowered",
  step_resolved: "Resolved", step_acknowledged: "Acknowledged", step_assigned: "Assigned",
  step_commented: "Commented", step_escalated: "Escalated", step_closed: "Closed",
  no_steps: "Nothing happened in this time range.", steps_count: "steps",
  incomplete: "(the screen has not read the whole history of this range)",
  handover_title: "Shift handover report", print_handover: "Print the handover",
  handover_open: "Open alerts", handover_done: "Done during the shift", handover_changes: "Changes during the shift",
  handing_over: "Handed over by:", taking_over: "Taken over by:", operator_word: "Duty officer",
  shift_word: "Shift", nothing_done: "Nothing was done during the shift.", fired_count: "fired",
  resolved_count: "resolved",
});

const SHIFT_MS = 12 * 3600 * 1000; // the default range: the current shift, the last 12 hours
const TIMELINE_PAGE = 100; // entries shown at a time ("More" for the next)
const TIMELINE_BULK = 500; // entries per request of a handover, an export (the API's largest page)
const TIMELINE_PAGES_MAX = 20; // ... which read at most this many pages
const timelineView = { entries: [], cursor: null, complete: true, query: null };

// ------------------------------------------------------------------------------ the range asked
const localInput = (ms) => { // a datetime-local's value (the browser's time zone) of epoch ms
  const d = new Date(ms - new Date(ms).getTimezoneOffset() * 60000);
  return d.toISOString().slice(0, 16);
};
const inputMs = (value) => (value ? new Date(value).getTime() : NaN);
function shiftRange() { // what the inputs say, or the last 12 hours
  const to = inputMs($("#tl-to").value);
  const end = Number.isFinite(to) ? to : Date.now();
  const from = inputMs($("#tl-from").value);
  return { from: Number.isFinite(from) ? from : end - SHIFT_MS, to: end, open: !Number.isFinite(to) };
}
function timelinePath(range, region, cursor, order, limit = TIMELINE_PAGE) {
  const q = new URLSearchParams({ order, limit: String(limit), from: new Date(range.from).toISOString() });
  if (!range.open) q.set("to", new Date(range.to).toISOString());
  if (region) q.set("region", region);
  if (cursor) q.set("cursor", cursor);
  return `alerts/timeline?${q}`;
}
async function timelineAll(range, region, order = "asc") { // every page of a range, up to the bound
  const entries = [];
  let cursor = null;
  let complete = true;
  for (let n = 0; n < TIMELINE_PAGES_MAX; n += 1) {
    const got = await api(timelinePath(range, region, cursor, order, TIMELINE_BULK));
    entries.push(...got.entries);
    complete = complete && got.complete;
    cursor = got.next_cursor;
    if (!cursor) break;
  }
  return { entries, complete: complete && !cursor };
}

// ------------------------------------------------------------------------------ the timeline tab
const stepName = (e) => t(`step_${e.step}`);
function stepNote(e) {
  if (e.step === "assigned") return `${t("assigned_to")}: ${e.assignee}`;
  if (e.comment) return e.comment;
  if (["fired", "raised", "lowered"].includes(e.step)) return `${fmt(e.value)} (${e.reporter})`;
  return "";
}
const entryLevel = (e) => (state.lang === "vi" ? e.level_name_vi : e.level_name_en) || e.level_code || "";
const entryWhere = (e) => (e.station ? `${regionName(e.region)} · ${state.stations[e.station] || e.station}`
  : regionName(e.region));
function timelineRow(e) {
  return el("tr", { "data-step": e.step, "data-alert-key": e.alert_key, "data-by": e.by || null },
    el("td", { text: when(e.at) }), el("td", { text: stepName(e) }), el("td", { text: e.by || "–" }),
    el("td", { text: entryWhere(e) }), el("td", { text: indicatorName(e.indicator) }),
    el("td", {}, el("span", { class: "level", style: { backgroundColor: e.colour, color: textOn(e.colour || "#808080") },
      text: entryLevel(e) })),
    el("td", { text: stepNote(e) }));
}
function drawTimeline() {
  const body = $("#timeline-table tbody");
  body.replaceChildren(...timelineView.entries.map(timelineRow));
  if (!timelineView.entries.length) body.append(el("tr", {}, el("td", { colspan: "7", class: "hint", text: t("no_steps") })));
  $("#tl-more").hidden = !timelineView.cursor;
  $("#tl-summary").textContent = `${timelineView.entries.length}${timelineView.cursor ? "+" : ""} ${t("steps_count")}`
    + (timelineView.complete ? "" : ` ${t("incomplete")}`);
}
async function loadTimeline(more = false) {
  if (!more) {
    timelineView.query = { range: shiftRange(), region: $("#tl-region").value };
    timelineView.entries = [];
    timelineView.cursor = null;
  }
  const { range, region } = timelineView.query;
  const got = await api(timelinePath(range, region, more ? timelineView.cursor : null, "desc")); // newest first
  timelineView.entries.push(...got.entries);
  timelineView.cursor = got.next_cursor;
  timelineView.complete = got.complete;
  drawTimeline();
}
function fillTimelineRegions() {
  const select = $("#tl-region");
  const chosen = select.value || state.filters.region || "";
  select.replaceChildren(el("option", { value: "", text: t("all_regions") }),
    ...state.tiles.map((x) => el("option", { value: x.region, text: x.name })));
  select.value = chosen;
}
async function exportTimeline() { // the whole range as filtered, oldest first
  const range = timelineView.query ? timelineView.query.range : shiftRange();
  const region = timelineView.query ? timelineView.query.region : $("#tl-region").value;
  const { entries } = await timelineAll(range, region);
  const header = ["at", "step", "step_name", "by", "alert_key", "region", "region_name", "station", "indicator",
    "indicator_name", "level", "level_code", "level_name", "value", "assignee", "comment", "reporter"];
  const rows = entries.map((e) => [isoTime(e.at), e.step, stepName(e), e.by, e.alert_key, e.region,
    regionName(e.region), e.station || "", e.indicator, indicatorName(e.indicator), e.level, e.level_code,
    entryLevel(e), e.value, e.assignee, e.comment, e.reporter]);
  download(`timeline-${stamp()}.csv`, csv(header, rows));
}

// ------------------------------------------------------------------------------ the shift handover
// What is open (by level, from the live list), what was done during the shift and by whom (the timeline's
// operators' steps), the changes the data made; the operator's name and the shift's start and end.
async function loadHandover() {
  const range = shiftRange();
  const { entries, complete } = await timelineAll(range, "");
  const who = state.who ? state.who.name : "";
  $("#handover-operator").textContent = who;
  $("#handover-shift").textContent = `${t("shift_word")}: ${when(range.from)} – ${when(range.to)} · `
    + `${t("operator_word")}: ${who}${complete ? "" : ` ${t("incomplete")}`}`;
  const open = [...state.alerts.values()].sort((x, y) => y.level - x.level || x.event_time - y.event_time);
  const byLevel = new Map();
  for (const a of open) byLevel.set(a.level, [...(byLevel.get(a.level) || []), a]);
  $("#handover-open").replaceChildren(...(open.length ? [...byLevel.entries()].map(([, alerts]) =>
    el("div", { class: "handover-level" },
      el("h4", { text: `${levelName(alerts[0])} (${alerts.length})` }),
      el("ul", {}, ...alerts.map((a) => el("li", { "data-alert-key": a.alert_key },
        `${entryWhere(a)} · ${indicatorName(a.indicator)}: ${fmt(a.value)} · ${t("since")} ${when(a.since || a.event_time)}`
        + (a.acknowledged_by ? ` · ${t("acknowledged_by")} ${a.acknowledged_by}` : "")
        + (a.assigned_to ? ` · ${t("assigned_to")}: ${a.assigned_to}` : "")))))) : [el("p", { class: "hint", text: t("no_alerts") })]));
  const done = entries.filter((e) => e.by);
  const people = new Map();
  for (const e of done) people.set(e.by, [...(people.get(e.by) || []), e]);
  $("#handover-done").replaceChildren(...(done.length ? [el("table", { class: "grid", id: "handover-table" },
    el("thead", {}, el("tr", {}, ...["time", "by", "step", "region", "indicator", "note"].map((k) => el("th", { text: t(k) })))),
    el("tbody", {}, ...done.map((e) => el("tr", { "data-step": e.step, "data-alert-key": e.alert_key },
      el("td", { text: when(e.at) }), el("td", { text: e.by }), el("td", { text: stepName(e) }),
      el("td", { text: entryWhere(e) }), el("td", { text: indicatorName(e.indicator) }),
      el("td", { text: stepNote(e) }))))),
  el("p", { class: "summary", text: [...people.entries()].map(([name, steps]) => `${name}: ${steps.length}`).join(" · ") })]
    : [el("p", { class: "hint", text: t("nothing_done") })]));
  const count = (step) => entries.filter((e) => e.step === step).length;
  $("#handover-changes").textContent = `${count("fired")} ${t("fired_count")} · ${count("resolved")} ${t("resolved_count")}`
    + ` · ${entries.length} ${t("steps_count")}`;
}
function printHandover() { // the printable page: only the handover (app.css, @media print)
  document.body.classList.add("printing-handover");
  window.print();
}

// ---------------------------------------------------- escalations a page opened later did not see
// The open alerts' records say who acknowledged, assigned, commented, but an escalation is the change of
// one record: a later directive's record replaces it. The timeline still has it: an alert whose newest
// step of its current occurrence (since it fired) is an escalation shows it.
async function recallEscalations() {
  const range = { from: Date.now() - 30 * 24 * 3600 * 1000, to: Date.now(), open: true }; // all the screen keeps
  const { entries } = await timelineAll(range, "", "desc");
  const seen = new Set();
  let changed = false;
  for (const e of entries) { // newest first: the first of fired / escalated per alert decides
    if (seen.has(e.alert_key) || !["fired", "escalated"].includes(e.step)) continue;
    seen.add(e.alert_key);
    const a = state.alerts.get(e.alert_key);
    if (e.step === "escalated" && a && !a.escalated) { a.escalated = { by: e.by, at: e.at }; changed = true; }
  }
  if (changed) drawAlerts(null);
}

// ------------------------------------------------------------------------------ wiring
function showHistoryTab(name) { // called by app.js's showTab for the history tabs
  if (name === "timeline") { fillTimelineRegions(); loadTimeline().catch(report); }
  if (name === "handover") loadHandover().catch(report);
}
document.addEventListener("DOMContentLoaded", () => {
  $("#tl-load").addEventListener("click", () => loadTimeline().catch(report));
  $("#tl-more").addEventListener("click", () => loadTimeline(true).catch(report));
  $("#tl-region").addEventListener("change", () => loadTimeline().catch(report));
  $("#export-timeline").addEventListener("click", () => exportTimeline().catch(report));
  $("#print-handover").addEventListener("click", printHandover);
  window.addEventListener("afterprint", () => document.body.classList.remove("printing-handover"));
  $("#tl-from").value = localInput(Date.now() - SHIFT_MS);
});
