// Small DOM and formatting helpers. Every value from the API reaches the page as text
// (textContent / attributes), never as HTML.

const SVG_NS = "http://www.w3.org/2000/svg";

function build(el, attrs, children) {
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") el.addEventListener(key.slice(2), value);
    else if (key === "text") el.textContent = String(value);
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/** h("a", {href: "#/"}, "text", childNode, [more]) creates an HTML element. */
export function h(tag, attrs, ...children) {
  return build(document.createElement(tag), attrs, children);
}

/** s("circle", {cx: 1}) creates an SVG element. */
export function s(tag, attrs, ...children) {
  return build(document.createElementNS(SVG_NS, tag), attrs, children);
}

const DASH = "—";

export function num(value, digits = 4) {
  if (value === null || value === undefined || value === "") return DASH;
  const n = Number(value);
  if (!Number.isFinite(n)) return String(value);
  if (Number.isInteger(n)) return n.toLocaleString();
  if (Math.abs(n) >= 1000) return n.toLocaleString(undefined, { maximumFractionDigits: 1 });
  return Number(n.toPrecision(digits)).toString();
}

export function seconds(value) {
  if (value === null || value === undefined) return DASH;
  const n = Number(value);
  if (n < 60) return `${n < 10 ? n.toFixed(2) : n.toFixed(1)} s`;
  if (n < 3600) return `${Math.floor(n / 60)} min ${Math.round(n % 60)} s`;
  return `${Math.floor(n / 3600)} h ${Math.round((n % 3600) / 60)} min`;
}

export function dateTime(iso) {
  if (!iso) return DASH;
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? String(iso) : d.toLocaleString();
}

/** A compact instant: the time alone for today, else date and time; full text on hover. */
export function when(iso) {
  if (!iso) return DASH;
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return String(iso);
  const today = d.toDateString() === new Date().toDateString();
  const text = today ? d.toLocaleTimeString() : d.toLocaleString(undefined, { dateStyle: "short", timeStyle: "short" });
  return h("time", { datetime: iso, title: d.toLocaleString() }, text);
}

/** "3 min ago" / "in 5 min", for both past and future instants. */
export function relative(iso, now = Date.now()) {
  if (!iso) return DASH;
  const t = new Date(iso).getTime();
  if (Number.isNaN(t)) return String(iso);
  const diff = Math.round((t - now) / 1000);
  const abs = Math.abs(diff);
  const [value, unit] = abs < 60 ? [abs, "s"] : abs < 3600 ? [Math.round(abs / 60), "min"]
    : abs < 86400 ? [Math.round(abs / 3600), "h"] : [Math.round(abs / 86400), "d"];
  if (abs < 5) return "just now";
  return diff < 0 ? `${value} ${unit} ago` : `in ${value} ${unit}`;
}

/** A <time> showing a relative instant, with the absolute one on hover and for screen readers. */
export function timeEl(iso) {
  if (!iso) return DASH;
  return h("time", { datetime: iso, title: dateTime(iso), "data-relative": "" }, relative(iso));
}

export function badge(state) {
  const value = String(state || "UNKNOWN");
  return h("span", { class: `badge badge-${value.toLowerCase().replace(/[^a-z]/g, "")}` }, value);
}

/** A table inside a keyboard-scrollable region, so wide tables work on narrow screens. */
export function scrollTable(label, table) {
  return h("div", { class: "scroll", role: "region", "aria-label": label, tabindex: "0" }, table);
}

export function section(id, title, ...body) {
  return h("section", { class: "card", "aria-labelledby": `${id}-title`, id },
    h("h2", { id: `${id}-title` }, title), ...body);
}

export function empty(text) {
  return h("p", { class: "empty" }, text);
}

/** Re-word every relative <time> under `root` (called by the refresh timer). */
export function updateRelativeTimes(root) {
  for (const el of root.querySelectorAll("time[data-relative]")) el.textContent = relative(el.getAttribute("datetime"));
}
