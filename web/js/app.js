// Entry point: token sign-in, hash routing (#/ and #/experiments/<id>), loading/error states
// and auto-refresh. Views render from API data; this file decides what to fetch and when.

import { ApiError, api, clearToken, getToken, loadConfig, setToken } from "./api.js";
import { h, updateRelativeTimes } from "./dom.js";
import { isActive, renderExperiment } from "./experiment.js";
import { listFilters, renderList } from "./list.js";

const REFRESH_MS = 10_000;
const main = document.getElementById("main");
const banner = document.getElementById("banner");
const tools = document.getElementById("tools");
const updated = document.getElementById("updated");
const auto = document.getElementById("auto");

let generation = 0; // bumped on every navigation; stale responses are dropped
let busy = false;
let shown = null; // {key, active, failed}: what is on screen, for refreshes

function route() {
  const match = /^#\/experiments\/([^/?#]+)\/?$/.exec(location.hash);
  return match ? { page: "experiment", id: decodeURIComponent(match[1]) } : { page: "list" };
}

function signIn(message) {
  generation++; // a load still in flight must not paint over the form
  busy = false;
  tools.hidden = true;
  shown = null;
  const input = h("input", { id: "token-input", type: "password", autocomplete: "off", spellcheck: "false",
    required: true, "aria-describedby": "token-help" });
  const form = h("form", { class: "token-form", novalidate: true },
    h("label", { for: "token-input" }, "API token"),
    h("div", { class: "row" }, input, h("button", { type: "submit" }, "Open dashboard")));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    if (!input.value.trim()) return input.focus();
    setToken(input.value);
    load(true);
  });
  main.replaceChildren(h("section", { class: "card login", "aria-labelledby": "login-title" },
    h("h1", { id: "login-title" }, "Sign in with a token"),
    message ? h("p", { class: "alert", role: "alert", id: "auth-error" }, message) : null,
    h("p", { id: "token-help" }, "Paste an analyst or developer token. It is kept in this browser tab only ",
      "(session storage), never put in the address bar, and sent only to the API."),
    form));
  input.focus();
}

function failure(error, retry) {
  const title = { network: "API unreachable", forbidden: "Not allowed", notfound: "Not found", server: "API error" }[error.kind]
    || "Something went wrong";
  main.replaceChildren(h("section", { class: "card error-state", role: "alert", "aria-labelledby": "error-title" },
    h("h1", { id: "error-title" }, title),
    h("p", {}, error.message),
    h("p", { class: "row" },
      h("button", { type: "button", onclick: retry }, "Try again"),
      error.kind === "forbidden" ? h("button", { type: "button", onclick: () => { clearToken(); signIn(); } }, "Use another token") : null,
      route().page === "experiment" ? h("a", { href: "#/" }, "All experiments") : null)));
}

function setBanner(message) {
  banner.hidden = !message;
  banner.textContent = message || "";
}

/** Keep focus and open <details> across a re-render of the same page. */
function preserving(render) {
  const focused = document.activeElement?.id;
  const open = [...main.querySelectorAll("details[open][data-key]")].map((d) => d.dataset.key);
  render();
  for (const key of open) main.querySelector(`details[data-key="${CSS.escape(key)}"]`)?.setAttribute("open", "");
  if (focused) document.getElementById(focused)?.focus({ preventScroll: true });
}

async function fetchPage(where) {
  if (where.page === "list") {
    const filters = JSON.stringify(listFilters);
    return { experiments: await api.experiments({ ...listFilters }), filters };
  }
  const [experiment, rounds] = await Promise.all([api.experiment(where.id), api.rounds(where.id)]);
  // round 0 (the initial model's federated evaluation) exists once the initial model is validated
  const initial = experiment.model_version === null || experiment.model_version === undefined
    ? null : await api.initialRound(where.id);
  return { experiment, rounds, initial };
}

function draw(where, data) {
  if (where.page === "list") {
    document.title = "Experiments · FMA";
    renderList(main, data.experiments, { reload: () => load(false) });
    return true;
  }
  document.title = `${data.experiment.name} · FMA`;
  renderExperiment(main, data.experiment, data.rounds, api.model, data.initial);
  return isActive(data.experiment);
}

/** Load the current route. `fresh`: a navigation (loading state, focus the heading). */
async function load(fresh) {
  if (!getToken()) return signIn();
  const where = route();
  const mine = fresh ? ++generation : generation;
  busy = true;
  if (fresh) {
    shown = null;
    main.setAttribute("aria-busy", "true");
    main.replaceChildren(h("p", { class: "loading", role: "status" },
      where.page === "list" ? "Loading experiments…" : "Loading the experiment…"));
  }
  try {
    await loadConfig();
    const data = await fetchPage(where);
    if (mine !== generation) return;
    if (data.filters && data.filters !== JSON.stringify(listFilters)) return; // a newer filter's load paints
    tools.hidden = false;
    setBanner("");
    preserving(() => { shown = { key: location.hash, active: draw(where, data) }; });
    updated.textContent = `Updated ${new Date().toLocaleTimeString()}`;
    if (fresh) main.querySelector("h1")?.setAttribute("tabindex", "-1");
    if (fresh && document.activeElement === document.body) main.querySelector("h1")?.focus({ preventScroll: true });
  } catch (error) {
    if (mine !== generation) return;
    if (!(error instanceof ApiError)) {
      console.error(error); // a bug in the dashboard or data it does not understand
      return failure(new ApiError("client", `The dashboard could not show this page: ${error.message}`), () => load(true));
    }
    if (error.kind === "auth") {
      clearToken();
      return signIn(error.message);
    }
    const retriable = error.kind === "network" || error.kind === "server";
    if (shown && !shown.failed && !fresh && retriable) {
      setBanner(`${error.message} Showing data from ${updated.textContent.replace("Updated ", "")}.`);
    } else {
      tools.hidden = !retriable;
      failure(error, () => load(true));
      shown = retriable ? { key: location.hash, active: true, failed: true } : null; // auto-refresh retries
    }
  } finally {
    if (mine === generation) {
      busy = false;
      main.removeAttribute("aria-busy");
    }
  }
}

function tick() {
  updateRelativeTimes(main);
  if (busy || document.hidden || !auto.checked || !shown || !getToken()) return;
  if (shown.key === location.hash && shown.active === false) return; // a finished experiment does not change
  load(false);
}

window.addEventListener("hashchange", () => {
  if (location.hash && !location.hash.startsWith("#/")) return; // in-page anchors such as the skip link
  load(true);
});
document.querySelector(".skip").addEventListener("click", (event) => {
  event.preventDefault(); // keep the route in the hash
  main.focus();
});
document.getElementById("refresh").addEventListener("click", () => load(false));
document.getElementById("signout").addEventListener("click", () => {
  clearToken();
  setBanner("");
  signIn();
});
document.addEventListener("visibilitychange", tick);
setInterval(tick, REFRESH_MS);
load(true);
