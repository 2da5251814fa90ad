'use strict';
// Test plumbing: start a broker and an amqplib connection, closed in reverse order when the test ends.
const amqp = require('amqplib');
const { startWarren } = require('warren-testing');

async function setup(t, args = []) {
  const broker = await startWarren({ args });
  let conn;
  t.after(async () => {
    if (conn) await conn.close().catch(() => {});
    await broker.stop();
  });
  conn = await amqp.connect(broker.url);
  const ch = await conn.createChannel();
  return { broker, conn, ch };
}

module.exports = { setup };
