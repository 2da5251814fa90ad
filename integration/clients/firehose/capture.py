#!/usr/bin/env python3
"""Firehose tracer (amq.rabbitmq.trace) capture: run the same fixed scenario against
RabbitMQ and Warren and diff the normalised JSON output.

usage: firehose_capture.py [AMQP_URL] [MGMT_BASE_URL] [--user U --password P] [--dump-raw]
  defaults: amqp://guest:guest@127.0.0.1:5690/  http://127.0.0.1:15690  guest/guest

What it does
  * management API: GET /api/vhosts/%2F, PUT {"tracing":true}, GET again (statuses + "tracing"),
    GET /api/exchanges/%2F/amq.rabbitmq.trace; creates user fhuser for the 'user' field.
  * binds an exclusive server-named queue to amq.rabbitmq.trace with '#', consumes it (no-ack)
  * runs fixed steps; after each step drains the trace queue until 0.4 s of silence
  * every trace message is shown with: routing key, exchange, redelivered, the trace message's
    own non-empty properties, the property-flags word, body, and its headers parsed from the
    RAW content-header bytes as [name, AMQP type tag, value] (tables nested the same way,
    arrays as [tag, value]) plus the python type pika decoded each top-level header to.
  * masks: node -> "<node>", connection strings of our own connections -> "<conn:NAME>" (an
    exact match against the socket's local/peer address, so the format is checked),
    amq.gen-* names -> "amq.gen-*", x-death 'time' -> "<ts>", any other ip:port -> "<ip:port>".
Output: JSON on stdout. Leaves tracing disabled and removes what it created.
"""
import base64
import json
import re
import struct
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

import pika
from pika import spec

# ---------------------------------------------------------------- raw header capture
_orig_decode = spec.BasicProperties.decode


def _decode(self, encoded, offset=0):
    self._raw = bytes(encoded[offset:])
    return _orig_decode(self, encoded, offset)


spec.BasicProperties.decode = _decode


def _shortstr(b, o):
    n = b[o]
    return b[o + 1:o + 1 + n], o + 1 + n


def parse_value(b, o):
    t = chr(b[o]); o += 1
    if t == 't': return t, bool(b[o]), o + 1
    if t == 'b': return t, struct.unpack_from('>b', b, o)[0], o + 1
    if t == 'B': return t, b[o], o + 1
    if t == 's': return t, struct.unpack_from('>h', b, o)[0], o + 2
    if t == 'u': return t, struct.unpack_from('>H', b, o)[0], o + 2
    if t == 'I': return t, struct.unpack_from('>i', b, o)[0], o + 4
    if t == 'i': return t, struct.unpack_from('>I', b, o)[0], o + 4
    if t == 'l': return t, struct.unpack_from('>q', b, o)[0], o + 8
    if t == 'f': return t, struct.unpack_from('>f', b, o)[0], o + 4
    if t == 'd': return t, struct.unpack_from('>d', b, o)[0], o + 8
    if t == 'D': return t, [b[o], struct.unpack_from('>i', b, o + 1)[0]], o + 5
    if t == 'T': return t, struct.unpack_from('>Q', b, o)[0], o + 8
    if t == 'V': return t, None, o
    if t in 'Sx':
        n = struct.unpack_from('>I', b, o)[0]; o += 4
        raw = b[o:o + n]
        try:
            v = raw.decode('utf-8') if t == 'S' else 'hex:' + raw.hex()
        except UnicodeDecodeError:
            v = 'hex:' + raw.hex()
        return t, v, o + n
    if t == 'F':
        v, o = parse_table(b, o)
        return t, v, o
    if t == 'A':
        n = struct.unpack_from('>I', b, o)[0]; o += 4
        end = o + n; items = []
        while o < end:
            tt, vv, o = parse_value(b, o)
            items.append([tt, vv])
        return t, items, o
    raise ValueError('unknown field type %r at %d' % (t, o - 1))


def parse_table(b, o):
    n = struct.unpack_from('>I', b, o)[0]; o += 4
    end = o + n; items = []
    while o < end:
        k, o = _shortstr(b, o)
        t, v, o = parse_value(b, o)
        items.append([k.decode(), t, v])
    return items, o


def raw_headers(raw):
    """-> (flags_hex, [[name, tag, value], ...] or None)"""
    flags = struct.unpack_from('>H', raw, 0)[0]; o = 2
    if flags & 0x8000: _, o = _shortstr(raw, o)
    if flags & 0x4000: _, o = _shortstr(raw, o)
    if not flags & 0x2000: return '0x%04x' % flags, None
    t, _ = parse_table(raw, o)
    return '0x%04x' % flags, t


# ---------------------------------------------------------------- masking
class Masker:
    def __init__(self):
        self.conns = {}  # "a:p -> b:q" -> label
        self.node = None

    def add_conn(self, label, conn):
        sock = conn._impl._transport._sock
        l, p = sock.getsockname()[:2], sock.getpeername()[:2]
        self.conns['%s:%d -> %s:%d' % (l[0], l[1], p[0], p[1])] = '<conn:%s>' % label

    def s(self, v):
        if not isinstance(v, str): return v
        if v in self.conns: return self.conns[v]
        if self.node and v == self.node: return '<node>'
        v = re.sub(r'amq\.gen-[A-Za-z0-9_-]{22}', 'amq.gen-*', v)
        v = re.sub(r'\d+\.\d+\.\d+\.\d+:\d+', '<ip:port>', v)
        return v

    def value(self, tag, v, key=None):
        if tag == 'F': return self.table(v)
        if tag == 'A': return [[t, self.value(t, x)] for t, x in v]
        if key == 'time' and tag == 'T': return '<ts>'
        return self.s(v)

    def table(self, items):
        return [[k, t, self.value(t, v, k)] for k, t, v in items]


M = Masker()


# ---------------------------------------------------------------- management API
class Mgmt:
    def __init__(self, base, user, pw):
        self.base = base.rstrip('/')
        self.auth = 'Basic ' + base64.b64encode(('%s:%s' % (user, pw)).encode()).decode()

    def req(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        r = urllib.request.Request(self.base + path, data=data, method=method)
        r.add_header('Authorization', self.auth)
        if data is not None: r.add_header('content-type', 'application/json')
        try:
            with urllib.request.urlopen(r, timeout=10) as resp:
                txt = resp.read().decode()
                return resp.status, (json.loads(txt) if txt else None)
        except urllib.error.HTTPError as e:
            txt = e.read().decode()
            try: return e.code, json.loads(txt)
            except ValueError: return e.code, txt


# ---------------------------------------------------------------- helpers
def props_dict(p):
    out = {}
    for k in ('content_type', 'content_encoding', 'delivery_mode', 'priority', 'correlation_id',
              'reply_to', 'expiration', 'message_id', 'timestamp', 'type', 'user_id', 'app_id',
              'cluster_id'):
        v = getattr(p, k, None)
        if v is not None: out[k] = v
    return out


def body_repr(b):
    if len(b) > 64:
        return {'len': len(b), 'head': b[:16].decode('latin-1'), 'all_same_byte': len(set(b)) == 1}
    try: return b.decode('utf-8')
    except UnicodeDecodeError: return 'hex:' + b.hex()


class Tracer:
    def __init__(self, params):
        self.conn = pika.BlockingConnection(params)
        M.add_conn('tracer', self.conn)
        self.ch = self.conn.channel()
        self.q = self.ch.queue_declare('', exclusive=True).method.queue
        self.ch.queue_bind(self.q, 'amq.rabbitmq.trace', '#')
        self.buf = []
        self.ch.basic_consume(self.q, self._on, auto_ack=True)

    def _on(self, ch, m, p, body):
        self.buf.append((m, p, body))

    def drain(self, quiet=0.4, maximum=4.0):
        t0 = time.time(); last = t0; n = len(self.buf)
        while time.time() - last < quiet and time.time() - t0 < maximum:
            self.conn.process_data_events(time_limit=0.05)
            if len(self.buf) != n:
                n = len(self.buf); last = time.time()
        out, self.buf = self.buf, []
        return [self.fmt(m, p, b) for m, p, b in out]

    dump_raw = False

    def fmt(self, m, p, body):
        flags, hdrs = raw_headers(p._raw)
        if Tracer.dump_raw:
            Tracer.dump_raw = False
            sys.stderr.write('raw content-header properties of first trace (%s):\n%s\n'
                             % (m.routing_key, p._raw.hex()))
        if M.node is None and hdrs:
            for k, t, v in hdrs:
                if k == 'node': M.node = v
        return {
            'routing_key': M.s(m.routing_key),
            'exchange': m.exchange,
            'redelivered': m.redelivered,
            'property_flags': flags,
            'own_properties': props_dict(p),
            'header_py_types': [[k, type(v).__name__] for k, v in (p.headers or {}).items()],
            'headers': M.table(hdrs) if hdrs is not None else None,
            'body': body_repr(body),
        }


def attempt(fn):
    try:
        r = fn()
        return {'ok': True} if r is None else {'ok': r}
    except pika.exceptions.ChannelClosedByBroker as e:
        return {'channel_closed': [e.reply_code, M.s(e.reply_text)]}
    except pika.exceptions.ConnectionClosedByBroker as e:
        return {'connection_closed': [e.reply_code, M.s(e.reply_text)]}


# ---------------------------------------------------------------- scenario
def main():
    args = [a for a in sys.argv[1:] if not a.startswith('--')]
    opts = sys.argv[1:]
    amqp_url = args[0] if args else 'amqp://guest:guest@127.0.0.1:5690/'
    mgmt_url = args[1] if len(args) > 1 else 'http://127.0.0.1:15690'
    user = opts[opts.index('--user') + 1] if '--user' in opts else 'guest'
    pw = opts[opts.index('--password') + 1] if '--password' in opts else 'guest'
    dump_raw = '--dump-raw' in opts
    api = Mgmt(mgmt_url, user, pw)
    params = pika.URLParameters(amqp_url)
    result = {'mgmt': {}, 'steps': []}
    R = result['mgmt']

    def vhost_view():
        st, body = api.req('GET', '/api/vhosts/%2F?disable_stats=true')
        return [st, {k: body.get(k) for k in ('name', 'tracing', 'description', 'tags')}
                if isinstance(body, dict) else body]

    # worker connection opened BEFORE tracing is enabled: channels must pick the change up
    W = pika.BlockingConnection(params)
    M.add_conn('W', W)
    pre_ch = W.channel()  # channel 1, opened before tracing on

    api.req('PUT', '/api/vhosts/%2F', {'tracing': False})
    R['get_before'] = vhost_view()
    R['put_tracing_true'] = api.req('PUT', '/api/vhosts/%2F', {'tracing': True})
    R['get_after'] = vhost_view()
    R['put_tracing_true_again'] = api.req('PUT', '/api/vhosts/%2F', {'tracing': True})
    R['put_tracing_bad'] = api.req('PUT', '/api/vhosts/%2F', {'tracing': 'bogus'})
    st, x = api.req('GET', '/api/exchanges/%2F/amq.rabbitmq.trace')
    R['trace_exchange'] = [st, {k: x.get(k) for k in ('name', 'type', 'durable', 'auto_delete',
                                                       'internal', 'arguments')}
                           if isinstance(x, dict) else x]
    R['create_user'] = api.req('PUT', '/api/users/fhuser', {'password': 'fhpass', 'tags': ''})[0]
    R['perm_user'] = api.req('PUT', '/api/permissions/%2F/fhuser',
                             {'configure': '.*', 'write': '.*', 'read': '.*'})[0]

    Tracer.dump_raw = dump_raw
    T = Tracer(params)
    steps = result['steps']

    def step(name, fn):
        ev = {}
        try:
            fn(ev)
        except Exception as e:  # keep going; record it
            ev['exception'] = '%s: %s' % (type(e).__name__, M.s(str(e)))
        steps.append({'step': name, 'events': ev, 'traces': T.drain()})

    ch = W.channel()  # channel 2
    ch.confirm_delivery()
    setup = T.drain()  # declares/binds are not traced
    if setup: result['unexpected_setup_traces'] = setup

    def s_setup(ev):
        ch.queue_declare('fh.q1')
        ch.queue_declare('fh.qa'); ch.queue_declare('fh.qb'); ch.queue_declare('fh.qc')
        ch.queue_bind('fh.qa', 'amq.direct', 'k1')
        ch.queue_bind('fh.qb', 'amq.direct', 'k2')
        ch.queue_bind('fh.qc', 'amq.direct', 'k3')
        ch.exchange_declare('fh.fan', 'fanout', auto_delete=False)
        for q in ('fh.f3', 'fh.f1', 'fh.f2'):
            ch.queue_declare(q); ch.queue_bind(q, 'fh.fan', '')
        ch.exchange_declare('fh.dlx', 'fanout')
        ch.queue_declare('fh.dlq'); ch.queue_bind('fh.dlq', 'fh.dlx', '')
        ch.queue_declare('fh.dlsrc', arguments={'x-dead-letter-exchange': 'fh.dlx'})
        ch.queue_declare('fh.ttl', arguments={'x-dead-letter-exchange': 'fh.dlx',
                                              'x-message-ttl': 50})
        ch.queue_declare('fh.ttl_nodlx', arguments={'x-message-ttl': 50})
        for q in ('fh.q1', 'fh.qa', 'fh.qb', 'fh.qc', 'fh.f1', 'fh.f2', 'fh.f3', 'fh.dlq',
                  'fh.dlsrc', 'fh.ttl', 'fh.ttl_nodlx'):
            ch.queue_purge(q)
    step('setup_declares_binds_purges_not_traced', s_setup)

    def s_pre_channel(ev):
        pre_ch.basic_publish('', 'fh.q1', b'from-channel-opened-before-trace_on')
        ev['note'] = 'channel 1 was opened before tracing was enabled'
    step('publish_on_channel_opened_before_trace_on', s_pre_channel)

    step('publish_default_exchange_no_props',
         lambda ev: ch.basic_publish('', 'fh.q1', b'hello'))

    step('publish_default_exchange_unroutable_rk',
         lambda ev: ch.basic_publish('', 'fh.nosuchqueue', b'x'))

    step('publish_amq_direct_cc_bcc', lambda ev: ch.basic_publish(
        'amq.direct', 'k1', b'ccbcc',
        pika.BasicProperties(headers={'CC': ['k2'], 'BCC': ['k3'], 'h': 'v'})))

    step('publish_fanout_three_queues', lambda ev: ch.basic_publish('fh.fan', 'any.key', b'fan'))

    rich = pika.BasicProperties(
        content_type='application/json', content_encoding='gzip',
        headers={'s': 'str', 'i': 42, 'b': True, 'n': None, 'x': b'\x00\x01',
                 'arr': ['a', 1, False], 'tbl': {'inner': 'v', 'num': -7}},
        delivery_mode=2, priority=5, correlation_id='corr-1', reply_to='reply.q',
        expiration='60000', message_id='msg-1', timestamp=1700000000, type='mytype',
        user_id='guest', app_id='myapp', cluster_id='cl1')
    step('publish_rich_properties', lambda ev: ch.basic_publish('', 'fh.q1', b'rich', rich))

    step('publish_timestamp_above_2^31', lambda ev: ch.basic_publish(
        '', 'fh.q1', b'bigts', pika.BasicProperties(timestamp=4102444800, priority=0,
                                                    delivery_mode=1)))

    step('publish_empty_body', lambda ev: ch.basic_publish('', 'fh.q1', b''))
    step('publish_large_body_multi_frame',
         lambda ev: ch.basic_publish('', 'fh.q1', b'Z' * 300000))
    step('publish_amq_topic_dotted_rk', lambda ev: ch.basic_publish('amq.topic', 'a.b.c', b't'))

    def s_mandatory(ev):
        rets = []
        ch.add_on_return_callback(lambda c, m, p, b: rets.append(
            [m.reply_code, m.reply_text, m.exchange, m.routing_key]))
        try:
            ch.basic_publish('amq.direct', 'nobody', b'unroutable', mandatory=True)
            ev['confirm'] = 'ack'
        except pika.exceptions.UnroutableError:
            ev['confirm'] = 'UnroutableError(returned, then acked)'
        W.process_data_events(time_limit=0.2)
        ev['returns'] = rets
    step('publish_mandatory_unroutable', s_mandatory)

    def s_noex(ev):
        c = W.channel()
        ev['publish'] = attempt(lambda: (c.basic_publish('fh.nosuchexchange', 'k', b'x'),
                                         c.basic_qos(prefetch_count=0))[1])
    step('publish_nonexistent_exchange', s_noex)

    def s_tracex(ev):
        c = W.channel()
        ev['publish'] = attempt(lambda: (c.basic_publish('amq.rabbitmq.trace', 'publish.x', b'x'),
                                         c.basic_qos(prefetch_count=0))[1])
    step('publish_directly_to_amq.rabbitmq.trace', s_tracex)

    def s_bind_trace(ev):
        c = W.channel()
        ev['declare_passive'] = attempt(lambda: str(c.exchange_declare(
            'amq.rabbitmq.trace', passive=True).method.NAME))
        ev['declare_same'] = attempt(lambda: str(c.exchange_declare(
            'amq.rabbitmq.trace', 'topic', durable=True, internal=True).method.NAME))
        c.queue_declare('fh.tq'); c.queue_purge('fh.tq')
        ev['bind'] = attempt(lambda: str(c.queue_bind('fh.tq', 'amq.rabbitmq.trace',
                                                     'publish.fh.fan').method.NAME))
    step('exchange_declare_and_bind_on_trace_exchange', s_bind_trace)

    def s_trace_of_trace(ev):
        ch.basic_publish('fh.fan', 'again', b'fan2')  # publish trace goes to fh.tq too
        ev['publish_traces'] = [[t['routing_key'], t['body']] for t in T.drain()]
        c = W.channel(channel_number=9)
        m, p, b = c.basic_get('fh.tq', auto_ack=True)
        ev['got_from_bound_trace_queue'] = None if m is None else [m.exchange, m.routing_key]
        ev['note'] = 'getting a trace message from a queue bound to amq.rabbitmq.trace'
    step('deliver_of_trace_message_not_traced', s_trace_of_trace)

    def s_consume(ev):
        c = W.channel(channel_number=7)
        got = []
        tag = c.basic_consume('fh.qa', lambda cc, m, p, b: got.append(m), consumer_tag='fhctag')
        t0 = time.time()
        while not got and time.time() - t0 < 2: W.process_data_events(time_limit=0.05)
        ev['delivery'] = [[m.consumer_tag, m.delivery_tag, m.redelivered, m.exchange,
                           m.routing_key] for m in got]
        for m in got: c.basic_ack(m.delivery_tag)
        c.basic_cancel(tag)
    step('basic_consume_delivery_cc_message_from_fh.qa', s_consume)

    def s_get(ev):
        c = W.channel(channel_number=8)
        m, p, b = c.basic_get('fh.qb')
        ev['get'] = [m.delivery_tag, m.redelivered, m.exchange, m.routing_key, b.decode()]
        c.basic_ack(m.delivery_tag)
        m, p, b = c.basic_get('fh.qc', auto_ack=True)
        ev['get_noack'] = [m.delivery_tag, m.redelivered, m.exchange, m.routing_key]
    step('basic_get_ack_and_noack_from_fh.qb_fh.qc', s_get)

    def s_nack(ev):
        c = W.channel(channel_number=10)
        m, p, b = c.basic_get('fh.f1')
        c.basic_nack(m.delivery_tag, requeue=True)
        m, p, b = c.basic_get('fh.f1')
        ev['second_get_redelivered'] = m.redelivered
        c.basic_reject(m.delivery_tag, requeue=True)
        c.close()  # nothing traced on close
    step('get_nack_requeue_get_again_redelivered', s_nack)

    def s_recover(ev):
        c = W.channel(channel_number=11)
        m, p, b = c.basic_get('fh.f2')
        c.basic_recover(requeue=True)
        m2, p, b = c.basic_get('fh.f2', auto_ack=True)
        ev['after_recover'] = [m2.redelivered] if m2 else None
    step('recover_requeue', s_recover)

    def s_dl(ev):
        ch.basic_publish('', 'fh.dlsrc', b'to-be-dead',
                         pika.BasicProperties(expiration='100000', headers={'h': 1}))
        ev['publish_traces'] = len(T.drain())
        c = W.channel(channel_number=12)
        m, p, b = c.basic_get('fh.dlsrc')
        c.basic_reject(m.delivery_tag, requeue=False)
        time.sleep(0.3)
    step('dead_letter_via_reject(publish+get traces counted only)', s_dl)

    def s_dlget(ev):
        c = W.channel(channel_number=13)
        m, p, b = c.basic_get('fh.dlq', auto_ack=True)
        ev['dlq_get'] = None if m is None else [m.exchange, m.routing_key]
    step('get_dead_lettered_message_from_fh.dlq', s_dlget)

    def s_ttl(ev):
        ch.basic_publish('', 'fh.ttl', b'expire-to-dlx')
        ch.basic_publish('', 'fh.ttl_nodlx', b'expire-drop')
        ch.basic_publish('', 'fh.q1', b'per-msg-expire', pika.BasicProperties(expiration='1'))
        time.sleep(0.5)
        c = W.channel(channel_number=14)
        m, p, b = c.basic_get('fh.dlq', auto_ack=True)
        ev['dlq_get'] = None if m is None else [m.exchange, m.routing_key]
    step('ttl_expiry_then_get_from_dlq', s_ttl)

    def s_tx(ev):
        c = W.channel(channel_number=15)
        c.tx_select()
        c.basic_publish('', 'fh.q1', b'tx-rolled-back')
        ev['traces_before_rollback'] = [[t['routing_key'], t['body']] for t in T.drain()]
        c.tx_rollback()
        ev['fh.q1_has_rolled_back_msg'] = False  # rollback discards it; trace stays emitted
    step('tx_publish_then_rollback(trace emitted at publish, before commit)', s_tx)

    def s_ordering(ev):
        c = W.channel(channel_number=16)
        c.queue_declare('fh.ord'); c.queue_purge('fh.ord')
        got = []
        c.basic_consume('fh.ord', lambda cc, m, p, b: got.append(b), auto_ack=True,
                        consumer_tag='ordtag')
        c.basic_publish('', 'fh.ord', b'ordered-1')  # same channel publishes & consumes
        t0 = time.time()
        while not got and time.time() - t0 < 2: W.process_data_events(time_limit=0.05)
        ev['consumed'] = [b.decode() for b in got]
    step('publish_and_consume_same_channel_ordering', s_ordering)

    step('publish_default_exchange_cc_dupes_and_missing_queues', lambda ev: ch.basic_publish(
        '', 'fh.q1', b'dcc', pika.BasicProperties(
            headers={'CC': ['zz.nosuch', 'fh.q1', 'aa.nosuch'], 'BCC': ['fh.q1', 'bb.nosuch']})))

    def s_ae_e2e(ev):
        c = W.channel(channel_number=17)
        c.exchange_declare('fh.ae_src', 'direct', arguments={'alternate-exchange': 'fh.fan'})
        c.exchange_declare('fh.e2e', 'topic')
        c.exchange_bind('fh.fan', 'fh.e2e', '#')
        c.queue_declare('fh.e2eq'); c.queue_bind('fh.e2eq', 'fh.e2e', 'a.#')
        T.drain()
        c.confirm_delivery()
        c.basic_publish('fh.ae_src', 'nomatch', b'via-ae')
        c.basic_publish('fh.e2e', 'a.b', b'via-e2e')
        for q in ('fh.f1', 'fh.f2', 'fh.f3', 'fh.e2eq'):
            c.queue_purge(q)
    step('publish_via_alternate_exchange_and_exchange_to_exchange', s_ae_e2e)

    def s_user(ev):
        u = urllib.parse.urlparse(amqp_url)
        p2 = pika.URLParameters(u._replace(netloc='fhuser:fhpass@%s:%d' % (u.hostname, u.port or 5672)).geturl())
        c2 = pika.BlockingConnection(p2)
        M.add_conn('fhuser', c2)
        cc = c2.channel(channel_number=3)
        cc.basic_publish('', 'fh.q1', b'by-fhuser')
        m, p, b = cc.basic_get('fh.q1', auto_ack=True)
        ev['got'] = b.decode() if m else None
        c2.close()
    step('other_user_publish_and_get', s_user)

    def s_alltags(ev):
        # hand-encoded content header: headers table with every 0-9-1 field type tag, plus an
        # array holding each of them; checks the tags survive into the trace 'properties'
        def ss(k): return bytes([len(k)]) + k.encode()
        vals = [('t', b't\x01'), ('b', b'b\xfb'), ('B', b'B\xfa'), ('s', b's' + struct.pack('>h', -300)),
                ('u', b'u' + struct.pack('>H', 65000)), ('I', b'I' + struct.pack('>i', -70000)),
                ('i', b'i' + struct.pack('>I', 4000000000)), ('l', b'l' + struct.pack('>q', -2 ** 40)),
                ('f', b'f' + struct.pack('>f', 1.5)), ('d', b'd' + struct.pack('>d', 2.25)),
                ('D', b'D\x02' + struct.pack('>i', 12345)), ('T', b'T' + struct.pack('>Q', 1700000000)),
                ('V', b'V'), ('S', b'S\x00\x00\x00\x03abc'), ('x', b'x\x00\x00\x00\x02\x00\xff')]
        arr = b''.join(v for _, v in vals)
        tbl = b''.join(ss(k) + v for k, v in vals) + ss('A') + b'A' + struct.pack('>I', len(arr)) + arr
        raw = struct.pack('>H', 0x2000) + struct.pack('>I', len(tbl)) + tbl

        class RawProps(pika.BasicProperties):
            def encode(self):
                return [raw]
        ch.basic_publish('', 'fh.q1', b'alltags', RawProps())
    step('publish_headers_with_every_field_type_tag', s_alltags)

    def s_off(ev):
        ev['put_false'] = api.req('PUT', '/api/vhosts/%2F', {'tracing': False})
        ev['get'] = vhost_view()
        ch.basic_publish('', 'fh.q1', b'after-trace_off')
    step('tracing_off_then_publish', s_off)

    # ---------------------------------------------------------------- cleanup
    c = W.channel()
    for q in ('fh.q1', 'fh.qa', 'fh.qb', 'fh.qc', 'fh.f1', 'fh.f2', 'fh.f3', 'fh.dlq', 'fh.dlsrc',
              'fh.ttl', 'fh.ttl_nodlx', 'fh.tq', 'fh.ord', 'fh.e2eq'):
        c.queue_delete(q)
    for x in ('fh.fan', 'fh.dlx', 'fh.ae_src', 'fh.e2e'):
        c.exchange_delete(x)
    api.req('DELETE', '/api/users/fhuser')
    W.close(); T.conn.close()
    result['node_shape_ok'] = bool(M.node and re.match(r'^[^@]+@[^@]+$', M.node))
    if dump_raw:
        sys.stderr.write('node=%r conns=%r\n' % (M.node, M.conns))
    sys.stdout.write(pretty(result) + '\n')


def pretty(o, ind=0, width=110):
    """JSON; any list/object whose compact form fits on one line is kept on one line."""
    one = json.dumps(o, ensure_ascii=False)
    if len(one) + ind <= width or not isinstance(o, (list, dict)) or not o:
        return one
    pad = ' ' * (ind + 1)
    if isinstance(o, dict):
        items = [pad + json.dumps(k, ensure_ascii=False) + ': ' +
                 pretty(v, ind + 1, width) for k, v in o.items()]
        return '{\n' + ',\n'.join(items) + '\n' + ' ' * ind + '}'
    return '[\n' + ',\n'.join(pad + pretty(v, ind + 1, width) for v in o) + '\n' + ' ' * ind + ']'


if __name__ == '__main__':
    main()
