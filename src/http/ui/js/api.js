// The management API client: HTTP basic auth remembered in sessionStorage, JSON in and out, and
// errors turned into ApiError with RabbitMQ's {error, reason} text.

const KEY = 'warren.auth';
let onLoggedOut = () => {};

export class ApiError extends Error {
  constructor(status, error, reason) {
    super(reasonText(reason) || error || `HTTP ${status}`);
    this.status = status;
    this.error = error;
  }
}

/** Reasons may be Erlang terms rendered as JSON: lists of char codes, nested arrays. */
function reasonText(r) {
  if (r == null) return '';
  if (typeof r === 'string') return r.trim();
  if (Array.isArray(r) && r.length && r.every((c) => Number.isInteger(c) && c >= 0 && c < 0x110000)) {
    return String.fromCodePoint(...r);
  }
  if (Array.isArray(r)) return r.map(reasonText).join(' ');
  return JSON.stringify(r);
}

function basic(user, pass) {
  const b = new TextEncoder().encode(`${user}:${pass}`);
  let s = '';
  for (const x of b) s += String.fromCharCode(x);
  return 'Basic ' + btoa(s);
}

export function session() {
  try { return JSON.parse(sessionStorage.getItem(KEY)); } catch { return null; }
}

export function setLoggedOutHandler(f) { onLoggedOut = f; }

export function logout(message) {
  sessionStorage.removeItem(KEY);
  onLoggedOut(message);
}

async function request(method, path, { body, headers = {}, auth, raw } = {}) {
  const s = session();
  const authorization = auth || (s && s.auth);
  const init = {
    method,
    // 'omit' keeps the browser from showing its own basic-auth prompt on a 401.
    credentials: 'omit',
    headers: { Accept: 'application/json', ...headers },
  };
  if (authorization) init.headers.Authorization = authorization;
  if (body !== undefined) {
    init.body = typeof body === 'string' ? body : JSON.stringify(body);
    init.headers['Content-Type'] = 'application/json';
  }
  let res;
  try {
    res = await fetch('api' + path, init);
  } catch (e) {
    throw new ApiError(0, 'network', 'The broker cannot be reached');
  }
  if (raw && res.ok) return res;
  const text = res.status === 204 ? '' : await res.text();
  let data = null;
  if (text) { try { data = JSON.parse(text); } catch { data = text; } }
  if (!res.ok) {
    const err = new ApiError(res.status, data && data.error, data && data.reason);
    // "not_authorized" (with a z) is a failed login; "not_authorised" is a refused operation.
    if (res.status === 401 && !auth && (!data || data.error === 'not_authorized')) {
      logout('Your session ended: please log in again.');
    }
    throw err;
  }
  return data;
}

export const api = {
  get: (path) => request('GET', path),
  put: (path, body) => request('PUT', path, { body: body || {} }),
  post: (path, body) => request('POST', path, { body: body || {} }),
  del: (path, headers) => request('DELETE', path, { headers }),
  raw: (path) => request('GET', path, { raw: true }),
};

/** Check credentials with /api/whoami; on success remember them for this browser session. */
export async function login(user, pass) {
  const auth = basic(user, pass);
  const me = await request('GET', '/whoami', { auth });
  const tags = Array.isArray(me.tags) ? me.tags : String(me.tags || '').split(',').filter(Boolean);
  sessionStorage.setItem(KEY, JSON.stringify({ auth, user: me.name, tags }));
  return me;
}

export function hasTag(...wanted) {
  const s = session();
  const tags = (s && s.tags) || [];
  return wanted.some((t) => tags.includes(t));
}

export function isAdmin() {
  return hasTag('administrator');
}
