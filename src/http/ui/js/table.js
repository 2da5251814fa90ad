// The list component used by every list page: server-side pagination, name filter (substring or
// regex), sort by column, a column chooser, all remembered per list in localStorage.
// Endpoints the API does not paginate (consumers, users, policies…) are paged in the browser with
// the same controls.
import { api } from './api.js';
import { h, fill, num, get } from './dom.js';

const PAGE_SIZES = [20, 50, 100, 500];

function load(id) {
  try { return JSON.parse(localStorage.getItem(`warren.list.${id}`)) || {}; } catch { return {}; }
}

/**
 * opts: id (storage key), title, path (string or () => string), columns: [{key, label, sort, render(row), hide}],
 * serverPaged (bool), rowKey(row), sortDefault, empty text, filter (bool, default true).
 * Returns {el, refresh()}.
 */
export function listTable(opts) {
  const saved = load(opts.id);
  const state = {
    page: 1,
    pageSize: saved.pageSize || 100,
    name: '',
    regex: !!saved.regex,
    sort: saved.sort || '',
    reverse: !!saved.reverse,
    hidden: new Set(saved.hidden || opts.columns.filter((c) => c.hide).map((c) => c.key)),
  };
  const save = () => localStorage.setItem(`warren.list.${opts.id}`, JSON.stringify({
    pageSize: state.pageSize, regex: state.regex, sort: state.sort, reverse: state.reverse, hidden: [...state.hidden],
  }));

  const title = opts.title ? h('h2', null, opts.title) : null;
  const count = h('span', { class: 'count', 'aria-live': 'polite' });
  const filterInput = h('input', { type: 'search', class: 'filter', placeholder: 'Filter by name', 'aria-label': `Filter ${opts.title || 'list'} by name`, spellcheck: 'false' });
  const regexBox = h('input', { type: 'checkbox', checked: state.regex });
  let debounce;
  filterInput.addEventListener('input', () => {
    clearTimeout(debounce);
    debounce = setTimeout(() => { state.name = filterInput.value; state.page = 1; refresh(); }, 250);
  });
  regexBox.addEventListener('change', () => { state.regex = regexBox.checked; state.page = 1; save(); refresh(); });

  const sizeSel = h('select', { 'aria-label': 'Rows per page' }, PAGE_SIZES.map((n) => h('option', { value: n, selected: n === state.pageSize }, `${n} per page`)));
  sizeSel.addEventListener('change', () => { state.pageSize = Number(sizeSel.value); state.page = 1; save(); refresh(); });

  const chooser = h('details', { class: 'columns-chooser' }, h('summary', null, 'Columns'),
    h('fieldset', null, h('legend', null, 'Show columns'), opts.columns.map((c) => {
      const cb = h('input', { type: 'checkbox', checked: !state.hidden.has(c.key) });
      cb.addEventListener('change', () => {
        if (cb.checked) state.hidden.delete(c.key); else state.hidden.add(c.key);
        save(); render();
      });
      return h('label', null, cb, ' ', c.label);
    })));

  const pager = h('nav', { class: 'pager', 'aria-label': 'Pages' });
  const table = h('table', { class: 'list' });
  const status = h('p', { class: 'table-status' });
  const toolbar = h('div', { class: 'toolbar' },
    opts.filter === false ? null : [filterInput, h('label', { class: 'inline' }, regexBox, ' Regex')],
    sizeSel, chooser, count);
  const el = h('section', { class: 'panel list-panel', dataset: { list: opts.id } },
    h('div', { class: 'list-head' }, title, opts.actions || null), toolbar, h('div', { class: 'table-wrap' }, table), status, pager);

  let data = { items: [], page: 1, page_count: 0, filtered_count: 0, total_count: 0 };
  let seq = 0;

  function visible() { return opts.columns.filter((c) => !state.hidden.has(c.key)); }

  function sortBy(c) {
    const key = c.sort || c.key;
    if (state.sort === key) state.reverse = !state.reverse;
    else { state.sort = key; state.reverse = false; }
    state.page = 1; save(); refresh();
  }

  function render() {
    const cols = visible();
    // Rebuilding the header must not lose a keyboard user's place on a sort button.
    const focused = table.contains(document.activeElement) ? document.activeElement.dataset.key : null;
    const head = h('tr', null, cols.map((c) => {
      const key = c.sort || c.key;
      const sorted = state.sort === key;
      const aria = sorted ? (state.reverse ? 'descending' : 'ascending') : null;
      const content = c.sortable === false ? c.label
        : h('button', { type: 'button', class: 'sort', dataset: { key }, onclick: () => sortBy(c) }, c.label, sorted ? (state.reverse ? ' \u25BC' : ' \u25B2') : '');
      return h('th', { scope: 'col', 'aria-sort': aria, class: c.num ? 'num' : null }, content);
    }));
    const rows = data.items.map((row) => h('tr', null, cols.map((c) => {
      const v = c.render ? c.render(row) : get(row, c.key);
      return h('td', { class: c.num ? 'num' : null }, typeof v === 'number' ? num(v) : v);
    })));
    fill(table,
      opts.caption ? h('caption', { class: 'sr-only' }, opts.caption) : null,
      h('thead', null, head),
      h('tbody', null, rows.length ? rows : h('tr', null, h('td', { colspan: cols.length, class: 'empty' }, opts.empty || 'Nothing to show'))));
    if (focused) { const b = table.querySelector(`button.sort[data-key="${CSS.escape(focused)}"]`); if (b) b.focus(); }
    const f = data.filtered_count;
    fill(count, f === data.total_count ? `${num(f)} ${f === 1 ? 'item' : 'items'}` : `${num(f)} of ${num(data.total_count)} match`);
    renderPager();
  }

  function renderPager() {
    const pc = data.page_count || 0;
    if (pc <= 1) { fill(pager); return; }
    const go = (p) => { state.page = p; refresh(); };
    const pageSel = h('select', { 'aria-label': 'Page' });
    for (let i = 1; i <= pc; i++) pageSel.append(h('option', { value: i, selected: i === state.page }, `Page ${i} of ${pc}`));
    pageSel.addEventListener('change', () => go(Number(pageSel.value)));
    fill(pager,
      h('button', { type: 'button', disabled: state.page <= 1, onclick: () => go(state.page - 1) }, '\u2039 Previous'),
      pageSel,
      h('button', { type: 'button', disabled: state.page >= pc, onclick: () => go(state.page + 1) }, 'Next \u203A'));
  }

  function clientPage(all) {
    let items = all;
    if (state.name) {
      let test;
      if (state.regex) {
        let re;
        try { re = new RegExp(state.name, 'i'); } catch { throw new Error('Invalid regular expression'); }
        test = (n) => re.test(n);
      } else {
        const needle = state.name.toLowerCase();
        test = (n) => n.toLowerCase().includes(needle);
      }
      const nameOf = opts.nameOf || ((r) => String(r.name ?? ''));
      items = items.filter((r) => test(nameOf(r)));
    }
    if (state.sort) {
      const k = state.sort;
      items = [...items].sort((a, b) => {
        const x = get(a, k); const y = get(b, k);
        if (typeof x === 'number' || typeof y === 'number') return (x ?? 0) - (y ?? 0);
        return String(x ?? '').localeCompare(String(y ?? ''));
      });
      if (state.reverse) items.reverse();
    }
    const pc = Math.ceil(items.length / state.pageSize);
    if (state.page > Math.max(pc, 1)) state.page = Math.max(pc, 1);
    const start = (state.page - 1) * state.pageSize;
    return { items: items.slice(start, start + state.pageSize), page: state.page, page_count: pc, filtered_count: items.length, total_count: all.length };
  }

  async function fetchPage() {
    const path = typeof opts.path === 'function' ? opts.path() : opts.path;
    if (!opts.serverPaged) {
      const all = await api.get(path);
      return clientPage(Array.isArray(all) ? all : []);
    }
    const q = new URLSearchParams({ page: state.page, page_size: state.pageSize, name: state.name, use_regex: state.regex, pagination: true });
    if (state.sort) { q.set('sort', state.sort); q.set('sort_reverse', state.reverse); }
    const sep = path.includes('?') ? '&' : '?';
    try {
      return await api.get(`${path}${sep}${q}`);
    } catch (e) {
      if (e.error === 'page_out_of_range' && state.page > 1) { state.page = 1; return fetchPage(); }
      throw e;
    }
  }

  async function refresh() {
    const my = ++seq;
    el.setAttribute('aria-busy', 'true');
    try {
      const d = await fetchPage();
      if (my !== seq) return;
      data = d;
      state.page = d.page || 1;
      fill(status);
      render();
    } catch (e) {
      if (my !== seq) return;
      fill(status, h('span', { class: 'error', role: 'alert' }, e.message));
      if (!table.firstChild) render();
    } finally {
      if (my === seq) el.removeAttribute('aria-busy');
    }
  }

  render();
  return { el, refresh };
}

/** A plain table for short lists already in hand (consumers of a queue, bindings…). cols: [{label, render, num}]. */
export function staticTable(cols, rows, empty = 'Nothing to show', attrs = {}) {
  return h('div', { class: 'table-wrap' }, h('table', { class: 'list', ...attrs },
    h('thead', null, h('tr', null, cols.map((c) => h('th', { scope: 'col', class: c.num ? 'num' : null }, c.label)))),
    h('tbody', null, rows.length
      ? rows.map((r) => h('tr', null, cols.map((c) => {
        const v = c.render(r);
        return h('td', { class: c.num ? 'num' : null }, typeof v === 'number' ? num(v) : v);
      })))
      : h('tr', null, h('td', { colspan: cols.length, class: 'empty' }, empty)))));
}
