// The API client: reads config.json once, keeps the pasted token in sessionStorage only,
// and turns every failure into an ApiError with a message an analyst can act on.

const TOKEN_KEY = "fma.token";
const DEFAULT_API = "/v1";
let apiUrl = null;

export class ApiError extends Error {
  constructor(kind, message, status = 0, code = "") {
    super(message);
    this.kind = kind; // "auth" | "forbidden" | "notfound" | "network" | "server" | "client"
    this.status = status;
    this.code = code;
  }
}

export function getToken() {
  return sessionStorage.getItem(TOKEN_KEY) || "";
}

export function setToken(token) {
  sessionStorage.setItem(TOKEN_KEY, token.trim());
}

export function clearToken() {
  sessionStorage.removeItem(TOKEN_KEY);
}

/** The API base URL from config.json (same origin); "/v1" when the file is absent. */
export async function loadConfig() {
  if (apiUrl !== null) return apiUrl;
  try {
    const response = await fetch("config.json", { cache: "no-store" });
    const config = response.ok ? await response.json() : {};
    apiUrl = String(config.apiUrl || DEFAULT_API).replace(/\/+$/, "");
  } catch {
    apiUrl = DEFAULT_API;
  }
  return apiUrl;
}

function failure(status, body) {
  const error = (body && body.error) || {};
  const code = error.code || "";
  const detail = error.message ? ` (${error.message})` : "";
  if (status === 401) return new ApiError("auth", "Token expired or invalid. Paste a valid analyst or developer token.", status, code);
  if (status === 403) return new ApiError("forbidden", `This token may not read experiments${detail}.`, status, code);
  if (status === 404) return new ApiError("notfound", `Not found${detail}.`, status, code);
  if (status === 429) return new ApiError("server", "The API is throttling requests; retrying shortly.", status, code);
  if (status >= 500) return new ApiError("server", `The API failed (HTTP ${status}); retrying shortly.`, status, code);
  return new ApiError("client", `Request refused (HTTP ${status})${detail}.`, status, code);
}

/** GET a JSON resource under the API; `path` is joined from encoded segments. */
export async function get(segments, query = {}) {
  const base = await loadConfig();
  const path = segments.map((p) => encodeURIComponent(String(p))).join("/");
  const params = new URLSearchParams(Object.entries(query).filter(([, v]) => v !== null && v !== undefined));
  const url = `${base}/${path}${params.toString() ? `?${params}` : ""}`;
  let response;
  try {
    response = await fetch(url, { headers: { Authorization: `Bearer ${getToken()}`, Accept: "application/json" } });
  } catch {
    throw new ApiError("network", "API unreachable. Check your connection or the API URL in config.json; retrying.");
  }
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  if (!response.ok) throw failure(response.status, body);
  return body;
}

/** Every item of a cursor-paginated list (`{key: [...], next_cursor}`), with optional filters. */
export async function getAll(segments, key, limit = 100, query = {}) {
  const items = [];
  let cursor = null;
  do {
    const page = await get(segments, { ...query, limit, cursor });
    items.push(...(page[key] || []));
    cursor = page.next_cursor || null;
  } while (cursor);
  return items;
}

/** Only the filters that are set: `{status, strategy, q}` -> query parameters. */
function filterQuery(filters = {}) {
  return Object.fromEntries(Object.entries(filters).filter(([, v]) => v !== "" && v !== null && v !== undefined));
}

export const api = {
  experiments: (filters) => getAll(["experiments"], "experiments", 100, filterQuery(filters)),
  initialRound: (id) => get(["experiments", id, "rounds", 0]),
  experiment: (id) => get(["experiments", id]),
  rounds: async (id) => (await getAll(["experiments", id, "rounds"], "rounds")).sort((a, b) => a.round - b.round),
  model: (id, round) => get(["experiments", id, "models", round]),
};
