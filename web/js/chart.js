// A hand-written SVG line chart: rounds on x, one line per series, with a data table for
// screen readers and keyboard users. Series are told apart by colour, marker shape and legend.

import { h, num, s } from "./dom.js";

const W = 480;
const H = 240;
const PAD = { left: 56, right: 16, top: 16, bottom: 40 };
const INSET = 14; // keeps the first and last markers off the axes
const CLIENT_COLOURS = 8; // per-client series cycle through this many colours (css: .client-0 ... .client-7)

/** About five round numbers spanning [lo, hi]. */
function ticks(lo, hi, count = 5) {
  if (lo === hi) return [lo];
  const raw = (hi - lo) / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((v) => v >= raw);
  const out = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(Number(v.toPrecision(12)));
  return out;
}

function extent(values) {
  let lo = Math.min(...values);
  let hi = Math.max(...values);
  if (lo === hi) {
    const pad = Math.abs(lo) * 0.1 || 1;
    lo -= pad;
    hi += pad;
  }
  const pad = (hi - lo) * 0.08;
  return [lo - pad, hi + pad];
}

function marker(shape, x, y, label) {
  const title = s("title", {}, label);
  if (shape === "dot") return s("circle", { cx: x, cy: y, r: 2.5, class: "point" }, title);
  if (shape === "square") return s("rect", { x: x - 4, y: y - 4, width: 8, height: 8, class: "point" }, title);
  return s("circle", { cx: x, cy: y, r: 4.5, class: "point" }, title);
}

function dataTable(title, series, rounds) {
  const head = h("tr", {}, h("th", { scope: "col" }, "Round"), series.map((se) => h("th", { scope: "col" }, se.name)));
  const rows = rounds.map((r) => h("tr", {}, h("th", { scope: "row" }, r),
    series.map((se) => h("td", {}, num(se.points.find((p) => p.x === r)?.y)))));
  return h("details", { class: "chart-data", "data-key": `chart-${title}` }, h("summary", {}, `Data for ${title}`),
    h("table", {}, h("thead", {}, head), h("tbody", {}, rows)));
}

/**
 * lineChart({title, series: [{name, key, points: [{x, y}], client?, colour?, dashed?}]}) -> <figure>.
 * Each series is a <g data-series=key> holding one marker per point; `client` series (one
 * client's own values) are drawn thin, under the aggregate ones, in `colour` (an index).
 */
export function lineChart({ title, series }) {
  const shown = series.filter((se) => se.points.length);
  if (!shown.length) return h("p", { class: "empty" }, `No values of ${title} yet.`);
  const all = shown.flatMap((se) => se.points);
  const rounds = [...new Set(all.map((p) => p.x))].sort((a, b) => a - b);
  const [xlo, xhi] = rounds.length > 1 ? [rounds[0], rounds[rounds.length - 1]] : [rounds[0] - 1, rounds[0] + 1];
  const [ylo, yhi] = extent(all.map((p) => p.y));
  const x = (v) => PAD.left + INSET + ((v - xlo) / (xhi - xlo)) * (W - PAD.left - PAD.right - 2 * INSET);
  const y = (v) => H - PAD.bottom - ((v - ylo) / (yhi - ylo)) * (H - PAD.top - PAD.bottom);

  const xTicks = rounds.length <= 12 ? rounds : ticks(xlo, xhi, 8).filter(Number.isInteger);
  const grid = s("g", { class: "axis", "aria-hidden": "true" },
    ticks(ylo, yhi, 4).map((v) => [
      s("line", { x1: PAD.left, x2: W - PAD.right, y1: y(v), y2: y(v), class: "gridline" }),
      s("text", { x: PAD.left - 8, y: y(v) + 4, "text-anchor": "end" }, num(v, 3)),
    ]),
    xTicks.map((v) => s("text", { x: x(v), y: H - PAD.bottom + 18, "text-anchor": "middle" }, v)),
    s("text", { x: (PAD.left + W - PAD.right) / 2, y: H - 4, "text-anchor": "middle", class: "axis-label" }, "round"),
    s("line", { x1: PAD.left, x2: W - PAD.right, y1: H - PAD.bottom, y2: H - PAD.bottom, class: "baseline" }));

  const main = shown.filter((se) => !se.client);
  const look = (se) => (se.client ? { cls: `client client-${se.colour % CLIENT_COLOURS}`, shape: "dot", dashed: se.dashed }
    : { cls: `series-${main.indexOf(se)}`, shape: main.indexOf(se) % 2 ? "square" : "circle", dashed: main.indexOf(se) % 2 });
  // clients' thin lines first, so the aggregate lines stay on top
  const lines = [...shown.filter((se) => se.client), ...main].map((se) => {
    const pts = [...se.points].sort((a, b) => a.x - b.x);
    const { cls, shape, dashed } = look(se);
    return s("g", { class: `series ${cls}`, "data-series": se.key },
      s("polyline", { points: pts.map((p) => `${x(p.x)},${y(p.y)}`).join(" "), class: dashed ? "dashed" : "" }),
      pts.map((p) => marker(shape, x(p.x), y(p.y), `${se.name}, round ${p.x}: ${num(p.y)}`)));
  });

  const summary = main.map((se) => `${se.name}: ${se.points.length} rounds, last ${num(se.points.at(-1)?.y)}`).join("; ")
    + (main.length < shown.length ? `; ${shown.length - main.length} client series` : "");
  const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": `${title}. ${summary}`, class: "chart" },
    grid, lines);
  const legend = h("ul", { class: "legend" }, shown.map((se) => {
    const { cls, shape } = look(se);
    return h("li", { class: cls }, h("span", { class: `swatch ${shape === "square" ? "square" : "circle"}`, "aria-hidden": "true" }), se.name);
  }));
  return h("figure", { class: "chart-figure", "data-metric": title },
    h("figcaption", {}, title), svg, legend, dataTable(title, shown, rounds));
}
