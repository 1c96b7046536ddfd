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
    stuckAlert(rounds),
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

/** Rounds waiting for their model longer than expected (or after a failed attempt), said loudly. */
function stuckAlert(rounds) {
  const stuck = rounds.filter((r) => r.stuck);
  if (!stuck.length) return null;
  return h("div", { class: "alert", role: "alert", id: "stuck-alert" }, stuck.map((r) => h("p", {},
    `Round ${r.round} has been ${r.state} for ${seconds(r.age_seconds)} (expected within ${seconds(r.expected_seconds)}), `,
    `${r.attempts} aggregation attempt${r.attempts === 1 ? "" : "s"}`,
    r.aggregation_started_at ? [", the latest started ", when(r.aggregation_started_at)] : null,
    r.last_error ? [". Last error: ", h("code", {}, r.last_error)] : ".")));
}

function stateCell(r) {
  if (!r.stuck) return badge(r.state);
  return [badge(r.state), " ", h("span", { class: "badge badge-attention", title: `waiting ${seconds(r.age_seconds)}` },
    `⚠ stuck ${seconds(r.age_seconds)}`)];
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
  const paused = rounds.some((r) => r.refused_paused);
  const note = (r) => r.reason || r.last_error || "";
  const notes = rounds.some(note);
  const costs = rounds.some((r) => r.cost);
  const cols = ["Round", "State", "Accepted", "Rejected", "Late", ...(paused ? ["Refused (paused)"] : []), "Quota",
    "Deadline", "Opened", "Sealed by", "Time to seal", "Attempts", "Aggregation", "Evaluations",
    ...(dp ? ["ε spent"] : []), ...(costs ? ["Cost"] : []), ...(notes ? ["Note"] : [])];
  const rows = [...rounds].reverse().map((r) => h("tr", { "data-round": r.round, "data-state": r.state,
    "data-stuck": r.stuck ? "true" : null },
    h("th", { scope: "row", class: "num" }, r.round),
    h("td", { class: "state" }, stateCell(r)),
    h("td", { class: "num" }, num(r.accepted)),
    h("td", { class: "num" }, num(r.rejected)),
    h("td", { class: "num", "data-col": "late" }, num(r.late)),
    paused ? h("td", { class: "num", "data-col": "refused-paused" }, num(r.refused_paused ?? 0)) : null,
    h("td", { class: "num" }, quotaCell(r)),
    h("td", {}, r.state === "OPEN" ? timeEl(r.deadline) : when(r.deadline)),
    h("td", {}, when(r.opened_at)),
    h("td", { "data-col": "sealed-by" }, r.sealed_by ? h("span", { class: `sealed sealed-${r.sealed_by}` }, r.sealed_by) : "—"),
    h("td", { class: "num" }, seconds(r.seal_seconds)),
    h("td", { class: "num", "data-col": "attempts" }, num(r.attempts ?? 0)),
    h("td", { class: "num" }, seconds(r.aggregation_seconds)),
    h("td", { class: "num" }, num(r.evaluations ?? 0)),
    dp ? h("td", { class: "num" }, num(r.privacy?.epsilon)) : null,
    costs ? h("td", { class: "num cost" }, costCell(r)) : null,
    notes ? h("td", { class: "reason" }, note(r)) : null));
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

const MAX_CLIENT_SERIES = 12; // more lines than this make a chart unreadable
const view = { perClient: false }; // the per-client toggle, kept across refreshes

/** metric name -> client id -> points, from each round's `entries` (updates or client_evaluations). */
function clientSeries(rounds, entries) {
  const byName = new Map();
  for (const r of rounds) {
    for (const u of r[entries] || []) {
      for (const [name, value] of Object.entries(u.metrics || {})) {
        if (typeof value !== "number" || !Number.isFinite(value)) continue;
        if (!byName.has(name)) byName.set(name, new Map());
        const perClient = byName.get(name);
        if (!perClient.has(u.client_id)) perClient.set(u.client_id, []);
        perClient.get(u.client_id).push({ x: r.round, y: value });
      }
    }
  }
  return byName;
}

function clientLines(name, training, evaluation, clients) {
  const lines = [];
  for (const [kind, source, dashed] of [["training", training, false], ["evaluation", evaluation, true]]) {
    const perClient = source.get(name) || new Map();
    for (const id of clients) {
      const points = perClient.get(id);
      if (points?.length) lines.push({ name: `${id} (${kind})`, key: `client-${kind}-${id}`, points, client: true,
        colour: clients.indexOf(id), dashed });
    }
  }
  return lines;
}

/** Charts of every metric; round 0 (the initial model's evaluation) starts the evaluation line. */
function charts(rounds, initial) {
  const withInitial = initial ? [initial, ...rounds] : rounds;
  const training = metricSeries(rounds, "metrics");
  const evaluation = metricSeries(withInitial, "evaluation_metrics");
  const names = [...new Set([...training.keys(), ...evaluation.keys()])].sort();
  if (!names.length) {
    return [empty("No metrics yet. Clients report them in their updates (fma.metrics) and with Client.evaluate.")];
  }
  const perTraining = clientSeries(rounds, "updates");
  const perEvaluation = clientSeries(withInitial, "client_evaluations");
  const everyClient = [...new Set([...perTraining.values(), ...perEvaluation.values()].flatMap((m) => [...m.keys()]))].sort();
  const clients = everyClient.slice(0, MAX_CLIENT_SERIES);
  const container = h("div", { class: "charts" });
  const draw = () => container.replaceChildren(...names.map((name) => lineChart({
    title: name,
    series: [
      ...(view.perClient ? clientLines(name, perTraining, perEvaluation, clients) : []),
      { name: "training (clients, weighted)", key: "training", points: training.get(name) || [] },
      { name: "federated evaluation", key: "evaluation", points: evaluation.get(name) || [] },
    ],
  })));
  draw();
  const toggle = h("input", { type: "checkbox", id: "per-client", checked: view.perClient,
    disabled: everyClient.length ? null : true,
    onchange: (event) => { view.perClient = event.target.checked; draw(); } });
  const cut = everyClient.length > MAX_CLIENT_SERIES ? ` (the first ${MAX_CLIENT_SERIES} of ${everyClient.length} clients by id)` : "";
  return [
    h("p", { class: "muted" }, "Clients' training metrics are averaged weighted by their examples; federated evaluation is the global model on clients' local data",
      initial ? ", from round 0 (the initial model)." : "."),
    h("p", {}, h("label", { class: "toggle", for: "per-client" }, toggle, ` Show each client's series${cut}`)),
    container,
  ];
}

/** `<experiment-name>-round-<n>.safetensors`, cut to safe characters (as the API names it). */
export function modelFilename(name, round) {
  const safe = String(name).replace(/[^A-Za-z0-9._-]/g, "-").split("-").filter(Boolean).join("-")
    .replace(/^[._-]+|[._-]+$/g, "").slice(0, 100);
  return `${safe || "model"}-round-${round}.safetensors`;
}

async function download(button, e, round, getModel, status) {
  button.disabled = true;
  status.textContent = "Requesting a download link…";
  try {
    const info = await getModel(e.id, round);
    const filename = info.filename || modelFilename(e.name, round);
    status.textContent = `Downloading ${filename} (${num(info.size)} bytes); check the sha256 after download.`;
    // `download` names the file on the same origin; elsewhere the URL's Content-Disposition does
    const link = h("a", { href: info.url, download: filename, rel: "noopener" });
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
    button.addEventListener("click", () => download(button, e, v.round, getModel, status));
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

/** The whole page for experiment `e`, all its `rounds` (oldest first) and round 0 (`initial`, or null). */
export function renderExperiment(root, e, rounds, getModel, initial = null) {
  root.replaceChildren(
    summary(e, rounds),
    section("timeline", "Round timeline", timeline(rounds)),
    ...(isAsync(e) ? [section("versions", "Versions and their buffers (async)", asyncVersions(e, rounds))] : []),
    section("metrics", "Metrics per round", charts(rounds, initial)),
    section("participation", "Client participation", participation(e, rounds)),
    section("rejected", "Rejected, late and refused updates", rejectedUpdates(rounds)),
    section("models", "Model versions", models(e, rounds, getModel)),
    section("lineage", "Lineage and registry", lineage(e)),
    h("div", { class: "two" },
      section("strategy", "Strategy and settings", strategy(e)),
      section("privacy", "Privacy spent", privacy(e, rounds))));
}
