// The JSON API client: same-origin cookie session, CSRF header on every state-changing
// request, and one error type carrying the server's `{"error":{"code","message"}}`.

let csrfToken = null;
let onUnauthorized = () => {};

export function setCsrf(token) {
  csrfToken = token || null;
}

export function setUnauthorizedHandler(fn) {
  onUnauthorized = fn;
}

export class ApiError extends Error {
  constructor(status, code, message, extra = {}) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
    this.jobId = extra.jobId || null;
    this.retryAfter = extra.retryAfter || null;
  }
}

/** A query string from an object, leaving out empty values. */
export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params || {})) {
    if (v === undefined || v === null || v === "") continue;
    q.set(k, String(v));
  }
  const s = q.toString();
  return s ? `?${s}` : "";
}

/**
 * Calls the API. `opts.body` is sent as JSON; `opts.auth === false` keeps a 401 from
 * sending the user back to the login page (the login form shows it itself).
 */
export async function api(method, path, opts = {}) {
  const headers = { Accept: "application/json" };
  const init = { method, headers, credentials: "same-origin", signal: opts.signal };
  if (opts.body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(opts.body);
  }
  if (method !== "GET" && method !== "HEAD" && csrfToken) {
    headers["X-CSRF-Token"] = csrfToken;
  }
  let resp;
  try {
    resp = await fetch(path + query(opts.query), init);
  } catch (e) {
    if (e && e.name === "AbortError") throw e;
    throw new ApiError(0, "network", "The server cannot be reached. Check that Coffer is running.");
  }
  let data = null;
  const type = resp.headers.get("content-type") || "";
  if (resp.status !== 204 && type.includes("json")) {
    try {
      data = await resp.json();
    } catch {
      data = null;
    }
  }
  if (resp.ok) return data;
  const err = data && data.error ? data.error : {};
  const retry = Number(resp.headers.get("retry-after")) || null;
  const error = new ApiError(
    resp.status,
    err.code || `http_${resp.status}`,
    err.message || `The request failed (HTTP ${resp.status}).`,
    { jobId: err.job_id, retryAfter: retry },
  );
  if (resp.status === 401 && opts.auth !== false) onUnauthorized(error);
  throw error;
}

export const get = (path, q, opts = {}) => api("GET", path, { ...opts, query: q });
export const post = (path, body, opts = {}) => api("POST", path, { ...opts, body });
export const patch = (path, body, opts = {}) => api("PATCH", path, { ...opts, body });
export const del = (path, opts = {}) => api("DELETE", path, opts);

/** Path segment encoding for ids. */
export const seg = (s) => encodeURIComponent(String(s));
