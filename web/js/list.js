// The experiments page: one sortable table of every experiment the token may read.

import { badge, empty, h, num, scrollTable, timeEl } from "./dom.js";

const COLUMNS = [
  { key: "name", label: "Name", value: (e) => e.name.toLowerCase() },
  { key: "status", label: "Status", value: (e) => e.status },
  { key: "strategy", label: "Strategy", value: (e) => e.strategy?.name || "" },
  { key: "round", label: "Round", value: (e) => e.current_round ?? -1 },
  { key: "clients", label: "Clients", value: (e) => e.clients ?? 0 },
  { key: "activity", label: "Last activity", value: (e) => e.updated_at || e.created_at || "" },
];

const sort = { key: "activity", dir: "desc" };

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
    sort.dir = active && sort.dir === "asc" ? "desc" : active ? "asc" : column.key === "activity" ? "desc" : "asc";
    sort.key = column.key;
    rerender();
  };
  return h("th", { scope: "col", "aria-sort": ariaSort },
    h("button", { type: "button", class: "sort", id: `sort-${column.key}`, onclick },
      column.label, h("span", { class: "arrow", "aria-hidden": "true" }, arrow)));
}

function row(e) {
  const link = h("a", { href: `#/experiments/${encodeURIComponent(e.id)}` }, e.name);
  return h("tr", { "data-experiment": e.id },
    h("td", { "data-label": "Name" }, link, h("div", { class: "muted mono" }, e.id)),
    h("td", { "data-label": "Status" }, badge(e.status)),
    h("td", { "data-label": "Strategy" }, e.strategy?.name || "—", " ",
      h("span", { class: "mode", "data-mode": e.rounds?.mode || "sync" }, e.rounds?.mode || "sync")),
    h("td", { "data-label": "Round", class: "num" }, roundOf(e)),
    h("td", { "data-label": "Clients", class: "num" }, num(e.clients ?? 0)),
    h("td", { "data-label": "Last activity" }, timeEl(e.updated_at || e.created_at)));
}

/** Render the list into `root`; `experiments` is the full list from the API. */
export function renderList(root, experiments) {
  const rerender = () => renderList(root, experiments);
  const focused = document.activeElement?.id;
  if (!experiments.length) {
    root.replaceChildren(h("h1", {}, "Experiments"),
      empty("No experiments yet. A developer creates one with the SDK (Developer.create_experiment); it appears here within seconds."));
    return;
  }
  const column = COLUMNS.find((c) => c.key === sort.key);
  const sorted = [...experiments].sort(compare(column, sort.dir));
  const running = experiments.filter((e) => e.status === "RUNNING").length;
  const table = h("table", { class: "experiments stack" },
    h("caption", { class: "visually-hidden" }, "Experiments; column headers sort the table"),
    h("thead", {}, h("tr", {}, COLUMNS.map((c) => header(c, rerender)))),
    h("tbody", {}, sorted.map(row)));
  root.replaceChildren(
    h("h1", {}, "Experiments"),
    h("p", { class: "muted" }, `${experiments.length} experiment${experiments.length === 1 ? "" : "s"}, ${running} running.`),
    scrollTable("Experiments table", table));
  if (focused) document.getElementById(focused)?.focus();
}
