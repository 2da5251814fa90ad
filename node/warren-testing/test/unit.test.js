'use strict';
// The pure parts: durations and the readable failure texts (no broker).
const test = require('node:test');
const assert = require('node:assert/strict');
const { parseDuration, formatEvent, waitForFailure, idleFailure, WarrenError } = require('warren-testing');

test('durations: ms numbers and unit strings', () => {
  assert.equal(parseDuration(250), 250);
  assert.equal(parseDuration('90s'), 90000);
  assert.equal(parseDuration('1h'), 3600000);
  assert.equal(parseDuration('1h30m'), 5400000);
  assert.equal(parseDuration('250ms'), 250);
  assert.equal(parseDuration('1.5s'), 1500);
  assert.equal(parseDuration('2d'), 172800000);
  assert.throws(() => parseDuration('soon'), WarrenError);
  assert.throws(() => parseDuration('10'), WarrenError);
  assert.throws(() => parseDuration(-1), WarrenError);
});

const T0 = Date.UTC(2026, 0, 1, 12, 0, 0, 1);
const related = [
  { seq: 1, time: T0, event: 'published', vhost: '/', message_id: 'm1', correlation_id: null, exchange: 'x', routing_key: 'k', queue: null, connection: 'c', channel: 1, user: 'guest', properties: {} },
  { seq: 2, time: T0, event: 'routed', vhost: '/', message_id: 'm1', correlation_id: null, exchange: 'x', routing_key: 'k', queue: null, queues: ['q'] },
  { seq: 3, time: T0 + 1, event: 'delivered', vhost: '/', message_id: 'm1', correlation_id: null, exchange: 'x', routing_key: 'k', queue: 'q', consumer_tag: 'ctag-1', delivery_tag: 1, redelivered: false },
];

test('a waitFor failure names what was expected and lists what did happen to the message', () => {
  const msg = waitForFailure({ message_id: 'm1', event: 'dead-lettered' }, 2000, { enabled: true, evicted: 0, events: [], related });
  assert.equal(
    msg,
    'expected event dead-lettered for message_id=m1 within 2s; journal has: published 12:00:00.001 exchange=x rk=k, ' +
      'routed 12:00:00.001 exchange=x rk=k to [q], delivered 12:00:00.002 queue=q consumer=ctag-1',
  );
});

test('a waitFor failure with nothing related says so, and says when the journal is off', () => {
  assert.equal(
    waitForFailure({ queue: 'q', event: 'expired' }, 500, { enabled: true, events: [], related: [] }),
    'expected event expired for queue=q within 500ms; journal has no events for queue=q',
  );
  assert.match(waitForFailure({ message_id: 'm1' }, 1000, { enabled: false, events: [], related: [] }), /journal is disabled/);
});

test('formatEvent shows dead-lettering, basic.get deliveries and other messages', () => {
  // As the broker sends it: dead_letter_routing_keys (a list) and the queues it went to.
  const dl = { time: T0, event: 'dead-lettered', vhost: '/', message_id: 'm2', queue: 'work', reason: 'expired', dead_letter_exchange: '', dead_letter_routing_keys: ['dlq'], queues: ['dlq'] };
  assert.equal(formatEvent(dl), 'dead-lettered 12:00:00.001 message_id=m2 queue=work reason=expired dlx="" dlrk=dlq to [dlq]');
  assert.equal(formatEvent(dl, { message_id: 'm2' }), 'dead-lettered 12:00:00.001 queue=work reason=expired dlx="" dlrk=dlq to [dlq]');
  // The spec's single dead_letter_routing_key is read too.
  assert.equal(formatEvent({ ...dl, dead_letter_routing_keys: undefined, dead_letter_routing_key: 'k2', queues: undefined }, { message_id: 'm2' }),
    'dead-lettered 12:00:00.001 queue=work reason=expired dlx="" dlrk=k2');
  const ret = { time: T0, event: 'returned', message_id: 'm3', exchange: 'x', routing_key: 'k', queue: null, reply_code: 312, reply_text: 'NO_ROUTE' };
  assert.equal(formatEvent(ret, { message_id: 'm3' }), 'returned 12:00:00.001 exchange=x rk=k 312 NO_ROUTE');
  const nack = { time: T0, event: 'nacked', message_id: 'm4', queue: 'q', delivery_tag: 1, requeue: true };
  assert.equal(formatEvent(nack, { message_id: 'm4' }), 'nacked 12:00:00.001 queue=q requeue=true');
  const conf = { time: T0, event: 'confirmed', message_id: 'm4', exchange: '', routing_key: 'q', queue: null, ack: false };
  assert.equal(formatEvent(conf, { message_id: 'm4' }), 'confirmed 12:00:00.001 nack');
  const get = { time: T0, event: 'delivered', vhost: 'v', message_id: null, queue: 'q', consumer_tag: null, redelivered: true };
  assert.equal(formatEvent(get), 'delivered 12:00:00.001 vhost=v queue=q by basic.get redelivered');
});

test('an idle failure lists what is pending', () => {
  assert.equal(
    idleFailure(50, { unacknowledged_deliveries: 1, deliverable_queues: [{ vhost: '/', name: 'a' }, { vhost: 'v', name: 'b' }], timers_due: true }),
    'broker not idle after 50ms; pending: unacknowledged_deliveries=1, deliverable_queues=[a, b (vhost v)], timers_due=true',
  );
});
