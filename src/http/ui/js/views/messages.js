// Publishing a message (exchange and queue pages) and getting messages (queue page).
import { api } from '../api.js';
import { h, fill, enc, num, kv, exchangeLabel } from '../dom.js';
import { form, field, input, select, kvEditor } from '../widgets.js';

const PROPS = [['content_type'], ['content_encoding'], ['priority', 'number'], ['correlation_id'], ['reply_to'], ['expiration'], ['message_id'], ['timestamp', 'number'], ['type'], ['user_id'], ['app_id']];

/** Publish to exchange `x` in vhost `v`; with `queue` set, routes via the default exchange to it. */
export function publishForm(v, x, queue, after) {
  const result = h('p', { class: 'result', 'aria-live': 'polite' });
  const f = form('publish', [
    queue ? h('p', { class: 'hint' }, 'The message is published to the default exchange with the queue name as routing key.')
      : field('Routing key', input('routing_key')),
    field('Delivery mode', select('delivery_mode', [['1', '1 - Non-persistent'], ['2', '2 - Persistent']], '1')),
    kvEditor('headers', 'Headers', [], 'string'),
    kvEditor('properties', 'Properties', PROPS),
    field('Payload', h('textarea', { name: 'payload', rows: 5, spellcheck: 'false' })),
    field('Payload encoding', select('payload_encoding', [['string', 'String (UTF-8)'], ['base64', 'Base64']], 'string')),
    h('button', { type: 'submit', class: 'primary' }, 'Publish message'),
    result,
  ], async (val) => {
    const properties = { ...val.properties, delivery_mode: Number(val.delivery_mode) };
    if (Object.keys(val.headers).length) properties.headers = val.headers;
    const r = await api.post(`/exchanges/${enc(v)}/${enc(x === '' ? 'amq.default' : x)}/publish`, {
      properties, routing_key: queue ?? val.routing_key, payload: val.payload, payload_encoding: val.payload_encoding,
    });
    fill(result, r && r.routed ? 'Message published.' : h('span', { class: 'warn' }, 'Message published, but not routed to any queue.'));
    if (after) await after();
    return r;
  });
  return f;
}

function messageView(m, i) {
  const props = Array.isArray(m.properties) ? {} : m.properties || {};
  const { headers, ...rest } = props;
  return h('article', { class: 'message', 'aria-label': `Message ${i + 1}` },
    h('h3', null, `Message ${i + 1}`),
    h('dl', { class: 'facts' },
      h('dt', null, 'Exchange'), h('dd', null, exchangeLabel(m.exchange)),
      h('dt', null, 'Routing key'), h('dd', null, m.routing_key),
      h('dt', null, 'Redelivered'), h('dd', null, m.redelivered ? 'yes' : 'no'),
      h('dt', null, 'Properties'), h('dd', null, kv(rest) || 'none'),
      headers ? [h('dt', null, 'Headers'), h('dd', null, kv(headers))] : null,
      h('dt', null, 'Payload'), h('dd', null, `${num(m.payload_bytes)} bytes, encoding: ${m.payload_encoding}`),
      h('dt', null, 'Messages left'), h('dd', null, num(m.message_count))),
    h('pre', { class: 'payload' }, m.payload));
}

export function getForm(v, q, after) {
  const out = h('div', { class: 'messages', 'aria-live': 'polite' });
  const f = form('get-messages', [
    h('p', { class: 'hint warn' }, 'Getting messages is a destructive action unless the ack mode requeues them.'),
    field('Ack mode', select('ackmode', [
      ['ack_requeue_true', 'Nack message requeue true'], ['ack_requeue_false', 'Automatic ack'],
      ['reject_requeue_true', 'Reject requeue true'], ['reject_requeue_false', 'Reject requeue false']], 'ack_requeue_true')),
    field('Encoding', select('encoding', [['auto', 'Automatic string/base64'], ['base64', 'Base64']], 'auto')),
    field('Messages', input('count', { type: 'number', min: 1, value: 1, required: true })),
    field('Truncate (bytes)', input('truncate', { type: 'number', min: 1, value: 50000 })),
    h('button', { type: 'submit', class: 'primary' }, 'Get messages'),
  ], async (val) => {
    const body = { count: Number(val.count), ackmode: val.ackmode, encoding: val.encoding };
    if (val.truncate) body.truncate = Number(val.truncate);
    const msgs = await api.post(`/queues/${enc(v)}/${enc(q)}/get`, body);
    fill(out, msgs.length ? msgs.map(messageView) : h('p', { class: 'empty' }, 'Queue is empty'));
    if (after) after();
    return msgs;
  });
  f.dataset.reset = 'no';
  return h('div', null, f, out);
}
