'use strict';
// The virtual clock: a one-hour TTL dead-letters on a one-hour advance, and not before.
const test = require('node:test');
const assert = require('node:assert/strict');
const { setup } = require('./helpers');

test('a one-hour TTL message is dead-lettered only after advanceClock(\'1h\')', async (t) => {
  const { broker, ch } = await setup(t, ['--clock', 'virtual']);
  await ch.assertExchange('dlx', 'fanout');
  await ch.assertQueue('dlq');
  await ch.bindQueue('dlq', 'dlx', '');
  await ch.assertQueue('waiting', { arguments: { 'x-message-ttl': 3600000, 'x-dead-letter-exchange': 'dlx' } });
  ch.sendToQueue('waiting', Buffer.from('later'), { messageId: 'ttl-1' });
  await broker.waitIdle();

  const clock = await broker.clock();
  assert.equal(clock.mode, 'virtual');
  const start = clock.now;

  // A minute short of the hour: everything due has fired when advanceClock answers, and nothing is.
  assert.equal(await broker.advanceClock('59m'), start + 59 * 60000);
  assert.equal((await ch.checkQueue('dlq')).messageCount, 0);
  assert.equal((await ch.checkQueue('waiting')).messageCount, 1);

  const now = await broker.advanceClock(60000);
  assert.equal(now, start + 3600000);
  assert.equal(await broker.now(), now);
  assert.equal((await ch.checkQueue('waiting')).messageCount, 0);
  const msg = await ch.get('dlq', { noAck: true });
  assert.ok(msg, 'the dead-lettered message is in dlq');
  assert.equal(msg.content.toString(), 'later');
  assert.equal(msg.properties.messageId, 'ttl-1');
  const death = msg.properties.headers['x-death'][0];
  assert.equal(death.reason, 'expired');
  assert.equal(death.queue, 'waiting');
});
