// One queue: charts, details, consumers, bindings, publish, get, purge, delete.
import { api } from '../api.js';
import { h, fill, enc, num, bytes, kv, facts, section, fold, channelHref, link } from '../dom.js';
import { rateChart, lengthChart, samples, rangeSelect } from '../chart.js';
import { staticTable } from '../table.js';
import { act, confirmDialog, notify } from '../widgets.js';
import { features } from './lists.js';
import { bindingsTable, bindForm } from './bindings.js';
import { publishForm, getForm } from './messages.js';

const QUEUE_RATES = [['publish', 'Publish'], ['deliver_get', 'Deliver / get'], ['redeliver', 'Redeliver'], ['ack', 'Ack']];

function details(q) {
  const cap = q.consumer_capacity ?? q.consumer_utilisation;
  return facts([
    ['Type', q.type],
    ['Features', features(q)],
    ['Arguments', kv(q.arguments)],
    ['Policy', q.policy || ''],
    ['Operator policy', q.operator_policy || ''],
    ['Effective policy definition', kv(q.effective_policy_definition)],
    ['State', q.state],
    ['Consumers', num(q.consumers ?? 0)],
    ['Consumer capacity', typeof cap === 'number' ? `${Math.round(cap * 100)}%` : ''],
    ['Ready', h('span', { id: 'q-ready' }, num(q.messages_ready ?? 0))],
    ['Unacked', h('span', { id: 'q-unacked' }, num(q.messages_unacknowledged ?? 0))],
    ['Total', h('span', { id: 'q-total' }, num(q.messages ?? 0))],
    ['Message bytes', bytes(q.message_bytes)],
    ['Persistent messages', num(q.messages_persistent)],
    ['Memory', bytes(q.memory)],
    ['Node', q.node],
    ['Exclusive consumer', q.exclusive_consumer_tag || ''],
    ['Single active consumer', q.single_active_consumer_tag || ''],
  ]);
}

function consumersTable(list) {
  return staticTable([
    { label: 'Channel', render: (c) => link(channelHref(c.channel_details.name), c.channel_details.name) },
    { label: 'Consumer tag', render: (c) => c.consumer_tag },
    { label: 'Ack required', render: (c) => (c.ack_required ? 'yes' : 'no') },
    { label: 'Exclusive', render: (c) => (c.exclusive ? 'yes' : 'no') },
    { label: 'Prefetch', num: true, render: (c) => c.prefetch_count },
    { label: 'Active', render: (c) => (c.active === false ? 'no' : 'yes') },
    { label: 'Arguments', render: (c) => kv(c.arguments) },
  ], list || [], 'No consumers');
}

export async function queuePage(main, { vhost, name }) {
  const base = `/queues/${enc(vhost)}/${enc(name)}`;
  const info = h('div', { id: 'queue-info' });
  const consumers = h('div');
  const bindings = h('div');

  async function refreshBindings() {
    const bs = await api.get(`${base}/bindings`);
    fill(bindings, bindingsTable(bs, 'source', refreshBindings));
  }
  async function refresh() {
    const q = await api.get(`${base}?${samples()}`);
    fill(info,
      h('div', { class: 'charts' },
        section('Queued messages', lengthChart('Queued messages', q)),
        section('Message rates', rateChart('Message rates', q.message_stats, QUEUE_RATES))),
      section('Details', details(q)));
    fill(consumers, consumersTable(q.consumer_details));
    await refreshBindings();
  }

  const purge = h('button', { type: 'button', class: 'danger', id: 'purge' }, 'Purge messages');
  purge.addEventListener('click', async () => {
    if (!(await confirmDialog(`Purge all ready messages from queue "${name}"?`, 'Purge'))) return;
    await act(purge.parentElement, async () => { await api.del(`${base}/contents`); await refresh(); }, 'Queue purged');
  });
  const ifEmpty = h('input', { type: 'checkbox', id: 'del-if-empty' });
  const ifUnused = h('input', { type: 'checkbox', id: 'del-if-unused' });
  const del = h('button', { type: 'button', class: 'danger', id: 'delete-queue' }, 'Delete queue');
  del.addEventListener('click', async () => {
    if (!(await confirmDialog(`Delete queue "${name}" in virtual host "${vhost}"?`, 'Delete'))) return;
    const q = new URLSearchParams();
    if (ifEmpty.checked) q.set('if-empty', 'true');
    if (ifUnused.checked) q.set('if-unused', 'true');
    const r = await act(del.parentElement, async () => { await api.del(`${base}${q.toString() ? `?${q}` : ''}`); return true; });
    if (r) { notify(`Queue ${name} deleted`); location.hash = '#/queues'; }
  });

  // Fetch first so a missing queue shows an error instead of an empty page.
  fill(main,
    h('div', { class: 'page-head' }, h('h1', null, 'Queue ', h('span', { class: 'name' }, name), h('span', { class: 'sub' }, ` in virtual host ${vhost}`)), rangeSelect(() => refresh())),
    info,
    fold('Consumers', true, consumers),
    fold('Bindings', true, bindings, h('h3', null, 'Add binding to this queue'), bindForm({ vhost, queue: name }, refreshBindings)),
    fold('Publish message', false, publishForm(vhost, '', name, refresh)),
    fold('Get messages', false, getForm(vhost, name, refresh)),
    fold('Purge', false, h('div', { class: 'row' }, purge)),
    fold('Delete', false, h('div', { class: 'row' },
      h('label', { class: 'inline' }, ifEmpty, ' only if empty'),
      h('label', { class: 'inline' }, ifUnused, ' only if unused'), del)));
  await refresh();
  return { refresh };
}
