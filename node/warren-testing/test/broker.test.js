'use strict';
// Starting and stopping, and a real client (amqplib) against the started broker.
const test = require('node:test');
const assert = require('node:assert/strict');
const amqp = require('amqplib');
const { startWarren, WarrenError } = require('warren-testing');

function alive(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return err.code !== 'ESRCH';
  }
}

test('start gives URLs for AMQP, management and Prometheus; stop ends the process', async () => {
  const broker = await startWarren();
  try {
    assert.match(broker.url, /^amqp:\/\/guest:guest@127\.0\.0\.1:\d+\/%2F$/);
    assert.notEqual(broker.port, 0);
    assert.match(broker.managementUrl, /^http:\/\/127\.0\.0\.1:\d+$/);
    const res = await fetch(`${broker.managementUrl}/api/overview`, {
      headers: { authorization: `Basic ${Buffer.from('guest:guest').toString('base64')}` },
    });
    assert.equal(res.status, 200);
    const metrics = await (await fetch(`${broker.prometheusUrl}/metrics`)).text();
    assert.match(metrics, /rabbitmq_queues/);
    assert.equal(alive(broker.pid), true);
  } finally {
    await broker.stop();
  }
  assert.equal(alive(broker.pid), false);
  // SIGTERM was enough: the broker shut down by itself, not by the fallback SIGKILL.
  assert.notEqual(broker.process.signalCode, 'SIGKILL');
  await assert.rejects(amqp.connect(broker.url));
  await broker.stop(); // idempotent
});

test('publish and consume with amqplib', async () => {
  const broker = await startWarren();
  const conn = await amqp.connect(broker.url);
  try {
    const ch = await conn.createChannel();
    await ch.assertQueue('jobs');
    ch.sendToQueue('jobs', Buffer.from('hello'), { headers: { n: 1 }, messageId: 'j1' });
    const msg = await new Promise((resolve) => ch.consume('jobs', resolve));
    assert.equal(msg.content.toString(), 'hello');
    assert.equal(msg.properties.messageId, 'j1');
    assert.deepEqual(msg.properties.headers, { n: 1 });
    ch.ack(msg);
  } finally {
    await conn.close();
    await broker.stop();
  }
});

test('every broker is fresh: two brokers do not share queues', async () => {
  const [a, b] = await Promise.all([startWarren(), startWarren()]);
  try {
    assert.notEqual(a.port, b.port);
    const ca = await amqp.connect(a.url);
    const cha = await ca.createChannel();
    await cha.assertQueue('only-on-a');
    const cb = await amqp.connect(b.url);
    const chb = await cb.createChannel();
    chb.on('error', () => {});
    await assert.rejects(chb.checkQueue('only-on-a'), /NOT_FOUND/);
    await ca.close();
    await cb.close().catch(() => {});
  } finally {
    await Promise.all([a.stop(), b.stop()]);
  }
});

test('a missing binary is a clear error', async () => {
  await assert.rejects(startWarren({ bin: '/nonexistent/warren' }), (err) => {
    assert.ok(err instanceof WarrenError);
    assert.match(err.message, /cannot run the warren binary "\/nonexistent\/warren"/);
    return true;
  });
});

test('a broker that refuses its arguments is reported with its own words', async () => {
  await assert.rejects(startWarren({ args: ['--clock', 'sundial'] }), (err) => {
    assert.ok(err instanceof WarrenError);
    assert.match(err.message, /exited .* before listening: .*sundial/);
    return true;
  });
});

test('advancing a real clock is refused with the broker\'s reason', async () => {
  const broker = await startWarren();
  try {
    assert.equal((await broker.clock()).mode, 'real');
    await assert.rejects(broker.advanceClock('1s'), /real clock/);
  } finally {
    await broker.stop();
  }
});
