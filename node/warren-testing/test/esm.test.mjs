// The package works from ES modules too (index.mjs).
import test from 'node:test';
import assert from 'node:assert/strict';
import warren, { startWarren, parseDuration } from 'warren-testing';

test('ESM import: named and default exports', async () => {
  assert.equal(warren.startWarren, startWarren);
  assert.equal(parseDuration('2s'), 2000);
  const broker = await startWarren();
  try {
    assert.match(broker.url, /^amqp:\/\/guest:guest@127\.0\.0\.1:\d+\/%2F$/);
    assert.equal((await broker.waitIdle()).idle, true);
  } finally {
    await broker.stop();
  }
});
