'use strict';
// Starting and stopping, and a real client (amqplib) against the started broker.
const test = require('node:test');
const assert = require('node:assert/strict');
const amqp = require('amqplib');
const { startWarren, WarrenError } = require('warren-testing');

// Whether the process runs (a zombie, dead but not yet reaped by its parent, does not count).
function alive(pid) {
  try {
    process.kill(pid, 0);
  } catch (err) {
    return err.code !== 'ESRCH';
  }
  try {
    const stat = require('node:fs').readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
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

test('stop falls back to SIGKILL when the broker ignores SIGTERM', async (t) => {
  // A stand-in broker that prints the LISTENING lines, then ignores SIGTERM (ignored signals stay ignored
  // across exec).
  const fs = require('node:fs');
  const os = require('node:os');
  const path = require('node:path');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'warren-testing-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const bin = path.join(dir, 'stubborn');
  fs.writeFileSync(bin, [
    '#!/bin/sh',
    "trap '' TERM",
    'echo "LISTENING port=1"',
    'echo "LISTENING management port=2"',
    'echo "LISTENING prometheus port=3"',
    'exec tail -f /dev/null',
    '',
  ].join('\n'), { mode: 0o755 });
  const broker = await startWarren({ bin });
  assert.equal(broker.url, 'amqp://guest:guest@127.0.0.1:1/%2F');
  assert.equal(broker.managementUrl, 'http://127.0.0.1:2');
  const t0 = Date.now();
  await broker.stop({ graceMs: 200 });
  assert.equal(broker.process.signalCode, 'SIGKILL');
  assert.ok(Date.now() - t0 >= 200);
  assert.equal(alive(broker.pid), false);
});

test('a broker the test forgot to stop is killed when the process exits', async () => {
  const { execFile } = require('node:child_process');
  const script = "require('warren-testing').startWarren().then((b) => console.log(b.pid))";
  // The child exits by itself (a forgotten broker does not keep it alive), printing the broker's pid.
  const out = await new Promise((resolve, reject) => {
    execFile(process.execPath, ['-e', script], { cwd: __dirname, timeout: 20000 }, (err, stdout) =>
      err ? reject(err) : resolve(stdout));
  });
  const pid = Number(out.trim());
  assert.ok(pid > 0, `pid ${out}`);
  const deadline = Date.now() + 5000;
  while (alive(pid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  assert.equal(alive(pid), false, `broker ${pid} outlived the test process`);
});
