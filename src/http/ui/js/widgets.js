// Shared interactive pieces: status messages, a confirmation dialog, a key/value editor for
// arguments and headers, form helpers.
import { h, field, select } from './dom.js';

/** Show a message in the status area (announced to screen readers). kind: ok | error. */
export function notify(text, kind = 'ok') {
  const box = document.getElementById('toasts');
  const t = h('div', { class: `toast ${kind}`, role: kind === 'error' ? 'alert' : 'status' }, text);
  box.append(t);
  setTimeout(() => t.remove(), kind === 'error' ? 8000 : 4000);
}

/** A modal yes/no question; resolves true when confirmed. Escape cancels. */
export function confirmDialog(question, yes = 'Yes') {
  return new Promise((resolve) => {
    const dlg = h('dialog', { class: 'confirm', 'aria-label': 'Confirm' },
      h('p', null, question),
      h('div', { class: 'actions' },
        h('button', { type: 'button', class: 'danger', value: 'yes', onclick: () => dlg.close('yes') }, yes),
        h('button', { type: 'button', value: 'no', onclick: () => dlg.close('no') }, 'Cancel')));
    dlg.addEventListener('close', () => { resolve(dlg.returnValue === 'yes'); dlg.remove(); });
    document.body.append(dlg);
    dlg.showModal();
    dlg.querySelector('button.danger').focus();
  });
}

/** Run an async action from a form or button: disables it meanwhile, reports success or the API's error. */
export async function act(el, fn, okText) {
  if (el) el.setAttribute('aria-busy', 'true');
  const controls = el ? el.querySelectorAll('button, input[type=submit]') : [];
  controls.forEach((b) => { b.disabled = true; });
  try {
    const r = await fn();
    if (okText) notify(typeof okText === 'function' ? okText(r) : okText);
    return r;
  } catch (e) {
    notify(e.message || String(e), 'error');
    return undefined;
  } finally {
    if (el) el.removeAttribute('aria-busy');
    controls.forEach((b) => { b.disabled = false; });
  }
}

/** A form whose submit runs fn(values) through act(); values are the named controls' values. */
export function form(cls, children, fn, okText) {
  const f = h('form', { class: `form ${cls || ''}` }, children);
  f.addEventListener('reset', () => f.querySelectorAll('.kv').forEach((d) => d.kvReset()));
  f.addEventListener('submit', async (e) => {
    e.preventDefault();
    const r = await act(f, () => fn(values(f), f), okText);
    if (r !== undefined && f.dataset.reset !== 'no') f.reset();
  });
  return f;
}

export function values(f) {
  const out = {};
  for (const el of f.elements) {
    if (!el.name) continue;
    if (el.type === 'checkbox') out[el.name] = el.checked;
    else if (el.type === 'radio') { if (el.checked) out[el.name] = el.value; }
    else if (el.type !== 'submit' && el.type !== 'button') out[el.name] = el.value;
  }
  for (const d of f.querySelectorAll('.kv')) out[d.dataset.name] = d.kvValue();
  return out;
}

export function input(name, attrs = {}) {
  return h('input', { name, type: 'text', autocomplete: 'off', spellcheck: 'false', ...attrs });
}

export { field, select };

/** Typed value from an editor row: number, boolean, list (JSON) or string. */
function typed(v, t) {
  if (t === 'number') {
    const n = Number(v);
    if (v.trim() === '' || Number.isNaN(n)) throw new Error(`"${v}" is not a number`);
    return n;
  }
  if (t === 'boolean') return v.trim().toLowerCase() === 'true';
  if (t === 'list') {
    try { const j = JSON.parse(v); if (Array.isArray(j)) return j; } catch { /* fall through */ }
    return v.split(',').map((x) => x.trim()).filter(Boolean);
  }
  return v;
}

/**
 * Rows of key = value (type) that grow as they fill, as in RabbitMQ's argument editors.
 * `shortcuts` are known keys offered as buttons (with their usual type).
 */
export function kvEditor(name, label, shortcuts = [], defaultType = 'string') {
  const rows = h('div', { class: 'kv-rows' });
  const addRow = (k = '', v = '', t = defaultType) => {
    const key = h('input', { type: 'text', 'aria-label': `${label} key`, value: k, class: 'kv-key', spellcheck: 'false' });
    const val = h('input', { type: 'text', 'aria-label': `${label} value`, value: v, class: 'kv-val', spellcheck: 'false' });
    const typ = select('', [['string', 'String'], ['number', 'Number'], ['boolean', 'Boolean'], ['list', 'List']], t);
    typ.setAttribute('aria-label', `${label} type`);
    const row = h('div', { class: 'kv-row' }, key, h('span', { 'aria-hidden': 'true' }, '='), val, typ);
    const grow = () => { if (rows.lastElementChild === row && (key.value || val.value)) addRow(); };
    key.addEventListener('input', grow);
    val.addEventListener('input', grow);
    rows.append(row);
    return row;
  };
  addRow();
  const sc = shortcuts.length
    ? h('div', { class: 'kv-shortcuts' }, 'Add: ', shortcuts.map(([k, t]) => h('button', {
      type: 'button', class: 'link', onclick: () => {
        const last = rows.lastElementChild;
        const [key, , typ] = last.querySelectorAll('input, select');
        key.value = k; typ.value = t || 'string';
        key.dispatchEvent(new Event('input'));
        last.querySelector('.kv-val').focus();
      },
    }, k)))
    : null;
  const el = h('div', { class: 'field kv', dataset: { name } }, h('span', { class: 'label' }, label), h('div', null, rows, sc));
  el.kvValue = () => {
    const out = {};
    for (const row of rows.children) {
      const [key, val, typ] = row.querySelectorAll('input, select');
      if (!key.value) continue;
      out[key.value] = typed(val.value, typ.value);
    }
    return out;
  };
  el.kvReset = () => { rows.replaceChildren(); addRow(); };
  return el;
}
