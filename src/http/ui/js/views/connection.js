// One connection (details, channels, close with a reason) and one channel (details, consumers).
import { api } from '../api.js';
import { h, fill, enc, num, bytes, kv, datetime, facts, section, fold, connectionHref, link } from '../dom.js';
import { staticTable } from '../table.js';
import { act, confirmDialog, form, field, input, notify } from '../widgets.js';
import { channelColumns, consumerColumns } from './lists.js';

function cols(list) {
  return list.map((c) => ({ label: c.label, num: c.num, render: (r) => (c.render ? c.render(r) : r[c.key]) }));
}

export async function connectionPage(main, { name }, ctx) {
  const base = `/connections/${enc(name)}`;
  const info = h('div', { id: 'connection-info' });
  const chans = h('div');
  async function refresh() {
    const [c, chs] = await Promise.all([api.get(base), api.get(`${base}/channels`).catch(() => [])]);
    const cp = c.client_properties || {};
    fill(info, section('Details', facts([
      ['Name', c.name], ['Client-provided name', c.user_provided_name || ''], ['Virtual host', c.vhost], ['User', c.user],
      ['State', c.state], ['Protocol', c.protocol], ['Authentication', c.auth_mechanism],
      ['Client', [cp.product, cp.version, cp.platform].filter(Boolean).join(' ')],
      ['Capabilities', kv(cp.capabilities)],
      ['Peer', c.peer_host != null ? `${c.peer_host}:${c.peer_port}` : ''], ['Local', c.host != null ? `${c.host}:${c.port}` : ''],
      ['TLS', c.ssl ? `${c.ssl_protocol || ''} ${c.ssl_cipher || ''}` : 'no'],
      ['Connected at', datetime(c.connected_at)], ['Heartbeat', c.timeout != null ? `${c.timeout}s` : ''],
      ['Frame max', num(c.frame_max)], ['Channel max', num(c.channel_max)], ['Channels', num(c.channels)],
      ['Received', bytes(c.recv_oct)], ['Sent', bytes(c.send_oct)],
    ])));
    fill(chans, staticTable(cols(channelColumns(ctx, { withVhostCol: false })), chs, 'No channels'));
  }
  const closeForm = form('close-connection', [
    field('Reason', input('reason', { value: 'Closed via management plugin', id: 'close-reason' }), 'The client receives it after CONNECTION_FORCED.'),
    h('button', { type: 'submit', class: 'danger' }, 'Force close'),
  ], async (v) => {
    if (!(await confirmDialog(`Close connection ${name}?`, 'Close'))) return undefined;
    // A header value must be Latin-1 printable; the API reads X-Reason as the close text.
    const reason = v.reason.replace(/[^\x20-\x7e]/g, '?');
    await api.del(base, reason ? { 'X-Reason': reason } : {});
    notify('Connection closed');
    location.hash = '#/connections';
    return true;
  });
  fill(main,
    h('h1', null, 'Connection ', h('span', { class: 'name' }, name)),
    info,
    fold('Channels', true, chans),
    fold('Close this connection', true, closeForm));
  await refresh();
  return { refresh };
}

export async function channelPage(main, { name }, ctx) {
  const base = `/channels/${enc(name)}`;
  const info = h('div');
  const cons = h('div');
  async function refresh() {
    const c = await api.get(base);
    const cd = c.connection_details || {};
    fill(info, section('Details', facts([
      ['Connection', cd.name ? link(connectionHref(cd.name), cd.name) : ''], ['Number', num(c.number)], ['Virtual host', c.vhost], ['User', c.user],
      ['State', c.state], ['Mode', [c.confirm ? 'confirm' : '', c.transactional ? 'transactional' : ''].filter(Boolean).join(', ') || 'normal'],
      ['Prefetch count', num(c.prefetch_count)], ['Global prefetch count', num(c.global_prefetch_count)],
      ['Consumers', num(c.consumer_count)], ['Unacked', num(c.messages_unacknowledged)], ['Unconfirmed', num(c.messages_unconfirmed)],
      ['Uncommitted', num(c.messages_uncommitted)], ['Acks uncommitted', num(c.acks_uncommitted)],
    ])));
    fill(cons, staticTable(cols(consumerColumns(ctx).filter((x) => x.key !== 'channel_details.name' && x.key !== 'vhost')), c.consumer_details || [], 'No consumers'));
  }
  fill(main, h('h1', null, 'Channel ', h('span', { class: 'name' }, name)), info, fold('Consumers', true, cons));
  await refresh();
  return { refresh };
}
