// Async mode (FedBuff, docs/async.md): each published version with its buffer, a histogram of
// the staleness of the updates that were applied (and how many were refused STALE), and the
// time between versions. Pure rendering of GET /rounds data.

import { empty, h, num, s, scrollTable, seconds, when } from "./dom.js";

export const isAsync = (experiment) => experiment?.rounds?.mode === "async";

const BAR = 240; // px of the longest histogram bar (SVG attributes: the page's CSP allows no inline styles)
const time = (iso) => (iso ? new Date(iso).getTime() / 1000 : NaN);

/** Seconds between each published version and the one before (version 1: since round 1 opened). */
function gaps(published) {
  return published.map((r, i) => {
    const before = i === 0 ? time(r.opened_at) : time(published[i - 1].published_at);
    const gap = time(r.published_at) - before;
    return Number.isFinite(gap) ? gap : null;
  });
}

function bufferCell(buffer) {
  if (!buffer?.length) return h("span", { class: "muted" }, "—");
  return h("ul", { class: "buffer" }, buffer.map((b) => h("li", { "data-client": b.client_id, "data-staleness": b.staleness },
    h("span", { class: "mono" }, b.client_id), ` round ${b.round} (base v${b.base_version}, staleness ${b.staleness}, `,
    `s=${num(b.staleness_weight, 3)}, weight ${num(b.effective_weight ?? b.weight, 3)})`)));
}

function versionsTable(published) {
  const between = gaps(published);
  const rows = [...published].reverse().map((r) => {
    const i = published.indexOf(r);
    return h("tr", { "data-version": r.round },
      h("th", { scope: "row", class: "num" }, r.round),
      h("td", {}, when(r.published_at)),
      h("td", { class: "num", "data-col": "gap" }, seconds(between[i])),
      h("td", { class: "num" }, num(r.buffer?.length ?? r.accepted)),
      h("td", {}, bufferCell(r.buffer)));
  });
  return scrollTable("Versions and their buffers", h("table", { class: "versions" },
    h("caption", { class: "visually-hidden" }, "Published versions, newest first"),
    h("thead", {}, h("tr", {}, ["Version", "Published", "Since previous", "Updates", "Buffer"].map((c) => h("th", { scope: "col" }, c)))),
    h("tbody", {}, rows)));
}

/** Count of applied updates per staleness, plus the updates refused as STALE. */
export function stalenessCounts(rounds) {
  const counts = new Map();
  for (const r of rounds) for (const b of r.buffer || []) counts.set(b.staleness, (counts.get(b.staleness) || 0) + 1);
  const refused = rounds.flatMap((r) => r.updates || []).filter((u) => (u.reason || "").startsWith("STALE")).length;
  return { counts, refused };
}

function histogram(rounds, maxStaleness) {
  const { counts, refused } = stalenessCounts(rounds);
  if (!counts.size && !refused) return empty("No versions published yet.");
  const top = Math.max(0, ...counts.keys());
  const bars = [];
  for (let tau = 0; tau <= top; tau++) bars.push({ label: String(tau), count: counts.get(tau) || 0, key: tau });
  if (refused) bars.push({ label: `> ${maxStaleness} (STALE)`, count: refused, key: "stale" });
  const most = Math.max(1, ...bars.map((b) => b.count));
  return h("figure", { class: "histogram", id: "staleness-histogram" },
    h("figcaption", {}, "Staleness of applied updates (versions behind), and updates refused STALE"),
    h("table", {}, h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Staleness"), h("th", { scope: "col" }, "Updates"))),
      h("tbody", {}, bars.map((b) => h("tr", { "data-staleness": b.key },
        h("th", { scope: "row" }, b.label),
        h("td", {}, s("svg", { class: "hbar", width: BAR, height: 12, viewBox: `0 0 ${BAR} 12`, "aria-hidden": "true" },
          s("rect", { class: b.key === "stale" ? "bar-refused" : "bar-applied", x: 0, y: 0, height: 12,
            width: Math.max(2, (BAR * b.count) / most) })), " ", num(b.count)))))));
}

/** The async section's body: versions with buffers, the staleness histogram, time between versions. */
export function asyncVersions(experiment, rounds) {
  const published = rounds.filter((r) => r.state === "PUBLISHED").sort((a, b) => a.round - b.round);
  const between = gaps(published).filter((g) => g !== null);
  const mean = between.length ? between.reduce((a, b) => a + b, 0) / between.length : null;
  const policy = experiment.rounds || {};
  return [
    h("p", { class: "muted" }, `Buffers of ${policy.buffer_size} updates publish versions; updates more than `,
      `${policy.max_staleness} versions behind are refused. Mean time between versions: `,
      h("strong", { id: "mean-version-gap" }, seconds(mean)), "."),
    published.length ? versionsTable(published) : empty("No version published yet."),
    histogram(rounds, policy.max_staleness),
  ];
}
