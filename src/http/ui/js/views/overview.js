// Overview: totals, alarms, message rate and queued message charts, node facts, listeners, and
// definitions export/import.
import { api, isAdmin, hasTag } from '../api.js';
import { h, fill, num, bytes, duration, facts, section, enc } from '../dom.js';
import { rateChart, lengthChart, samples, rangeSelect } from '../chart.js';
import { act, notify, select } from '../widgets.js';

export const RATE_KEYS = [
  ['publish', 'Publish'], ['confirm', 'Confirm'], ['deliver_get', 'Deliver'],
  ['redeliver', 'Redeliver'], ['ack', 'Ack'], ['return_unroutable', 'Return'],
];

function totals(ov) {
  const o = ov.object_totals || {};
  const q = ov.queue_totals || {};
  const card = (label, value, href) => h('li', { class: 'card' },
    h('span', { class: 'card-label' }, label),
    href ? h('a', { class: 'card-value', href }, num(value ?? 0)) : h('span', { class: 'card-value' }, num(value ?? 0)));
  return h('ul', { class: 'cards', 'aria-label': 'Totals' },
    card('Connections', o.connections, '#/connections'),
    card('Channels', o.channels, '#/channels'),
    card('Exchanges', o.exchanges, '#/exchanges'),
    card('Queues', o.queues, '#/queues'),
    card('Consumers', o.consumers, '#/consumers'),
    card('Ready', q.messages_ready),
    card('Unacked', q.messages_unacknowledged),
    card('Total messages', q.messages));
}

function alarms(nodes) {
  if (!nodes.length) return null;
  const list = [];
  for (const n of nodes) {
    if (n.mem_alarm) list.push(`Memory alarm on ${n.name}: ${bytes(n.mem_used)} used, limit ${bytes(n.mem_limit)}. Publishers are blocked.`);
    if (n.disk_free_alarm) list.push(`Disk alarm on ${n.name}: ${bytes(n.disk_free)} free, limit ${bytes(n.disk_free_limit)}. Publishers are blocked.`);
    if (n.running === false) list.push(`Node ${n.name} is not running.`);
  }
  return list.length
    ? h('div', { class: 'alarms bad', role: 'alert', id: 'alarms' }, h('strong', null, 'Alarms in effect'), h('ul', null, list.map((t) => h('li', null, t))))
    : h('div', { class: 'alarms good', id: 'alarms' }, 'No alarms: memory and disk are within limits.');
}

function nodeFacts(ov, n) {
  const app = (n.applications || []).find((a) => a.name === 'warren');
  const store = n.warren_store;
  const pct = (a, b) => (typeof a === 'number' && b ? ` (${Math.round((a / b) * 100)}%)` : '');
  return facts([
    ['Node', n.name],
    ['Version', app ? `Warren ${app.version}` : `${ov.product_name || ''} ${ov.product_version || ''}`],
    ['Compatible with', `RabbitMQ ${ov.rabbitmq_version || ov.management_version || ''}`],
    ['Uptime', duration(n.uptime)],
    ['Memory', `${bytes(n.mem_used)} of ${bytes(n.mem_limit)} limit${pct(n.mem_used, n.mem_limit)}`],
    ['Disk free', `${bytes(n.disk_free)} (limit ${bytes(n.disk_free_limit)})`],
    ['Message store', store ? `${bytes(store.disk_bytes)} on disk${store.pending_bytes ? `, ${bytes(store.pending_bytes)} pending` : ''}` : 'not reported (no durable store)'],
    ['File descriptors', `${num(n.fd_used)} of ${num(n.fd_total)}`],
    ['Sockets', `${num(n.sockets_used)} of ${num(n.sockets_total)}`],
    ['Cores', num(n.processors)],
    ['Data directory', n.db_dir],
  ]);
}

function listeners(ov) {
  const ls = ov.listeners || [];
  return h('div', { class: 'table-wrap' }, h('table', { class: 'list', id: 'listeners' },
    h('thead', null, h('tr', null, h('th', { scope: 'col' }, 'Protocol'), h('th', { scope: 'col' }, 'Bound to'), h('th', { scope: 'col', class: 'num' }, 'Port'))),
    h('tbody', null, ls.map((l) => h('tr', null, h('td', null, l.protocol), h('td', null, l.ip_address), h('td', { class: 'num' }, String(l.port)))))));
}

export function definitionsPanel(ctx) {
  const vh = select('vhost', [['', 'All virtual hosts'], ...ctx.vhosts.map((v) => [v, v])], '');
  vh.setAttribute('aria-label', 'Virtual host for definitions');
  const exportBtn = h('button', { type: 'button', id: 'export-defs' }, 'Download broker definitions');
  exportBtn.addEventListener('click', () => act(exportBtn.parentElement, async () => {
    const v = vh.value;
    const defs = await api.get(v ? `/definitions/${enc(v)}` : '/definitions');
    const blob = new Blob([JSON.stringify(defs, null, 2)], { type: 'application/json' });
    const a = h('a', { href: URL.createObjectURL(blob), download: `warren_definitions_${new Date().toISOString().slice(0, 10)}.json` });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(a.href), 10000);
  }, 'Definitions downloaded'));
  const file = h('input', { type: 'file', id: 'import-file', accept: '.json,application/json' });
  const importBtn = h('button', { type: 'submit' }, 'Upload broker definitions');
  const f = h('form', { class: 'form', id: 'import-defs' },
    h('div', { class: 'field' }, h('label', { for: 'import-file' }, 'Definitions file'), file), importBtn);
  f.addEventListener('submit', (e) => {
    e.preventDefault();
    if (!file.files.length) { notify('Choose a definitions file first', 'error'); return; }
    act(f, async () => {
      const text = await file.files[0].text();
      try { JSON.parse(text); } catch { throw new Error('The file is not JSON'); }
      const v = vh.value;
      await api.post(v ? `/definitions/${enc(v)}` : '/definitions', text);
      f.reset();
      await ctx.reloadVhosts();
    }, 'Definitions imported');
  });
  return section('Export and import definitions',
    h('p', { class: 'hint' }, 'Definitions are users, virtual hosts, permissions, policies, parameters, exchanges, queues and bindings (not messages).'),
    h('div', { class: 'field' }, h('label', null, 'Scope'), vh),
    h('div', { class: 'row' }, exportBtn), f);
}

export async function overview(main, _params, ctx) {
  const head = h('div', { id: 'overview-data' });
  fill(main, h('div', { class: 'page-head' }, h('h1', null, 'Overview'), rangeSelect(() => refresh())), head, isAdmin() ? definitionsPanel(ctx) : null);

  async function refresh() {
    const v = ctx.vhost();
    const [ov, nodes] = await Promise.all([
      api.get(`/overview?${samples()}`),
      // Node facts need the monitoring (or administrator) tag; management users see the rest.
      hasTag('administrator', 'monitoring') ? api.get('/nodes').catch(() => []) : [],
    ]);
    // With a virtual host chosen, rates and queued messages come from that vhost's object.
    let scope = ov;
    if (v) {
      try { scope = await api.get(`/vhosts/${enc(v)}?${samples()}`); } catch { scope = ov; }
    }
    const n = nodes[0] || {};
    fill(head,
      alarms(nodes),
      totals(ov),
      h('div', { class: 'charts' },
        section(`Queued messages${v ? ` in ${v}` : ''}`, lengthChart('Queued messages', v ? scope : ov.queue_totals)),
        section(`Message rates${v ? ` in ${v}` : ''}`, rateChart('Message rates', scope.message_stats, RATE_KEYS))),
      nodes.length ? h('div', { class: 'two' },
        section('Node', nodeFacts(ov, n)),
        section('Listeners', listeners(ov))) : null);
  }
  await refresh();
  return { refresh };
}
