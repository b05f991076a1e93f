// The livehub REST API: one fetch wrapper, errors as ApiError with the server's
// {error, code, details}, and the list's paging headers (X-Total-Count, Link rel="next").

export class ApiError extends Error {
  constructor(status, code, message, { details = null, retryAfter = null } = {}) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details;
    this.retryAfter = retryAfter; // seconds, from a 429's Retry-After
  }

  /** The server's reasons for one input field (validation errors name fields by wire name). */
  fieldReasons(field) {
    const reasons = this.details?.[field];
    if (Array.isArray(reasons)) return reasons.map(String);
    if (typeof reasons === 'string') return [reasons];
    return [];
  }
}

/** Retry-After is seconds or an HTTP date; answer whole seconds from now (at least 1). */
function retryAfterSeconds(value) {
  if (!value) return null;
  const seconds = /^\d+$/.test(value.trim()) ? Number(value) : (Date.parse(value) - Date.now()) / 1000;
  return Number.isFinite(seconds) ? Math.max(1, Math.ceil(seconds)) : null;
}

/** The URL of `rel="next"` in a Link header, resolved against the page, or null. */
export function nextLink(header) {
  for (const part of (header ?? '').split(',')) {
    const match = part.match(/<([^>]*)>\s*;(.*)/);
    if (match && /(^|;)\s*rel="?([^";]*\s)?next(\s[^";]*)?"?\s*(;|$)/i.test(match[2])) {
      return new URL(match[1], location.href).href;
    }
  }
  return null;
}

/**
 * Call the REST API. Non-2xx answers throw ApiError. With `full: true` answer
 * {data, headers} instead of the body alone.
 */
export async function api(method, path, { body, token, full = false } = {}) {
  const headers = { Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (token) headers.Authorization = `Bearer ${token}`;
  let res;
  try {
    res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (err) {
    throw new ApiError(0, 'network_error', `cannot reach livehub (${err.message})`);
  }
  const text = await res.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { /* not JSON */ }
  if (!res.ok) {
    const message = data?.error ?? (text.trim().slice(0, 200) || res.statusText);
    throw new ApiError(res.status, data?.code ?? `http_${res.status}`, message, {
      details: data?.details ?? null,
      retryAfter: retryAfterSeconds(res.headers.get('Retry-After')),
    });
  }
  return full ? { data, headers: res.headers } : data;
}

export const describe = (what, err) =>
  `${what}: ${err.message}` + (err.code ? ` [${err.code}${err.status ? `, HTTP ${err.status}` : ''}]` : '');

export const roomPath = (roomId) => `/api/rooms/${encodeURIComponent(roomId)}`;
