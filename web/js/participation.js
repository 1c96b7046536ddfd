// Who took part in which round: a clients x rounds grid, and the updates that were refused.

import { empty, h, scrollTable } from "./dom.js";

const MAX_ROWS = 300; // a grid taller than this helps nobody; the rejected table lists every refusal

// Status -> [css class, symbol]; the symbol keeps the grid readable without colour.
const CELL = {
  APPLIED: ["ok", "✓"],
  ACCEPTED: ["ok", "✓"],
  REJECTED: ["bad", "✗"],
  LATE: ["late", "L"],
  UPLOADING: ["pending", "…"],
  REFUSED: ["refused", "P"],
};

/** The API refused this client's uploads while the experiment was paused (no update item). */
function refusedEntry(f) {
  return { client_id: f.client_id, status: "REFUSED", reason: `${f.code}: ${f.reason} (${f.count}×)`, count: f.count };
}

/** client id -> round -> update, over every round's `updates` (and refusals where nothing else came). */
function byClient(rounds) {
  const grid = new Map();
  const put = (r, u, keep) => {
    if (!grid.has(u.client_id)) grid.set(u.client_id, new Map());
    if (!keep || !grid.get(u.client_id).has(r.round)) grid.get(u.client_id).set(r.round, u);
  };
  for (const r of rounds) {
    for (const u of r.updates || []) put(r, u, false);
    for (const f of r.refused || []) put(r, refusedEntry(f), true);
  }
  return grid;
}

function cell(clientId, round, update) {
  if (!update) return h("td", { class: "cell none", title: `${clientId}, round ${round}: no update` }, h("span", { class: "visually-hidden" }, "none"));
  const [cls, symbol] = CELL[update.status] || ["pending", "?"];
  const examples = update.num_examples ? `, ${update.num_examples} examples` : "";
  const label = `${clientId}, round ${round}: ${update.status}${examples}${update.reason ? ` (${update.reason})` : ""}`;
  return h("td", { class: `cell ${cls}`, title: label, "data-status": update.status },
    h("span", { "aria-hidden": "true" }, symbol), h("span", { class: "visually-hidden" }, label));
}

export function participation(experiment, rounds) {
  const grid = byClient(rounds);
  if (!grid.size) return empty(`No updates yet. ${experiment.clients ?? 0} client(s) enrolled.`);
  const numbers = rounds.map((r) => r.round);
  const all = [...grid.keys()].sort();
  const clients = all.slice(0, MAX_ROWS);
  const legend = h("ul", { class: "legend grid-legend" },
    [["ok", "✓", "accepted / applied"], ["bad", "✗", "rejected"], ["late", "L", "late (after the seal)"],
      ["refused", "P", "refused while paused"], ["pending", "…", "uploading"], ["none", "", "no update"]].map(([cls, sym, text]) =>
      h("li", {}, h("span", { class: `cell-swatch ${cls}`, "aria-hidden": "true" }, sym), text)));
  const table = h("table", { class: "grid" },
    h("caption", { class: "visually-hidden" }, "Updates per client (rows) and round (columns)"),
    h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Client"), numbers.map((n) => h("th", { scope: "col", class: "num" }, n)))),
    h("tbody", {}, clients.map((c) => h("tr", { "data-client": c },
      h("th", { scope: "row", class: "mono" }, c), numbers.map((n) => cell(c, n, grid.get(c).get(n)))))));
  const silent = Math.max(0, (experiment.clients ?? 0) - all.length);
  const cut = all.length > MAX_ROWS ? ` The grid shows the first ${MAX_ROWS} by client id.` : "";
  return [
    h("p", { class: "muted" }, `${all.length} client(s) sent updates${silent ? `; ${silent} enrolled client(s) have not sent any` : ""}.${cut}`),
    legend,
    scrollTable("Participation grid", table),
  ];
}

export function rejectedUpdates(rounds) {
  const refused = rounds.flatMap((r) => [
    ...(r.updates || []).filter((u) => u.status === "REJECTED" || u.status === "LATE"),
    ...(r.refused || []).map(refusedEntry),
  ].map((u) => ({ round: r.round, ...u })));
  if (!refused.length) return empty("No rejected, late or refused updates.");
  const label = (u) => (u.status === "REFUSED" ? "REFUSED (paused)" : u.status);
  const rows = refused.reverse().map((u) => h("tr", { "data-client": u.client_id, "data-status": u.status },
    h("td", { class: "num" }, u.round),
    h("td", { class: "mono" }, u.client_id),
    h("td", {}, label(u)),
    h("td", { class: "reason" }, u.reason || (u.status === "LATE" ? "arrived after the round was sealed" : "no reason given"))));
  return scrollTable("Rejected updates", h("table", { class: "rejected" },
    h("thead", {}, h("tr", {}, ["Round", "Client", "Status", "Reason"].map((c) => h("th", { scope: "col" }, c)))),
    h("tbody", {}, rows)));
}
