// The five list pages: connections, channels, exchanges, queues, consumers. Each is a listTable
// over the public list endpoint (scoped to the chosen virtual host), plus the "add" form where
// RabbitMQ has one.
import { api } from '../api.js';
import { h, fill, enc, rate, bytes, datetime, kv, exchangeLabel, queueHref, exchangeHref, connectionHref, channelHref, link } from '../dom.js';
import { listTable } from '../table.js';
import { form, field, input, select, kvEditor } from '../widgets.js';

const scoped = (ctx, all, per) => () => { const v = ctx.vhost(); return v ? per(enc(v)) : all; };

const ARG_ABBR = {
  'x-message-ttl': 'TTL', 'x-expires': 'Exp', 'x-max-length': 'Lim', 'x-max-length-bytes': 'Lim B',
  'x-dead-letter-exchange': 'DLX', 'x-dead-letter-routing-key': 'DLK', 'x-max-priority': 'Pri',
  'x-queue-mode': 'Lazy', 'x-single-active-consumer': 'SAC', 'x-overflow': 'Ovfl', 'x-delivery-limit': 'DLim',
  'alternate-exchange': 'AE', 'x-queue-type': null,
};

/** Small badges for durable/auto-delete/exclusive/internal and notable arguments, with full text in title. */
export function features(o) {
  const b = [];
  const badge = (t, title) => b.push(h('abbr', { class: 'badge', title }, t));
  if (o.durable) badge('D', 'durable');
  if (o.auto_delete) badge('AD', 'auto-delete');
  if (o.exclusive) badge('Excl', 'exclusive');
  if (o.internal) badge('I', 'internal');
  for (const [k, v] of Object.entries(o.arguments || {})) {
    if (ARG_ABBR[k] === null) continue;
    badge(ARG_ABBR[k] || 'Args', `${k}: ${typeof v === 'object' ? JSON.stringify(v) : v}`);
  }
  return h('span', { class: 'badges' }, b);
}

function policyCell(o) {
  return [o.policy || '', o.operator_policy ? h('span', { class: 'muted' }, ` op: ${o.operator_policy}`) : ''];
}

function stateCell(state) {
  const s = state || 'unknown';
  return h('span', { class: `state state-${s.replace(/[^a-z]/g, '')}` }, s);
}

const vhostCol = () => ({ key: 'vhost', label: 'Virtual host' });

function withVhost(ctx, cols) {
  // The vhost column is only worth showing when all virtual hosts are listed.
  return ctx.vhost() ? cols.filter((c) => c.key !== 'vhost') : cols;
}

function page(main, title, table, ...rest) {
  fill(main, h('h1', null, title), table.el, ...rest);
  return table.refresh().then(() => ({ refresh: table.refresh }));
}

export function queueColumns(ctx) {
  return withVhost(ctx, [
    vhostCol(ctx),
    { key: 'name', label: 'Name', render: (q) => link(queueHref(q.vhost, q.name), q.name) },
    { key: 'type', label: 'Type' },
    { key: 'features', label: 'Features', sortable: false, render: features },
    { key: 'policy', label: 'Policy', render: policyCell, hide: true },
    { key: 'state', label: 'State', render: (q) => stateCell(q.state) },
    { key: 'consumers', label: 'Consumers', num: true },
    { key: 'consumer_capacity', label: 'Consumer capacity', num: true, hide: true, render: (q) => (typeof q.consumer_capacity === 'number' ? `${Math.round(q.consumer_capacity * 100)}%` : '') },
    { key: 'messages_ready', label: 'Ready', num: true },
    { key: 'messages_unacknowledged', label: 'Unacked', num: true },
    { key: 'messages', label: 'Total', num: true },
    { key: 'message_bytes', label: 'Bytes', num: true, hide: true, render: (q) => bytes(q.message_bytes) },
    { key: 'message_stats.publish_details.rate', label: 'Incoming', num: true, render: (q) => rate(q.message_stats && q.message_stats.publish_details) },
    { key: 'message_stats.deliver_get_details.rate', label: 'Deliver / get', num: true, render: (q) => rate(q.message_stats && q.message_stats.deliver_get_details) },
    { key: 'message_stats.ack_details.rate', label: 'Ack', num: true, render: (q) => rate(q.message_stats && q.message_stats.ack_details) },
  ]);
}

function vhostChoice(ctx) {
  const v = ctx.vhost();
  return select('vhost', ctx.vhosts.map((n) => [n, n]), v || (ctx.vhosts.includes('/') ? '/' : ctx.vhosts[0]));
}

function addQueueForm(ctx, table) {
  return h('details', { class: 'panel fold' }, h('summary', null, h('h2', null, 'Add a new queue')),
    form('add-queue', [
      field('Virtual host', vhostChoice(ctx)),
      field('Type', select('type', [['classic', 'Classic'], ['quorum', 'Quorum'], ['stream', 'Stream']], 'classic')),
      field('Name', input('name', { required: true })),
      field('Durability', select('durable', [['true', 'Durable'], ['false', 'Transient']], 'true')),
      field('Auto delete', select('auto_delete', [['false', 'No'], ['true', 'Yes']], 'false')),
      kvEditor('arguments', 'Arguments', [['x-message-ttl', 'number'], ['x-expires', 'number'], ['x-max-length', 'number'], ['x-max-length-bytes', 'number'], ['x-overflow'], ['x-dead-letter-exchange'], ['x-dead-letter-routing-key'], ['x-single-active-consumer', 'boolean'], ['x-max-priority', 'number']]),
      h('button', { type: 'submit', class: 'primary' }, 'Add queue'),
    ], async (v) => {
      const args = { ...v.arguments };
      if (v.type !== 'classic') args['x-queue-type'] = v.type;
      await api.put(`/queues/${enc(v.vhost)}/${enc(v.name)}`, { durable: v.durable === 'true', auto_delete: v.auto_delete === 'true', arguments: args });
      await table.refresh();
    }, 'Queue added'));
}

export async function queues(main, _p, ctx) {
  const t = listTable({ id: 'queues', caption: 'Queues', path: scoped(ctx, '/queues', (v) => `/queues/${v}`), serverPaged: true, columns: queueColumns(ctx), empty: 'No queues' });
  return page(main, 'Queues', t, addQueueForm(ctx, t));
}

function addExchangeForm(ctx, table) {
  return h('details', { class: 'panel fold' }, h('summary', null, h('h2', null, 'Add a new exchange')),
    form('add-exchange', [
      field('Virtual host', vhostChoice(ctx)),
      field('Name', input('name', { required: true })),
      field('Type', select('type', ['direct', 'fanout', 'headers', 'topic'], 'direct')),
      field('Durability', select('durable', [['true', 'Durable'], ['false', 'Transient']], 'true')),
      field('Auto delete', select('auto_delete', [['false', 'No'], ['true', 'Yes']], 'false')),
      field('Internal', select('internal', [['false', 'No'], ['true', 'Yes']], 'false')),
      kvEditor('arguments', 'Arguments', [['alternate-exchange']]),
      h('button', { type: 'submit', class: 'primary' }, 'Add exchange'),
    ], async (v) => {
      await api.put(`/exchanges/${enc(v.vhost)}/${enc(v.name)}`, { type: v.type, durable: v.durable === 'true', auto_delete: v.auto_delete === 'true', internal: v.internal === 'true', arguments: v.arguments });
      await table.refresh();
    }, 'Exchange added'));
}

export async function exchanges(main, _p, ctx) {
  const t = listTable({
    id: 'exchanges', caption: 'Exchanges', path: scoped(ctx, '/exchanges', (v) => `/exchanges/${v}`), serverPaged: true, empty: 'No exchanges',
    columns: withVhost(ctx, [
      vhostCol(ctx),
      { key: 'name', label: 'Name', render: (x) => link(exchangeHref(x.vhost, x.name), exchangeLabel(x.name)) },
      { key: 'type', label: 'Type' },
      { key: 'features', label: 'Features', sortable: false, render: features },
      { key: 'policy', label: 'Policy', render: policyCell, hide: true },
      { key: 'message_stats.publish_in_details.rate', label: 'Rate in', num: true, render: (x) => rate(x.message_stats && x.message_stats.publish_in_details) },
      { key: 'message_stats.publish_out_details.rate', label: 'Rate out', num: true, render: (x) => rate(x.message_stats && x.message_stats.publish_out_details) },
    ]),
  });
  return page(main, 'Exchanges', t, addExchangeForm(ctx, t));
}

export function connectionColumns(ctx) {
  return withVhost(ctx, [
    vhostCol(ctx),
    { key: 'name', label: 'Name', render: (c) => [link(connectionHref(c.name), c.name), c.user_provided_name ? h('div', { class: 'muted' }, c.user_provided_name) : null] },
    { key: 'node', label: 'Node', hide: true },
    { key: 'user', label: 'User' },
    { key: 'state', label: 'State', render: (c) => stateCell(c.state) },
    { key: 'ssl', label: 'TLS', render: (c) => (c.ssl ? c.ssl_protocol || 'yes' : '') },
    { key: 'protocol', label: 'Protocol' },
    { key: 'channels', label: 'Channels', num: true },
    { key: 'client_properties.product', label: 'Client', hide: true, render: (c) => { const p = c.client_properties || {}; return [p.product, p.version].filter(Boolean).join(' '); } },
    { key: 'timeout', label: 'Heartbeat', num: true, hide: true, render: (c) => (c.timeout ? `${c.timeout}s` : '') },
    { key: 'connected_at', label: 'Connected at', hide: true, render: (c) => datetime(c.connected_at) },
    { key: 'recv_oct_details.rate', label: 'From client', num: true, render: (c) => (c.recv_oct_details ? `${bytes(c.recv_oct_details.rate)}/s` : '') },
    { key: 'send_oct_details.rate', label: 'To client', num: true, render: (c) => (c.send_oct_details ? `${bytes(c.send_oct_details.rate)}/s` : '') },
  ]);
}

export async function connections(main, _p, ctx) {
  const t = listTable({ id: 'connections', caption: 'Connections', path: scoped(ctx, '/connections', (v) => `/vhosts/${v}/connections`), serverPaged: true, columns: connectionColumns(ctx), empty: 'No connections' });
  return page(main, 'Connections', t);
}

export function channelColumns(ctx, { withVhostCol = true } = {}) {
  const cols = [
    vhostCol(ctx),
    { key: 'name', label: 'Channel', render: (c) => link(channelHref(c.name), c.name) },
    { key: 'user', label: 'User', hide: true },
    { key: 'mode', label: 'Mode', sortable: false, render: (c) => [c.confirm ? h('abbr', { class: 'badge', title: 'confirm' }, 'C') : null, c.transactional ? h('abbr', { class: 'badge', title: 'transactional' }, 'T') : null] },
    { key: 'state', label: 'State', render: (c) => stateCell(c.state) },
    { key: 'consumer_count', label: 'Consumers', num: true },
    { key: 'prefetch_count', label: 'Prefetch', num: true },
    { key: 'messages_unacknowledged', label: 'Unacked', num: true },
    { key: 'messages_unconfirmed', label: 'Unconfirmed', num: true },
    { key: 'message_stats.publish_details.rate', label: 'Publish', num: true, render: (c) => rate(c.message_stats && c.message_stats.publish_details) },
    { key: 'message_stats.confirm_details.rate', label: 'Confirm', num: true, render: (c) => rate(c.message_stats && c.message_stats.confirm_details) },
    { key: 'message_stats.deliver_get_details.rate', label: 'Deliver / get', num: true, render: (c) => rate(c.message_stats && c.message_stats.deliver_get_details) },
    { key: 'message_stats.ack_details.rate', label: 'Ack', num: true, render: (c) => rate(c.message_stats && c.message_stats.ack_details) },
  ];
  return withVhostCol ? withVhost(ctx, cols) : cols.filter((c) => c.key !== 'vhost');
}

export async function channels(main, _p, ctx) {
  const t = listTable({ id: 'channels', caption: 'Channels', path: scoped(ctx, '/channels', (v) => `/vhosts/${v}/channels`), serverPaged: true, columns: channelColumns(ctx), empty: 'No channels' });
  return page(main, 'Channels', t);
}

export function consumerColumns(ctx, { queueCol = true } = {}) {
  const cols = [
    vhostCol(ctx),
    { key: 'queue.name', label: 'Queue', render: (c) => link(queueHref(c.queue.vhost, c.queue.name), c.queue.name) },
    { key: 'channel_details.name', label: 'Channel', render: (c) => link(channelHref(c.channel_details.name), c.channel_details.name) },
    { key: 'consumer_tag', label: 'Consumer tag' },
    { key: 'ack_required', label: 'Ack required', render: (c) => (c.ack_required ? 'yes' : 'no') },
    { key: 'exclusive', label: 'Exclusive', render: (c) => (c.exclusive ? 'yes' : 'no') },
    { key: 'prefetch_count', label: 'Prefetch', num: true },
    { key: 'active', label: 'Active', render: (c) => (c.active === false ? 'no' : 'yes') },
    { key: 'arguments', label: 'Arguments', sortable: false, render: (c) => kv(c.arguments) },
  ];
  return withVhost(ctx, queueCol ? cols : cols.filter((c) => c.key !== 'queue.name'));
}

export async function consumers(main, _p, ctx) {
  const t = listTable({
    id: 'consumers', caption: 'Consumers', path: scoped(ctx, '/consumers', (v) => `/consumers/${v}`), serverPaged: false,
    nameOf: (c) => `${c.queue.name} ${c.consumer_tag}`, columns: consumerColumns(ctx), empty: 'No consumers',
  });
  return page(main, 'Consumers', t);
}

