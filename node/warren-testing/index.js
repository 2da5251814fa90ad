'use strict';
// warren-testing: start a throwaway Warren broker (`warren --port 0 --ephemeral`) for a test, and give the
// test its URLs plus Warren's test endpoints: the virtual clock, wait-until-idle and the message journal
// (GET/POST /api/warren/{clock,idle,journal} on the management listener). No runtime dependencies: only
// Node's child_process and the global fetch (Node >= 20).

const { spawn } = require('node:child_process');

const STARTUP_TIMEOUT_MS = 10000;
// The management and Prometheus LISTENING lines follow the AMQP one at once; this bounds the wait only
// when a config file turned those listeners off.
const HTTP_LINES_TIMEOUT_MS = 2000;
const STOP_GRACE_MS = 5000;
const LOG_LINES_KEPT = 200;
// How many of the related journal events a waitFor failure lists (the newest ones).
const RELATED_SHOWN = 20;

class WarrenError extends Error {
  constructor(message) {
    super(message);
    this.name = 'WarrenError';
  }
}

// Brokers still running when the process exits are killed, so a test that forgot stop() leaks nothing.
const running = new Set();
process.on('exit', () => {
  for (const child of running) {
    try {
      child.kill('SIGKILL');
    } catch {
      // already gone
    }
  }
});

/** The warren executable: an explicit path, $WARREN_BIN, or `warren` on PATH. */
function findBinary(explicit) {
  return explicit || process.env.WARREN_BIN || 'warren';
}

const UNIT_MS = { ms: 1, s: 1000, m: 60000, h: 3600000, d: 86400000 };

/**
 * A duration in milliseconds: a number (ms) or a string such as '90s', '1h', '1h30m', '250ms', '2d'.
 */
function parseDuration(d) {
  if (typeof d === 'number') {
    if (!Number.isFinite(d) || d < 0) throw new WarrenError(`bad duration ${d}: expected ms >= 0`);
    return Math.round(d);
  }
  if (typeof d !== 'string' || !/^\s*(\d+(\.\d+)?\s*(ms|s|m|h|d)\s*)+$/.test(d)) {
    throw new WarrenError(`bad duration ${JSON.stringify(d)}: expected ms or a string like '90s', '1h30m', '250ms'`);
  }
  let total = 0;
  for (const [, n, , unit] of d.matchAll(/(\d+(\.\d+)?)\s*(ms|s|m|h|d)/g)) total += Number(n) * UNIT_MS[unit];
  return Math.round(total);
}

/** '2s', '1.5s', '300ms', '1h' — for messages. */
function formatDuration(ms) {
  if (ms < 1000) return `${ms}ms`;
  if (ms % 3600000 === 0) return `${ms / 3600000}h`;
  if (ms % 60000 === 0 && ms >= 60000) return `${ms / 60000}m`;
  return `${Number((ms / 1000).toFixed(3))}s`;
}

/** Broker time (Unix ms) as UTC HH:MM:SS.mmm. */
function formatTime(ms) {
  return typeof ms === 'number' ? new Date(ms).toISOString().slice(11, 23) : String(ms);
}

// The journal's query parameters; camelCase spellings are accepted too.
const FILTER_KEYS = ['vhost', 'message_id', 'correlation_id', 'queue', 'exchange', 'event', 'since', 'until', 'limit'];
const CAMEL = { messageId: 'message_id', correlationId: 'correlation_id' };

function normalizeFilters(filters) {
  const out = {};
  for (const [k, v] of Object.entries(filters || {})) {
    const key = CAMEL[k] || k;
    if (!FILTER_KEYS.includes(key)) {
      throw new WarrenError(`unknown journal filter ${JSON.stringify(k)} (known: ${FILTER_KEYS.join(', ')})`);
    }
    if (v === undefined || v === null) continue;
    out[key] = v instanceof Date ? v.getTime() : v;
  }
  return out;
}

function describeFilters(filters, { withoutEvent = true } = {}) {
  return Object.entries(filters)
    .filter(([k]) => !(withoutEvent && k === 'event') && k !== 'limit')
    .map(([k, v]) => `${k}=${v}`)
    .join(' ');
}

function quoted(s) {
  return s === '' ? '""' : s;
}

/** One journal event as a short line: 'published 12:00:00.001 exchange=x rk=k'. */
function formatEvent(e, filters = {}) {
  const parts = [e.event, formatTime(e.time)];
  if (e.vhost && e.vhost !== '/' && !filters.vhost) parts.push(`vhost=${e.vhost}`);
  if (e.message_id != null && filters.message_id === undefined) parts.push(`message_id=${e.message_id}`);
  const messageLevel = ['published', 'unroutable', 'returned', 'routed'].includes(e.event);
  if (messageLevel) {
    if (e.exchange != null) parts.push(`exchange=${quoted(e.exchange)}`);
    if (e.routing_key != null) parts.push(`rk=${quoted(e.routing_key)}`);
  } else if (e.queue != null) {
    parts.push(`queue=${e.queue}`);
  }
  if (e.event === 'delivered') {
    parts.push(e.consumer_tag == null ? 'by basic.get' : `consumer=${e.consumer_tag}`);
    if (e.redelivered) parts.push('redelivered');
  }
  if (e.event === 'confirmed' && e.ack === false) parts.push('nack');
  if (e.reply_code != null) parts.push(`${e.reply_code} ${e.reply_text || ''}`.trim());
  if (typeof e.requeue === 'boolean') parts.push(`requeue=${e.requeue}`);
  if (e.reason != null) parts.push(`reason=${e.reason}`);
  if (e.dead_letter_exchange != null) parts.push(`dlx=${quoted(e.dead_letter_exchange)}`);
  const dlrk = e.dead_letter_routing_keys ?? e.dead_letter_routing_key;
  if (dlrk != null) parts.push(`dlrk=${Array.isArray(dlrk) ? dlrk.map(quoted).join(',') : quoted(dlrk)}`);
  if (Array.isArray(e.queues)) parts.push(`to [${e.queues.join(', ')}]`);
  if (Array.isArray(e.alternate) && e.alternate.length) parts.push(`via alternate [${e.alternate.join(', ')}]`);
  return parts.join(' ');
}

/**
 * The readable failure of waitFor: what was expected, and what the journal holds about the same message
 * (the 408 answer's `related` events: those matching every filter but `event`).
 */
function waitForFailure(filters, timeoutMs, body) {
  const what = filters.event ? `expected event ${filters.event}` : 'expected a journal event';
  const about = describeFilters(filters);
  let msg = `${what}${about ? ` for ${about}` : ''} within ${formatDuration(timeoutMs)}; `;
  const related = Array.isArray(body && body.related) ? body.related : [];
  if (body && body.enabled === false) {
    msg += 'the journal is disabled (the helper starts it with --journal on; or PUT /api/warren/journal {"enabled": true})';
    return msg;
  }
  if (related.length === 0) {
    msg += `journal has no events${about ? ` for ${about}` : ''}`;
  } else {
    const shown = related.slice(-RELATED_SHOWN);
    msg += 'journal has: ';
    if (related.length > shown.length) msg += `(${related.length - shown.length} earlier) `;
    msg += shown.map((e) => formatEvent(e, filters)).join(', ');
  }
  if (body && body.evicted > 0) msg += ` (the journal is full and dropped its ${body.evicted} oldest events)`;
  return msg;
}

/** The readable failure of waitIdle: what the broker still has in flight. */
function idleFailure(timeoutMs, pending) {
  const parts = [];
  for (const [k, v] of Object.entries(pending || {})) {
    if (k === 'deliverable_queues' && Array.isArray(v)) {
      const qs = v.map((q) => (q.vhost && q.vhost !== '/' ? `${q.name} (vhost ${q.vhost})` : q.name));
      parts.push(`deliverable_queues=[${qs.join(', ')}]`);
    } else {
      parts.push(`${k}=${typeof v === 'object' ? JSON.stringify(v) : v}`);
    }
  }
  return `broker not idle after ${formatDuration(timeoutMs)}; pending: ${parts.join(', ') || '(nothing reported)'}`;
}

class Broker {
  constructor(child, ports, log, user, password) {
    this.process = child;
    this.pid = child.pid;
    this.host = '127.0.0.1';
    this.user = user;
    this.password = password;
    this.port = ports.amqp;
    this.managementPort = ports.management;
    this.prometheusPort = ports.prometheus;
    this.log = log;
    this._exited = new Promise((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) resolve();
      else child.once('exit', () => resolve());
    });
  }

  /** amqp://guest:guest@127.0.0.1:PORT/%2F */
  get url() {
    return `amqp://${this.user}:${this.password}@${this.host}:${this.port}/%2F`;
  }

  /** http://127.0.0.1:PORT — RabbitMQ's management HTTP API is under /api (user guest/guest). */
  get managementUrl() {
    return this.managementPort ? `http://${this.host}:${this.managementPort}` : undefined;
  }

  /** http://127.0.0.1:PORT — scrape /metrics. */
  get prometheusUrl() {
    return this.prometheusPort ? `http://${this.host}:${this.prometheusPort}` : undefined;
  }

  /** A request to the management API; answers {status, body}. `ok` lists the statuses that are not errors. */
  async api(method, path, { body, ok = [200, 201, 204], timeoutMs = 30000 } = {}) {
    if (!this.managementPort) throw new WarrenError('this broker has no management listener');
    const auth = Buffer.from(`${this.user}:${this.password}`).toString('base64');
    let res;
    try {
      res = await fetch(`${this.managementUrl}/api/${path}`, {
        method,
        headers: { authorization: `Basic ${auth}`, 'content-type': 'application/json' },
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: AbortSignal.timeout(timeoutMs),
      });
    } catch (err) {
      throw new WarrenError(`${method} /api/${path}: ${err.message}`);
    }
    const text = await res.text();
    let json;
    try {
      json = text ? JSON.parse(text) : {};
    } catch {
      json = { raw: text };
    }
    if (!ok.includes(res.status)) {
      if (res.status === 404 && path.startsWith('warren/')) {
        throw new WarrenError(`${method} /api/${path}: 404 — this warren binary has no such test endpoint (too old?)`);
      }
      throw new WarrenError(`${method} /api/${path}: ${res.status} ${text}`);
    }
    return { status: res.status, body: json };
  }

  /** The broker clock: {mode: 'virtual'|'real', now: Unix ms}. */
  async clock() {
    return (await this.api('GET', 'warren/clock')).body;
  }

  /** The broker time, Unix ms (virtual or real). */
  async now() {
    return (await this.clock()).now;
  }

  /**
   * Move a virtual clock (start with args ['--clock', 'virtual']) forward by `d` (ms, or '90s', '1h', ...),
   * firing every TTL expiry, dead-lettering, queue expiry and consumer timeout that falls due, in time
   * order, before it answers. Resolves to the new broker time (Unix ms).
   */
  async advanceClock(d) {
    const ms = parseDuration(d);
    const { body } = await this.api('POST', 'warren/clock/advance', { body: { ms }, ok: [200, 400] });
    if (body.error) throw new WarrenError(`advanceClock: ${body.reason || body.error}`);
    return body.now;
  }

  /**
   * Resolve once nothing is in flight (no deliverable ready message, unacked delivery, pending confirm,
   * unsent bytes or due timer); reject with what is still pending after `timeoutMs` (default 10 s).
   */
  async waitIdle({ timeoutMs = 10000 } = {}) {
    const ms = parseDuration(timeoutMs);
    const { status, body } = await this.api('GET', `warren/idle?timeout_ms=${ms}`, {
      ok: [200, 408],
      timeoutMs: ms + 30000,
    });
    if (status === 408) throw new WarrenError(idleFailure(ms, body.pending));
    return body;
  }

  /**
   * Journal events matching `filters` ({message_id|messageId, correlation_id|correlationId, queue,
   * exchange, event, vhost, since, until, limit}), oldest first.
   */
  async journal(filters = {}) {
    const f = normalizeFilters(filters);
    return (await this.api('GET', `warren/journal?${new URLSearchParams(f)}`)).body.events;
  }

  /**
   * Wait until the journal has an event matching `filters` (e.g. {message_id: 'm1', event: 'dead-lettered'})
   * and resolve to the matching events; if none comes within `timeoutMs` (default 5 s), reject with a
   * message listing what the journal does hold about the same message.
   */
  async waitFor(filters, { timeoutMs = 5000 } = {}) {
    const f = normalizeFilters(filters);
    const ms = parseDuration(timeoutMs);
    const { status, body } = await this.api('GET', `warren/journal?${new URLSearchParams({ ...f, wait_ms: ms })}`, {
      ok: [200, 408],
      timeoutMs: ms + 30000,
    });
    if (status === 408 || !Array.isArray(body.events) || body.events.length === 0) {
      throw new WarrenError(waitForFailure(f, ms, body));
    }
    return body.events;
  }

  /** Empty the journal (DELETE /api/warren/journal). */
  async clearJournal() {
    await this.api('DELETE', 'warren/journal');
  }

  /** SIGTERM, then SIGKILL after a grace period; resolves once the process has exited. Idempotent. */
  async stop({ graceMs = STOP_GRACE_MS } = {}) {
    const child = this.process;
    if (child.exitCode === null && child.signalCode === null) {
      child.ref(); // keep the event loop alive until the exit is seen
      child.kill('SIGTERM');
      let timer;
      const killed = new Promise((resolve) => {
        timer = setTimeout(() => {
          child.kill('SIGKILL');
          resolve();
        }, graceMs);
      });
      await Promise.race([this._exited, killed]);
      clearTimeout(timer);
    }
    await this._exited;
    running.delete(child);
  }
}

/**
 * Start `warren --port 0 --bind 127.0.0.1 --ephemeral [...args]` and resolve once it listens.
 * Options: args (extra broker arguments, e.g. ['--clock', 'virtual']), bin (default $WARREN_BIN, else
 * `warren` on PATH), env, startTimeoutMs.
 */
async function startWarren({ args = [], bin, env, startTimeoutMs = STARTUP_TIMEOUT_MS } = {}) {
  const exe = findBinary(bin);
  const argv = ['--port', '0', '--bind', '127.0.0.1', '--ephemeral', '--journal', 'on', ...args];
  const log = [];
  const keep = (line) => {
    log.push(line);
    if (log.length > LOG_LINES_KEPT) log.shift();
  };
  const child = spawn(exe, argv, { stdio: ['ignore', 'pipe', 'pipe'], env: env || process.env });
  running.add(child);
  // A forgotten broker must not keep the test process alive; it is killed at exit (above).
  child.unref();
  child.stdout.unref?.();
  child.stderr.unref?.();

  const ports = {};
  return new Promise((resolve, reject) => {
    let settled = false;
    let httpTimer;
    const finish = (err) => {
      if (settled) return;
      settled = true;
      clearTimeout(startTimer);
      clearTimeout(httpTimer);
      if (err) {
        running.delete(child);
        if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
        reject(err);
      } else {
        resolve(new Broker(child, ports, log, 'guest', 'guest'));
      }
    };
    const startTimer = setTimeout(() => {
      finish(new WarrenError(`warren did not print LISTENING within ${formatDuration(startTimeoutMs)}: ${log.slice(-10).join(' | ')}`));
    }, startTimeoutMs);

    const lines = (stream, onLine) => {
      let buf = '';
      stream.setEncoding('utf8');
      stream.on('data', (chunk) => {
        buf += chunk;
        let i;
        while ((i = buf.indexOf('\n')) >= 0) {
          onLine(buf.slice(0, i));
          buf = buf.slice(i + 1);
        }
      });
    };
    lines(child.stderr, keep);
    lines(child.stdout, (line) => {
      keep(line);
      // LISTENING port=N | LISTENING management port=M | LISTENING prometheus port=P
      const m = /^LISTENING (?:(\w+) )?port=(\d+)/.exec(line);
      if (!m) return;
      const what = m[1] || 'amqp';
      ports[what] = Number(m[2]);
      if (what === 'amqp') httpTimer = setTimeout(() => finish(), HTTP_LINES_TIMEOUT_MS);
      if (what === 'prometheus') finish();
    });
    child.on('error', (err) => {
      finish(new WarrenError(
        err.code === 'ENOENT'
          ? `cannot run the warren binary ${JSON.stringify(exe)}: set WARREN_BIN, pass {bin}, or put warren on PATH`
          : `cannot run ${exe}: ${err.message}`,
      ));
    });
    // 'close', not 'exit': by then stderr has been read to its end, so the message has the broker's words.
    child.on('close', (code, signal) => {
      running.delete(child);
      finish(new WarrenError(`warren exited (${signal || `code ${code}`}) before listening: ${log.slice(-10).join(' | ')}`));
    });
  });
}

module.exports = {
  startWarren,
  Broker,
  WarrenError,
  findBinary,
  parseDuration,
  formatEvent,
  waitForFailure,
  idleFailure,
};
