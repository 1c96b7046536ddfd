// Lineage and registry (issue 16): the experiment's parent round, this experiment and its forks
// drawn as a small graph of links, and its registry versions with their stage and a download.
// Pure rendering of the experiment detail (`parent`, `children`, `registry`).

import { get } from "./api.js";
import { badge, empty, h, s, scrollTable } from "./dom.js";

const NODE_W = 200;
const NODE_H = 44;
const GAP_X = 24;
const ROW_Y = [8, 96];

function short(id) {
  return id.length > 16 ? `${id.slice(0, 16)}…` : id;
}

function node(x, y, label, sub, href, kind) {
  const box = [s("rect", { x, y, width: NODE_W, height: NODE_H, rx: 6, class: `node node-${kind}` }),
    s("text", { x: x + 10, y: y + 18, class: "node-label" }, label),
    s("text", { x: x + 10, y: y + 35, class: "node-sub" }, sub)];
  if (!href) return s("g", { "data-node": kind }, box);
  return s("a", { href, "data-node": kind, "aria-label": `${label}: ${sub}` }, box);
}

function edge(from, to, label) {
  const [x1, y1] = [from.x + NODE_W / 2, from.y + NODE_H];
  const [x2, y2] = [to.x + NODE_W / 2, to.y];
  return s("g", { class: "edge" },
    s("line", { x1, y1, x2, y2 }),
    s("text", { x: (x1 + x2) / 2 + 6, y: (y1 + y2) / 2 + 4, class: "edge-label" }, label));
}

/** parent (row 0) → this experiment (row 1) → its forks (row 2), each a link to its page. */
export function lineageGraph(e) {
  const children = e.children || [];
  const columns = Math.max(1, children.length);
  const width = columns * NODE_W + (columns - 1) * GAP_X + 16;
  const center = (width - NODE_W) / 2;
  const self = { x: center, y: e.parent ? ROW_Y[1] : ROW_Y[0] };
  const parts = [];
  if (e.parent) {
    const parent = { x: center, y: ROW_Y[0] };
    parts.push(edge(parent, self, `forked at round ${e.parent.round}`),
      node(parent.x, parent.y, "parent", short(e.parent.experiment_id),
        `#/experiments/${encodeURIComponent(e.parent.experiment_id)}`, "parent"));
  }
  parts.push(node(self.x, self.y, e.name, short(e.id), null, "self"));
  children.forEach((child, i) => {
    const at = { x: 8 + i * (NODE_W + GAP_X), y: self.y + (ROW_Y[1] - ROW_Y[0]) };
    parts.push(edge(self, at, `round ${child.round}`),
      node(at.x, at.y, "fork", short(child.experiment_id), `#/experiments/${encodeURIComponent(child.experiment_id)}`,
        "child"));
  });
  const rows = (e.parent ? 1 : 0) + 1 + (children.length ? 1 : 0);
  const height = (rows - 1) * (ROW_Y[1] - ROW_Y[0]) + NODE_H + 16;
  return s("svg", { class: "lineage", viewBox: `0 0 ${width} ${height}`, width, role: "img",
    "aria-label": `Lineage: ${e.parent ? `forked from round ${e.parent.round} of ${e.parent.experiment_id}` : "a root experiment"}, ${children.length} fork(s)` },
  parts);
}

function links(e) {
  const items = [];
  if (e.parent) {
    items.push(h("li", { "data-parent": e.parent.experiment_id }, "Forked from ",
      h("a", { href: `#/experiments/${encodeURIComponent(e.parent.experiment_id)}` }, e.parent.experiment_id),
      ` at round ${e.parent.round} (its model is this experiment's version 0).`));
  }
  for (const child of e.children || []) {
    items.push(h("li", { "data-child": child.experiment_id }, "Fork ",
      h("a", { href: `#/experiments/${encodeURIComponent(child.experiment_id)}` }, child.experiment_id),
      ` started from round ${child.round}.`));
  }
  return items.length ? h("ul", { class: "lineage-links" }, items) : empty("A root experiment with no forks yet.");
}

async function download(button, v, status) {
  button.disabled = true;
  status.textContent = "Requesting a download link…";
  try {
    const info = await get(["registry", v.name, "versions", v.version]);
    status.textContent = `Downloading ${v.name} ${v.version}; its sha256 is ${info.sha256}.`;
    const link = h("a", { href: info.url, download: `${v.name}-${v.version}.safetensors`, rel: "noopener" });
    document.body.append(link);
    link.click();
    link.remove();
  } catch (error) {
    status.textContent = error.message;
  } finally {
    button.disabled = false;
  }
}

function registry(e) {
  const versions = e.registry || [];
  if (!versions.length) return empty("No registry versions: publish a round with POST /v1/registry/{name}/versions.");
  const status = h("p", { class: "muted", role: "status" });
  const rows = versions.map((v) => {
    const button = h("button", { type: "button", class: "link", "aria-label": `Download ${v.name} ${v.version}` },
      "Download");
    button.addEventListener("click", () => download(button, v, status));
    return h("tr", { "data-registry": `${v.name}@${v.version}`, "data-stage": v.stage },
      h("th", { scope: "row" }, v.name), h("td", { class: "mono" }, v.version), h("td", { class: "num" }, v.round),
      h("td", {}, badge(v.stage)), h("td", {}, button));
  });
  return [scrollTable("Registry versions", h("table", { class: "registry" },
    h("thead", {}, h("tr", {}, ["Name", "Version", "Round", "Stage", "File"].map((c) => h("th", { scope: "col" }, c)))),
    h("tbody", {}, rows))), status];
}

/** The "Lineage and registry" section's content for experiment detail `e`. */
export function lineage(e) {
  return [h("div", { class: "scroll", role: "region", "aria-label": "Lineage graph", tabindex: "0" }, lineageGraph(e)),
    links(e), h("h3", {}, "Registry versions"), registry(e)];
}
