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
  throw failure(resp, data, opts);
}

/** The ApiError of a failed response (`data`: its parsed JSON body, if any); a 401 also
 * goes back to the login page unless `opts.auth === false`. */
function failure(resp, data, opts = {}) {
  const err = data && data.error ? data.error : {};
  const retry = Number(resp.headers.get("retry-after")) || null;
  const error = new ApiError(
    resp.status,
    err.code || `http_${resp.status}`,
    err.message || `The request failed (HTTP ${resp.status}).`,
    { jobId: err.job_id, retryAfter: retry },
  );
  if (resp.status === 401 && opts.auth !== false) onUnauthorized(error);
  return error;
}

/** The file name of a `Content-Disposition` header (RFC 6266: `filename*` first). */
export function dispositionName(header) {
  if (!header) return null;
  const star = /filename\*\s*=\s*([^']*)'[^']*'([^;]+)/i.exec(header);
  if (star) {
    try {
      return decodeURIComponent(star[2].trim().replace(/^"|"$/g, ""));
    } catch {
      // fall back to the plain parameter
    }
  }
  const plain = /filename\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^;\s]+))/i.exec(header);
  if (!plain) return null;
  const name = plain[1] !== undefined ? plain[1].replace(/\\(.)/g, "$1") : plain[2];
  // Only a base name: never a path.
  return name.split(/[\\/]/).pop() || null;
}

/**
 * Fetches a file export (GET, with the session cookie) into memory and hands it to the
 * browser as a download named by the server's `Content-Disposition`. For bounded
 * files only (CSV and PDF reports), never for snapshot archives. Failures throw the
 * server's ApiError (a 401 also goes back to the login page), so nothing but the file
 * itself is ever saved.
 */
export async function fetchDownload(path, params, { fallbackName = "download", signal } = {}) {
  let resp;
  try {
    resp = await fetch(path + query(params), { method: "GET", credentials: "same-origin", signal, headers: { Accept: "*/*" } });
  } catch (e) {
    if (e && e.name === "AbortError") throw e;
    throw new ApiError(0, "network", "The server cannot be reached. Check that Coffer is running.");
  }
  if (!resp.ok) {
    let data = null;
    if ((resp.headers.get("content-type") || "").includes("json")) {
      try {
        data = await resp.json();
      } catch {
        data = null;
      }
    }
    throw failure(resp, data);
  }
  const blob = await resp.blob();
  const name = dispositionName(resp.headers.get("content-disposition")) || fallbackName;
  const url = URL.createObjectURL(blob);
  const a = document.createElement("a");
  a.href = url;
  a.download = name;
  a.hidden = true;
  document.body.append(a);
  a.click();
  a.remove();
  // The download has taken its copy by then; the memory goes back.
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
  return { name, size: blob.size };
}

let sessionCheckedAt = 0;

/**
 * Whether the session is still valid, asked cheaply (GET /api/me) at most every 10 s;
 * a 401 goes back to the login page. Used before a plain download link is followed.
 */
export async function sessionAlive() {
  if (Date.now() - sessionCheckedAt < 10_000) return true;
  try {
    await api("GET", "/api/me");
    sessionCheckedAt = Date.now();
    return true;
  } catch (e) {
    if (e.status === 401) return false;
    throw e;
  }
}

export const get = (path, q, opts = {}) => api("GET", path, { ...opts, query: q });
export const post = (path, body, opts = {}) => api("POST", path, { ...opts, body });
export const patch = (path, body, opts = {}) => api("PATCH", path, { ...opts, body });
export const del = (path, opts = {}) => api("DELETE", path, opts);

/** Path segment encoding for ids. */
export const seg = (s) => encodeURIComponent(String(s));
