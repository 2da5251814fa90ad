// DOM building and formatting helpers. Every string goes into the page as a text node or an
// attribute value set through the DOM, never as HTML, so names from the broker cannot inject markup.

/** h('a', {href, class, onclick}, child...) builds an element; children may be strings, nodes, arrays, null. */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k === 'value' && tag === 'textarea') el.textContent = v;
    else if (k === 'checked') el.defaultChecked = el.checked = true;
    else if (k === 'selected') el.defaultSelected = el.selected = true;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

/** Replace all children of el. */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

export const enc = encodeURIComponent;

const nf = new Intl.NumberFormat('en-US');
export function num(n) {
  return typeof n === 'number' ? nf.format(n) : n == null ? '' : String(n);
}

export function rate(details) {
  const r = details && typeof details.rate === 'number' ? details.rate : null;
  if (r === null) return '';
  return (r >= 100 ? Math.round(r) : r.toFixed(1)) + '/s';
}

export function bytes(n) {
  if (typeof n !== 'number') return '';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i === 0 ? n : n.toFixed(n < 10 ? 1 : 0)) + '\u00a0' + units[i];
}

export function duration(ms) {
  if (typeof ms !== 'number') return '';
  let s = Math.floor(ms / 1000);
  const d = Math.floor(s / 86400); s -= d * 86400;
  const hr = Math.floor(s / 3600); s -= hr * 3600;
  const m = Math.floor(s / 60); s -= m * 60;
  if (d) return `${d}d ${hr}h`;
  if (hr) return `${hr}h ${m}m`;
  if (m) return `${m}m ${s}s`;
  return `${s}s`;
}

export function datetime(ms) {
  if (typeof ms !== 'number') return '';
  const d = new Date(ms);
  const p = (x) => String(x).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

/** Value at a dotted path, e.g. get(q, 'message_stats.publish_details'). */
export function get(obj, path) {
  let v = obj;
  for (const k of path.split('.')) {
    if (v == null) return undefined;
    v = v[k];
  }
  return v;
}

/** A short text form of an arguments/properties table. */
export function kv(obj) {
  if (!obj || typeof obj !== 'object' || Array.isArray(obj)) return '';
  return Object.entries(obj).map(([k, v]) => `${k}: ${typeof v === 'object' ? JSON.stringify(v) : v}`).join(', ');
}

/** The default exchange is "" in the API and amq.default in paths. */
export function exchangeLabel(name) {
  return name === '' ? '(AMQP default)' : name;
}

export function link(href, text, attrs = {}) {
  return h('a', { href, ...attrs }, text);
}

export function queueHref(vhost, name) {
  return `#/queues/${enc(vhost)}/${enc(name)}`;
}
export function exchangeHref(vhost, name) {
  return `#/exchanges/${enc(vhost)}/${enc(name === '' ? 'amq.default' : name)}`;
}
export function connectionHref(name) {
  return `#/connections/${enc(name)}`;
}
export function channelHref(name) {
  return `#/channels/${enc(name)}`;
}

/** A <dl> of label/value pairs; rows with empty values are skipped. */
export function facts(pairs) {
  return h('dl', { class: 'facts' }, pairs.filter(([, v]) => v !== '' && v != null).map(([k, v]) => [h('dt', null, k), h('dd', null, v)]));
}

export function section(title, ...body) {
  return h('section', { class: 'panel' }, h('h2', null, title), ...body);
}

/** Collapsible section, like RabbitMQ's foldable page parts. */
export function fold(title, open, ...body) {
  return h('details', { class: 'panel fold', open }, h('summary', null, h('h2', null, title)), h('div', { class: 'fold-body' }, ...body));
}

let seq = 0;
/** A labelled form field; returns [labelRow, control]. */
export function field(label, control, hint) {
  if (!control.id) control.id = `f${++seq}`;
  return h('div', { class: 'field' }, h('label', { for: control.id }, label), control, hint ? h('span', { class: 'hint' }, hint) : null);
}

export function select(name, options, value) {
  return h('select', { name }, options.map((o) => {
    const [v, t] = Array.isArray(o) ? o : [o, o];
    return h('option', { value: v, selected: v === value }, t);
  }));
}
