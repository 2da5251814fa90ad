'use strict';
// The message journal: journal(filters), waitFor(filters) and its readable failure.
const test = require('node:test');
const assert = require('node:assert/strict');
const { WarrenError } = require('warren-testing');
const { setup } = require('./helpers');

test('journal lists a message\'s life and waitFor finds an event', async (t) => {
  const { broker, ch } = await setup(t);
  await ch.assertQueue('q');
  ch.sendToQueue('q', Buffer.from('hi'), { messageId: 'm1', correlationId: 'c1' });
  const routed = await broker.waitFor({ message_id: 'm1', event: 'routed' }, { timeoutMs: 5000 });
  assert.equal(routed.length, 1);
  assert.deepEqual(routed[0].queues, ['q']);
  assert.ok(await ch.get('q', { noAck: true }));
  await broker.waitFor({ messageId: 'm1', event: 'delivered' });

  const life = await broker.journal({ messageId: 'm1' });
  const names = life.map((e) => e.event);
  assert.deepEqual(names.slice(0, 3), ['published', 'routed', 'delivered']);
  const published = life[0];
  assert.equal(published.exchange, '');
  assert.equal(published.routing_key, 'q');
  assert.equal(published.correlation_id, 'c1');
  assert.equal(life[2].queue, 'q');
  assert.equal(life[2].consumer_tag, null, 'basic.get has no consumer tag');
  // Filters: by correlation id, by queue and event; another message is not mixed in.
  assert.deepEqual((await broker.journal({ correlationId: 'c1', event: 'published' })).map((e) => e.message_id), ['m1']);
  assert.deepEqual(await broker.journal({ message_id: 'nobody' }), []);
});

test('waitFor waits for an event that happens later (dead-lettered on a clock advance)', async (t) => {
  const { broker, ch } = await setup(t, ['--clock', 'virtual']);
  await ch.assertQueue('dlq');
  await ch.assertQueue('waiting', {
    arguments: { 'x-message-ttl': 3600000, 'x-dead-letter-exchange': '', 'x-dead-letter-routing-key': 'dlq' },
  });
  ch.sendToQueue('waiting', Buffer.from('later'), { messageId: 'm2' });
  await broker.waitFor({ message_id: 'm2', event: 'routed' });
  assert.deepEqual(await broker.journal({ message_id: 'm2', event: 'dead-lettered' }), []);

  const waiting = broker.waitFor({ message_id: 'm2', event: 'dead-lettered' }, { timeoutMs: 10000 });
  const now = await broker.advanceClock('1h');
  const [dl] = await waiting;
  assert.equal(dl.reason, 'expired');
  assert.equal(dl.queue, 'waiting');
  assert.deepEqual(dl.dead_letter_routing_keys, ['dlq']);
  assert.deepEqual(dl.queues, ['dlq']);
  assert.ok(dl.time >= now - 1 && dl.time <= now, `dead-lettered at broker time ${dl.time}, clock ${now}`);
});

test('waitFor fails with a readable message listing what did happen to the message', async (t) => {
  const { broker, ch } = await setup(t);
  await ch.assertQueue('q');
  ch.sendToQueue('q', Buffer.from('hi'), { messageId: 'm1' });
  assert.ok(await ch.get('q', { noAck: false }));
  await broker.waitFor({ message_id: 'm1', event: 'delivered' });

  const err = await broker.waitFor({ message_id: 'm1', event: 'dead-lettered' }, { timeoutMs: 300 }).then(
    () => assert.fail('waitFor resolved for an event that never happened'),
    (e) => e,
  );
  assert.ok(err instanceof WarrenError);
  assert.match(
    err.message,
    /^expected event dead-lettered for message_id=m1 within 300ms; journal has: published \d\d:\d\d:\d\d\.\d{3} exchange="" rk=q, routed \S+ exchange="" rk=q to \[q\], delivered \S+ queue=q by basic\.get$/,
  );
});

test('waitFor on a message the broker never saw says the journal has nothing for it', async (t) => {
  const { broker } = await setup(t);
  await assert.rejects(
    broker.waitFor({ message_id: 'ghost', event: 'published' }, { timeoutMs: 100 }),
    { message: 'expected event published for message_id=ghost within 100ms; journal has no events for message_id=ghost' },
  );
});

test('an unroutable publish is in the journal', async (t) => {
  const { broker, ch } = await setup(t);
  await ch.assertExchange('nowhere', 'direct');
  ch.publish('nowhere', 'k', Buffer.from('lost'), { messageId: 'm3' });
  const [e] = await broker.waitFor({ exchange: 'nowhere', event: 'unroutable' });
  assert.equal(e.message_id, 'm3');
  assert.equal(e.routing_key, 'k');
});

test('waitFor explains a message dropped by max-length', async (t) => {
  const { broker, ch } = await setup(t);
  await ch.assertQueue('short', { arguments: { 'x-max-length': 1 } });
  ch.sendToQueue('short', Buffer.from('1'), { messageId: 'first' });
  ch.sendToQueue('short', Buffer.from('2'), { messageId: 'second' });
  const [dropped] = await broker.waitFor({ message_id: 'first', event: 'dropped' });
  assert.equal(dropped.reason, 'maxlen');
  await assert.rejects(broker.waitFor({ message_id: 'first', event: 'delivered' }, { timeoutMs: 100 }), {
    message: /^expected event delivered for message_id=first within 100ms; journal has: published .*, routed .* to \[short\], dropped \S+ queue=short reason=maxlen$/,
  });
});

test('waitFor on a broker whose journal is off says so', async (t) => {
  const { broker } = await setup(t, ['--journal', 'off']);
  await assert.rejects(broker.waitFor({ message_id: 'm1', event: 'published' }, { timeoutMs: 50 }), {
    message: /^expected event published for message_id=m1 within 50ms; the journal is disabled/,
  });
});
