// The JSON API client: same-origin fetch with the session's CSRF token in a header.

export class ApiError extends Error {
  constructor(status, message, kind) {
    super(message);
    this.status = status;
    this.kind = kind || 'error';
  }
}

export function csrfToken() {
  const meta = document.querySelector('meta[name="csrf-token"]');
  return meta ? meta.content : '';
}

/** Parse an error body ({"error": {"message"}}) or fall back to the status text. */
export function errorMessage(status, text, fallback) {
  try {
    const data = JSON.parse(text);
    if (data && data.error && data.error.message) return data.error.message;
  } catch (_) { /* not JSON */ }
  if (status === 413) return 'the file is too large';
  if (status === 0) return 'the connection failed';
  return fallback || `request failed (${status})`;
}

/**
 * Call the API. `body` is sent as JSON (or as-is when it is FormData).
 * Resolves to the parsed JSON (or null); rejects with ApiError.
 */
export async function api(path, { method = 'GET', body, keepalive = false } = {}) {
  const headers = { Accept: 'application/json' };
  if (method !== 'GET' && method !== 'HEAD') headers['X-CSRF-Token'] = csrfToken();
  let payload;
  if (body instanceof FormData) {
    payload = body;
  } else if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    payload = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, { method, headers, body: payload, credentials: 'same-origin', keepalive });
  } catch (err) {
    throw new ApiError(0, 'the server cannot be reached; check your connection', 'network');
  }
  const text = await response.text();
  if (!response.ok) {
    let kind;
    try { kind = JSON.parse(text).error.kind; } catch (_) { kind = undefined; }
    throw new ApiError(response.status, errorMessage(response.status, text), kind);
  }
  return text ? JSON.parse(text) : null;
}

// Ask for music (POST to path) and open the delivery's page; on a refusal show the reason
// in errorEl and enable the button again.
export async function requestMusic(path, body, button, errorEl) {
  try {
    const data = await api(path, { method: 'POST', body });
    window.location.assign(data.url);
  } catch (err) {
    errorEl.textContent = err.message;
    errorEl.hidden = false;
    button.disabled = false;
  }
}

export function formatSeconds(s) {
  if (!Number.isFinite(s) || s < 0) s = 0;
  const m = Math.floor(s / 60);
  const r = Math.floor(s % 60);
  return `${m}:${String(r).padStart(2, '0')}`;
}
