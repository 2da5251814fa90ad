// The single-page app: login, header controls (virtual host, refresh interval, pause), hash routing
// with RabbitMQ's URL scheme, and the refresh loop that updates the current page.
import { api, login, logout, session, setLoggedOutHandler } from './api.js';
import { h, fill } from './dom.js';
import { notify } from './widgets.js';
import { overview } from './views/overview.js';
import { connections, channels, exchanges, queues, consumers } from './views/lists.js';
import { queuePage } from './views/queue.js';
import { exchangePage } from './views/exchange.js';
import { connectionPage, channelPage } from './views/connection.js';
import { usersPage, userPage, vhostsPage, vhostPage } from './views/admin.js';
import { policiesPage, limitsPage } from './views/policies.js';

const main = document.getElementById('main');
const top = document.getElementById('top');
const vhostSel = document.getElementById('vhost-select');
const refreshSel = document.getElementById('refresh-select');
const pauseBtn = document.getElementById('pause');

// [pattern, view]: ':x' segments are decoded path parameters.
const ROUTES = [
  ['', overview],
  ['connections', connections],
  ['connections/:name', connectionPage],
  ['channels', channels],
  ['channels/:name', channelPage],
  ['exchanges', exchanges],
  ['exchanges/:vhost/:name', exchangePage],
  ['queues', queues],
  ['queues/:vhost/:name', queuePage],
  ['consumers', consumers],
  ['users', usersPage],
  ['users/:name', userPage],
  ['vhosts', vhostsPage],
  ['vhosts/:name', vhostPage],
  ['policies', policiesPage],
  ['limits', limitsPage],
];

/** Shared context the views use. */
export const ctx = {
  vhost: () => vhostSel.value,
  vhosts: [],
  overview: null,
};

function match(path) {
  const segs = path === '' ? [] : path.split('/');
  for (const [pat, view] of ROUTES) {
    const ps = pat === '' ? [] : pat.split('/');
    if (ps.length !== segs.length) continue;
    const params = {};
    let ok = true;
    for (let i = 0; i < ps.length; i++) {
      if (ps[i].startsWith(':')) {
        try { params[ps[i].slice(1)] = decodeURIComponent(segs[i]); } catch { ok = false; }
      } else if (ps[i] !== segs[i]) ok = false;
    }
    if (ok) return { view, params, section: ps[0] || '' };
  }
  return null;
}

let current = null; // {refresh}
let renderSeq = 0;

async function route() {
  if (!session()) { showLogin(); return; }
  top.hidden = false;
  const path = location.hash.replace(/^#\/?/, '').replace(/\/$/, '');
  const m = match(path);
  for (const a of document.querySelectorAll('#nav a')) {
    if (m && a.dataset.section === m.section) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
  }
  const my = ++renderSeq;
  main.replaceChildren();
  current = null;
  if (!m) {
    fill(main, h('section', { class: 'panel' }, h('h1', null, 'Not found'), h('p', null, 'No such page. '), h('a', { href: '#/' }, 'Go to the overview')));
    return;
  }
  try {
    const v = await m.view(main, m.params, ctx);
    if (my === renderSeq) { current = v || null; schedule(); }
  } catch (e) {
    if (my !== renderSeq) return;
    fill(main, h('section', { class: 'panel' }, h('h1', null, 'Cannot show this page'), h('p', { class: 'error', role: 'alert' }, e.message)));
  }
}

// ---- refresh loop ----
let timer = null;
let inFlight = false;
function interval() { return Number(refreshSel.value) * 1000; }
function paused() { return pauseBtn.getAttribute('aria-pressed') === 'true'; }

function schedule() {
  clearTimeout(timer);
  if (paused()) return;
  timer = setTimeout(tick, interval());
}

async function tick() {
  if (!paused() && !document.hidden && current && current.refresh && !inFlight && session()) {
    inFlight = true;
    // A failed refresh keeps the last data on screen and says so until a refresh succeeds.
    let problem = '';
    try { await current.refresh(); } catch (e) { problem = `Not refreshed: ${e.message}`; } finally { inFlight = false; }
    let bar = document.getElementById('refresh-error');
    if (problem && !bar) { bar = h('p', { id: 'refresh-error', class: 'error', role: 'alert' }); main.prepend(bar); }
    if (bar) { if (problem) fill(bar, problem); else bar.remove(); }
  }
  schedule();
}

refreshSel.value = localStorage.getItem('warren.refresh') || '5';
refreshSel.addEventListener('change', () => { localStorage.setItem('warren.refresh', refreshSel.value); schedule(); });
pauseBtn.addEventListener('click', () => {
  const p = !paused();
  pauseBtn.setAttribute('aria-pressed', String(p));
  pauseBtn.textContent = p ? 'Resume' : 'Pause';
  if (!p) tick(); else clearTimeout(timer);
});
document.addEventListener('visibilitychange', () => { if (!document.hidden) schedule(); });

// ---- header ----
/** Refill the virtual host chooser (after login, and after a page adds or removes a vhost). */
ctx.reloadVhosts = async () => {
  const vhosts = await api.get('/vhosts?columns=name');
  ctx.vhosts = vhosts.map((v) => v.name);
  const keep = localStorage.getItem('warren.vhost') || '';
  fill(vhostSel, h('option', { value: '' }, 'All'), ctx.vhosts.map((n) => h('option', { value: n }, n)));
  vhostSel.value = ctx.vhosts.includes(keep) ? keep : '';
};

async function loadHeader() {
  const s = session();
  fill(document.getElementById('whoami'), 'User ', h('strong', null, s.user));
  // Admin pages need the administrator tag (policies: policymaker too), as in RabbitMQ's UI.
  const tags = s.tags || [];
  const admin = tags.includes('administrator');
  for (const a of document.querySelectorAll('#nav a')) {
    const sec = a.dataset.section;
    a.hidden = (['users', 'vhosts', 'limits'].includes(sec) && !admin) || (sec === 'policies' && !admin && !tags.includes('policymaker'));
  }
  try {
    const [ov] = await Promise.all([api.get('/overview?columns=cluster_name,node,rabbitmq_version,product_name'), ctx.reloadVhosts()]);
    ctx.overview = ov;
    fill(document.getElementById('cluster'), 'Cluster ', h('strong', null, ov.cluster_name || ''));
  } catch (e) { /* a 401 here logs out; other errors leave the header plain */ }
}
vhostSel.addEventListener('change', () => { localStorage.setItem('warren.vhost', vhostSel.value); route(); });
document.getElementById('logout').addEventListener('click', () => logout());
document.getElementById('skip').addEventListener('click', (e) => { e.preventDefault(); main.focus(); });

// ---- login ----
function showLogin(message) {
  top.hidden = true;
  clearTimeout(timer);
  current = null;
  const user = h('input', { id: 'login-user', name: 'username', autocomplete: 'username', required: true, spellcheck: 'false' });
  const pass = h('input', { id: 'login-pass', name: 'password', type: 'password', autocomplete: 'current-password' });
  const err = h('p', { class: 'error', role: 'alert', id: 'login-error' }, message || '');
  const btn = h('button', { type: 'submit', class: 'primary' }, 'Log in');
  const f = h('form', { class: 'login', 'aria-labelledby': 'login-title' },
    h('h1', { id: 'login-title' }, h('img', { src: 'favicon.svg', alt: '', width: 32, height: 32 }), ' Warren'),
    h('div', { class: 'field' }, h('label', { for: 'login-user' }, 'Username'), user),
    h('div', { class: 'field' }, h('label', { for: 'login-pass' }, 'Password'), pass),
    err, btn);
  f.addEventListener('submit', async (e) => {
    e.preventDefault();
    btn.disabled = true;
    fill(err);
    try {
      await login(user.value, pass.value);
      await loadHeader();
      route();
    } catch (ex) {
      fill(err, ex.status === 401 ? `Login failed: ${ex.message}` : ex.message);
      pass.select();
    } finally { btn.disabled = false; }
  });
  fill(main, f);
  user.focus();
}

setLoggedOutHandler((message) => { showLogin(message); });

window.addEventListener('hashchange', route);
window.addEventListener('unhandledrejection', (e) => { notify(String(e.reason && e.reason.message || e.reason), 'error'); });
if (session()) loadHeader().then(route); else showLogin();
