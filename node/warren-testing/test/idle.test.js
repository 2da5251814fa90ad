'use strict';
// waitIdle: at once on a quiet broker; waits for a slow consumer's ack; says what is pending on timeout.
const test = require('node:test');
const assert = require('node:assert/strict');
const { startWarren } = require('warren-testing');
const { setup } = require('./helpers');

test('waitIdle answers at once on a quiet broker', async (t) => {
  const broker = await startWarren();
  t.after(() => broker.stop());
  const r = await broker.waitIdle({ timeoutMs: 5000 });
  assert.equal(r.idle, true);
  assert.ok(r.waited_ms < 1000, `waited ${r.waited_ms} ms`);
});

test('waitIdle returns only after a slow consumer acks, and lists what is pending on timeout', async (t) => {
  const { broker, ch } = await setup(t);
  await ch.assertQueue('work');
  await ch.prefetch(1);
  const delivered = new Promise((resolve) => ch.consume('work', resolve, { noAck: false }));
  ch.sendToQueue('work', Buffer.from('job'));
  const msg = await delivered;

  // The consumer holds the delivery: not idle, and the failure says why.
  await assert.rejects(broker.waitIdle({ timeoutMs: 50 }), (err) => {
    assert.equal(err.message, 'broker not idle after 50ms; pending: unacknowledged_deliveries=1');
    return true;
  });

  let acked = false;
  const timer = setTimeout(() => {
    acked = true;
    ch.ack(msg);
  }, 300);
  t.after(() => clearTimeout(timer));
  const r = await broker.waitIdle({ timeoutMs: 10000 });
  assert.equal(acked, true, 'waitIdle resolved before the consumer acked');
  assert.equal(r.idle, true);
  assert.ok(r.waited_ms >= 100, `waited only ${r.waited_ms} ms`);
});
