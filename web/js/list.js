// The experiments page: search by name, filters by status and strategy (applied by the API),
// the latest value of a chosen metric, and one sortable table. A stuck round marks its
// experiment instead of a plain RUNNING.

import { badge, empty, h, num, scrollTable, seconds, timeEl } from "./dom.js";

const STATUSES = ["PENDING_MODEL", "RUNNING", "PAUSED", "COMPLETED", "STOPPED", "FAILED"];
const SEARCH_DELAY_MS = 300;

/** The filters the API applies (`GET /v1/experiments?status=&strategy=&q=`); kept across refreshes. */
export const listFilters = { q: "", status: "", strategy: "" };

const sort = { key: "activity", dir: "desc" };
const chosen = { metric: "", wanted: "" }; // "evaluation:accuracy" | "training:loss" | ""; wanted: the user's pick
const strategiesSeen = new Set();

/** The chosen metric's latest value of `e`: {value, round} or null. */
function latestValue(e, metric) {
  const [source, name] = metric.split(/:(.*)/s);
  const latest = e.latest_metrics;
  if (!latest || !name) return null;
  const value = latest[source]?.[name];
  if (typeof value !== "number" || !Number.isFinite(value)) return null;
  return { value, round: source === "evaluation" ? latest.evaluation_round : latest.round };
}

function columns() {
  const metricLabel = chosen.metric ? `Latest ${metricName(chosen.metric)}` : "Latest metric";
  return [
    { key: "name", label: "Name", value: (e) => e.name.toLowerCase() },
    { key: "status", label: "Status", value: (e) => `${e.attention ? 0 : 1}${e.status}` },
    { key: "strategy", label: "Strategy", value: (e) => e.strategy?.name || "" },
    { key: "round", label: "Round", value: (e) => e.current_round ?? -1 },
    { key: "metric", label: metricLabel, value: (e) => latestValue(e, chosen.metric)?.value ?? -Infinity },
    { key: "clients", label: "Clients", value: (e) => e.clients ?? 0 },
    { key: "activity", label: "Last activity", value: (e) => e.updated_at || e.created_at || "" },
  ];
}

function metricName(metric) {
  const [source, name] = metric.split(/:(.*)/s);
  return `${name} (${source})`;
}

/** Every metric any experiment reports, evaluation first (what a model is judged by). */
function metricOptions(experiments) {
  const found = new Set();
  for (const source of ["evaluation", "training"]) {
    for (const e of experiments) for (const name of Object.keys(e.latest_metrics?.[source] || {})) found.add(`${source}:${name}`);
  }
  return [...found];
}

function compare(column, dir) {
  return (a, b) => {
    const [x, y] = [column.value(a), column.value(b)];
    const order = x < y ? -1 : x > y ? 1 : 0;
    return dir === "asc" ? order : -order;
  };
}

export function roundOf(e) {
  const total = e.rounds?.total_rounds;
  if (e.current_round === null || e.current_round === undefined) return "not started";
  return total ? `${e.current_round} of ${total}` : `${e.current_round}`;
}

function header(column, rerender) {
  const active = sort.key === column.key;
  const ariaSort = active ? (sort.dir === "asc" ? "ascending" : "descending") : "none";
  const arrow = active ? (sort.dir === "asc" ? "▲" : "▼") : "↕";
  const onclick = () => {
    const descFirst = column.key === "activity" || column.key === "metric";
    sort.dir = active && sort.dir === "asc" ? "desc" : active ? "asc" : descFirst ? "desc" : "asc";
    sort.key = column.key;
    rerender();
  };
  return h("th", { scope: "col", "aria-sort": ariaSort },
    h("button", { type: "button", class: "sort", id: `sort-${column.key}`, onclick },
      column.label, h("span", { class: "arrow", "aria-hidden": "true" }, arrow)));
}

/** The status badge, and a marker that cannot be missed while a round is stuck. */
export function statusCell(e) {
  if (!e.attention) return badge(e.status);
  const a = e.attention;
  const detail = `Round ${a.round} ${a.state} for ${seconds(a.age_seconds)}, ${a.attempts} attempt${a.attempts === 1 ? "" : "s"}`
    + (a.last_error ? `; last error: ${a.last_error}` : "");
  return h("span", { class: "status-attention" }, badge(e.status), " ",
    h("span", { class: "badge badge-attention", title: detail, "data-attention": a.code }, "⚠ stuck"),
    h("span", { class: "attention-detail" }, detail));
}

function metricCell(e) {
  const latest = latestValue(e, chosen.metric);
  if (!latest) return "—";
  return [num(latest.value), h("span", { class: "muted" }, ` (round ${latest.round})`)];
}

function row(e) {
  const link = h("a", { href: `#/experiments/${encodeURIComponent(e.id)}` }, e.name);
  return h("tr", { "data-experiment": e.id, "data-attention": e.attention ? "true" : null },
    h("td", { "data-label": "Name" }, link, h("div", { class: "muted mono" }, e.id)),
    h("td", { "data-label": "Status" }, statusCell(e)),
    h("td", { "data-label": "Strategy" }, e.strategy?.name || "—", " ",
      h("span", { class: "mode", "data-mode": e.rounds?.mode || "sync" }, e.rounds?.mode || "sync")),
    h("td", { "data-label": "Round", class: "num" }, roundOf(e)),
    h("td", { "data-label": chosen.metric ? metricName(chosen.metric) : "Latest metric", class: "num", "data-metric-cell": "" },
      metricCell(e)),
    h("td", { "data-label": "Clients", class: "num" }, num(e.clients ?? 0)),
    h("td", { "data-label": "Last activity" }, timeEl(e.updated_at || e.created_at)));
}

function select(id, label, options, value, onchange) {
  const el = h("select", { id, onchange: (event) => onchange(event.target.value) },
    options.map(([v, text]) => h("option", { value: v, selected: v === value }, text)));
  return h("label", { class: "field", for: id }, h("span", {}, label), el);
}

function toolbar(experiments, ctx, rerender) {
  for (const e of experiments) if (e.strategy?.name) strategiesSeen.add(e.strategy.name);
  if (listFilters.strategy) strategiesSeen.add(listFilters.strategy);
  const metrics = metricOptions(experiments);
  let timer = null;
  const typed = document.getElementById("list-search")?.value; // keep what is being typed across a refresh
  const search = h("input", { id: "list-search", type: "search", value: typed ?? listFilters.q, maxlength: 200,
    placeholder: "Part of a name", autocomplete: "off",
    oninput: (event) => {
      clearTimeout(timer);
      timer = setTimeout(() => { listFilters.q = event.target.value.trim(); ctx.reload(); }, SEARCH_DELAY_MS);
    } });
  const refilter = (key) => (value) => { listFilters[key] = value; ctx.reload(); };
  return h("form", { class: "list-tools", id: "list-tools", role: "search", onsubmit: (event) => event.preventDefault() },
    h("label", { class: "field", for: "list-search" }, h("span", {}, "Search by name"), search),
    select("filter-status", "Status", [["", "All statuses"], ...STATUSES.map((s) => [s, s])], listFilters.status,
      refilter("status")),
    select("filter-strategy", "Strategy", [["", "All strategies"], ...[...strategiesSeen].sort().map((s) => [s, s])],
      listFilters.strategy, refilter("strategy")),
    select("metric-select", "Latest metric", metrics.length ? metrics.map((m) => [m, metricName(m)]) : [["", "none yet"]],
      chosen.metric, (value) => { chosen.wanted = value; rerender(); }));
}

const filtering = () => Boolean(listFilters.q || listFilters.status || listFilters.strategy);

/** Render the list into `root`; `experiments` is every experiment matching `listFilters`. */
export function renderList(root, experiments, ctx = { reload: () => {} }) {
  const rerender = () => renderList(root, experiments, ctx);
  const focused = document.activeElement?.id;
  const caret = document.activeElement?.selectionStart;
  if (!experiments.length && !filtering()) {
    root.replaceChildren(h("h1", {}, "Experiments"),
      empty("No experiments yet. A developer creates one with the SDK (Developer.create_experiment); it appears here within seconds."));
    return;
  }
  const metrics = metricOptions(experiments);
  chosen.metric = metrics.includes(chosen.wanted) ? chosen.wanted : metrics[0] || "";
  const cols = columns();
  const column = cols.find((c) => c.key === sort.key) || cols.at(-1);
  const sorted = [...experiments].sort(compare(column, sort.dir));
  const running = experiments.filter((e) => e.status === "RUNNING").length;
  const stuck = experiments.filter((e) => e.attention).length;
  const table = h("table", { class: "experiments stack" },
    h("caption", { class: "visually-hidden" }, "Experiments; column headers sort the table"),
    h("thead", {}, h("tr", {}, cols.map((c) => header(c, rerender)))),
    h("tbody", {}, sorted.map(row)));
  const counts = `${experiments.length} experiment${experiments.length === 1 ? "" : "s"}${filtering() ? " match" : ""}, ${running} running`
    + (stuck ? `, ${stuck} need${stuck === 1 ? "s" : ""} attention.` : ".");
  root.replaceChildren(
    h("h1", {}, "Experiments"),
    toolbar(experiments, ctx, rerender),
    h("p", { class: stuck ? "alert" : "muted", role: "status", id: "list-count" }, counts),
    experiments.length ? scrollTable("Experiments table", table) : empty("No experiments match these filters."));
  if (focused) {
    const el = document.getElementById(focused);
    el?.focus();
    if (el && typeof caret === "number" && el.setSelectionRange && el.type === "search") el.setSelectionRange(caret, caret);
  }
}
