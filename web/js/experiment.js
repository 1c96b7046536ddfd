// One experiment: summary, round timeline, metric charts, participation, rejected updates,
// model versions, strategy and privacy. `renderExperiment` is pure rendering of API data.

import { lineChart } from "./chart.js";
import { badge, empty, h, num, scrollTable, section, seconds, timeEl, when } from "./dom.js";
import { lineage } from "./lineage.js";
import { roundOf } from "./list.js";
import { participation, rejectedUpdates } from "./participation.js";
import { asyncVersions, isAsync } from "./versions.js";

const ACTIVE = new Set(["PENDING_MODEL", "RUNNING", "PAUSED"]);

export const isActive = (experiment) => ACTIVE.has(experiment.status);

function facts(pairs) {
  return h("dl", { class: "facts" }, pairs.map(([term, value]) => h("div", {}, h("dt", {}, term), h("dd", {}, value))));
}

/** USD with enough digits for a round that costs fractions of a cent. */
function usd(value) {
  if (value === null || value === undefined || !Number.isFinite(Number(value))) return "—";
  const n = Number(value);
  return n >= 0.01 ? `$${n.toFixed(2)}` : `$${n.toPrecision(2)}`;
}

/** Sum of the rounds' cost at list prices (docs/scale.md), or null when no round has one. */
function totalCost(rounds) {
  const priced = rounds.filter((r) => r.cost && Number.isFinite(Number(r.cost.usd_total)));
  return priced.length ? priced.reduce((sum, r) => sum + Number(r.cost.usd_total), 0) : null;
}

function costCell(r) {
  if (!r.cost) return "—";
  const c = r.cost;
  const title = `${r.plan || "single"} plan: ${num(c.gb_seconds)} GB-s, ${num(c.s3_get)} GETs, ${num(c.s3_put)} PUTs, `
    + `${num(c.dynamodb_read_units)} RRU, ${num(c.dynamodb_write_units)} WRU, ${num(c.state_transitions)} transitions`;
  return h("span", { title }, usd(c.usd_total), r.plan === "fanout" ? h("span", { class: "muted" }, " (fanout)") : null);
}

function summary(e, rounds) {
  const published = rounds.filter((r) => r.state === "PUBLISHED").length;
  const cost = totalCost(rounds);
  return h("header", { class: "experiment-head" },
    h("p", {}, h("a", { href: "#/", class: "back" }, "← All experiments")),
    h("h1", {}, e.name, " ", badge(e.status)),
    e.model_error ? h("p", { class: "alert", role: "alert" }, `Initial model refused: ${e.model_error}`) : null,
    facts([
      ["Experiment id", h("span", { class: "mono" }, e.id)],
      ["Strategy", e.strategy?.name || "—"],
      ["Round", roundOf(e)],
      ["Published rounds", String(published)],
      ["Clients enrolled", num(e.clients ?? 0)],
      ["Created", timeEl(e.created_at)],
      ["Last activity", timeEl(e.updated_at)],
      ...(cost === null ? [] : [["Cost so far (list prices)", h("span", { id: "experiment-cost" }, usd(cost))]]),
    ]));
}

function quotaCell(r) {
  if (r.state !== "OPEN") return String(r.min_updates ?? "—");
  const quota = Number(r.min_updates);
  if (!Number.isFinite(quota) || quota <= 0) return `${r.accepted} / ${r.min_updates}`;
  return h("span", { class: "quota" }, `${r.accepted} / ${quota} `,
    h("progress", { max: quota, value: Math.min(r.accepted, quota), "aria-label": `Round ${r.round}: ${r.accepted} of ${quota} updates` }));
}

function timeline(rounds) {
  if (!rounds.length) return empty("No rounds yet: round 1 opens once the initial model is validated.");
  const dp = rounds.some((r) => r.privacy);
  const note = (r) => r.reason || (r.attempts > 1 ? `${r.attempts} aggregation attempts` : "");
  const notes = rounds.some(note);
  const costs = rounds.some((r) => r.cost);
  const cols = ["Round", "State", "Accepted", "Rejected", "Late", "Quota", "Deadline", "Opened", "Time to seal",
    "Aggregation", "Evaluations", ...(dp ? ["ε spent"] : []), ...(costs ? ["Cost"] : []), ...(notes ? ["Note"] : [])];
  const rows = [...rounds].reverse().map((r) => h("tr", { "data-round": r.round, "data-state": r.state },
    h("th", { scope: "row", class: "num" }, r.round),
    h("td", {}, badge(r.state)),
    h("td", { class: "num" }, num(r.accepted)),
    h("td", { class: "num" }, num(r.rejected)),
    h("td", { class: "num" }, num(r.late)),
    h("td", { class: "num" }, quotaCell(r)),
    h("td", {}, r.state === "OPEN" ? timeEl(r.deadline) : when(r.deadline)),
    h("td", {}, when(r.opened_at)),
    h("td", { class: "num" }, seconds(r.seal_seconds)),
    h("td", { class: "num" }, seconds(r.aggregation_seconds)),
    h("td", { class: "num" }, num(r.evaluations ?? 0)),
    dp ? h("td", { class: "num" }, num(r.privacy?.epsilon)) : null,
    costs ? h("td", { class: "num cost" }, costCell(r)) : null,
    notes ? h("td", {}, note(r)) : null));
  return scrollTable("Round timeline", h("table", { class: "timeline" },
    h("caption", { class: "visually-hidden" }, "Rounds, newest first"),
    h("thead", {}, h("tr", {}, cols.map((c) => h("th", { scope: "col" }, c)))),
    h("tbody", {}, rows)));
}

function metricSeries(rounds, field) {
  const byName = new Map();
  for (const r of rounds) {
    for (const [name, value] of Object.entries(r[field] || {})) {
      if (typeof value !== "number" || !Number.isFinite(value)) continue;
      if (!byName.has(name)) byName.set(name, []);
      byName.get(name).push({ x: r.round, y: value });
    }
  }
  return byName;
}

function charts(rounds) {
  const training = metricSeries(rounds, "metrics");
  const evaluation = metricSeries(rounds, "evaluation_metrics");
  const names = [...new Set([...training.keys(), ...evaluation.keys()])].sort();
  if (!names.length) {
    return [empty("No metrics yet. Clients report them in their updates (fma.metrics) and with Client.evaluate.")];
  }
  return [
    h("p", { class: "muted" }, "Clients' training metrics are averaged weighted by their examples; federated evaluation is the global model on clients' local data."),
    h("div", { class: "charts" }, names.map((name) => lineChart({
      title: name,
      series: [
        { name: "training (clients, weighted)", key: "training", points: training.get(name) || [] },
        { name: "federated evaluation", key: "evaluation", points: evaluation.get(name) || [] },
      ],
    }))),
  ];
}

async function download(button, experimentId, round, getModel, status) {
  button.disabled = true;
  status.textContent = "Requesting a download link…";
  try {
    const info = await getModel(experimentId, round);
    status.textContent = `Downloading ${num(info.size)} bytes; check the sha256 after download.`;
    const link = h("a", { href: info.url, download: `${experimentId}-round-${round}.safetensors`, rel: "noopener" });
    document.body.append(link);
    link.click();
    link.remove();
  } catch (error) {
    status.textContent = error.message;
  } finally {
    button.disabled = false;
  }
}

function models(e, rounds, getModel) {
  if (e.model_version === null || e.model_version === undefined) return empty("No model yet: the initial model is being validated.");
  const published = rounds.filter((r) => r.state === "PUBLISHED");
  const versions = [{ round: 0, sha256: e.initial_sha256 || (e.model_version === 0 ? e.model_sha256 : null), at: e.created_at, label: "initial" },
    ...published.map((r) => ({ round: r.round, sha256: r.model_sha256, at: r.published_at, label: "" }))];
  const status = h("p", { class: "muted", role: "status" });
  const rows = versions.reverse().map((v) => {
    const button = h("button", { type: "button", class: "link", "aria-label": `Download the model of round ${v.round}` }, "Download");
    button.addEventListener("click", () => download(button, e.id, v.round, getModel, status));
    return h("tr", { "data-model-round": v.round },
      h("th", { scope: "row", class: "num" }, v.round, v.label ? h("span", { class: "muted" }, ` (${v.label})`) : null),
      h("td", {}, v.sha256 ? h("code", { class: "sha" }, v.sha256) : h("span", { class: "muted" }, "—")),
      h("td", {}, when(v.at)),
      h("td", {}, button));
  });
  return [scrollTable("Model versions", h("table", { class: "models" },
    h("thead", {}, h("tr", {}, ["Round", "sha256", "Published", "File"].map((c) => h("th", { scope: "col" }, c)))),
    h("tbody", {}, rows))), status];
}

function value(v) {
  if (v === null || v === undefined) return "—";
  return typeof v === "object" ? h("code", {}, JSON.stringify(v)) : String(v);
}

function strategy(e) {
  const { dp, ...params } = e.strategy?.params || {};
  const policy = e.rounds || {};
  return [
    h("h3", {}, `Strategy: ${e.strategy?.name || "—"}`),
    Object.keys(params).length ? facts(Object.entries(params).map(([k, v]) => [k, value(v)])) : empty("No parameters (defaults)."),
    dp ? [h("h3", {}, "Differential privacy"), facts(Object.entries(dp).map(([k, v]) => [k, value(v)]))] : null,
    h("h3", {}, "Round policy"),
    facts(Object.entries(policy).map(([k, v]) => [k.replaceAll("_", " "), value(v)])),
    h("h3", {}, "Client config"),
    Object.keys(e.client_config || {}).length ? facts(Object.entries(e.client_config).map(([k, v]) => [k, value(v)]))
      : empty("Empty."),
    h("h3", {}, "Model"),
    facts([["Tensors", String((e.model_spec || []).length)], ["Max update size", `${num(e.max_update_bytes)} bytes`],
      ...(e.model_spec || []).slice(0, 20).map((t) => [t.name, `${t.dtype} [${(t.shape || []).join(", ")}]`])]),
  ];
}

function privacy(e, rounds) {
  const spent = rounds.filter((r) => r.privacy);
  if (!spent.length) {
    return e.strategy?.params?.dp ? empty("Central DP is on; privacy spent appears after the first aggregation.")
      : empty("This experiment does not use differential privacy.");
  }
  const last = spent.at(-1).privacy;
  return [
    facts([
      ["ε spent", last.epsilon === null ? "∞ (no noise)" : num(last.epsilon)],
      ["δ", num(last.delta)],
      ["Rounds accounted", num(last.rounds)],
      ["Noise multiplier", num(last.noise_multiplier)],
      ["Clipping norm", num(last.clipping_norm)],
      ["Clients clipped (last round)", num(last.clipped_clients)],
    ]),
    lineChart({ title: "ε spent", series: [{ name: "ε (cumulative)", key: "epsilon",
      points: spent.filter((r) => r.privacy.epsilon !== null).map((r) => ({ x: r.round, y: r.privacy.epsilon })) }] }),
  ];
}

/** The whole page for experiment `e` and all its `rounds` (oldest first). */
export function renderExperiment(root, e, rounds, getModel) {
  root.replaceChildren(
    summary(e, rounds),
    section("timeline", "Round timeline", timeline(rounds)),
    ...(isAsync(e) ? [section("versions", "Versions and their buffers (async)", asyncVersions(e, rounds))] : []),
    section("metrics", "Metrics per round", charts(rounds)),
    section("participation", "Client participation", participation(e, rounds)),
    section("rejected", "Rejected and late updates", rejectedUpdates(rounds)),
    section("models", "Model versions", models(e, rounds, getModel)),
    section("lineage", "Lineage and registry", lineage(e)),
    h("div", { class: "two" },
      section("strategy", "Strategy and settings", strategy(e)),
      section("privacy", "Privacy spent", privacy(e, rounds))));
}
