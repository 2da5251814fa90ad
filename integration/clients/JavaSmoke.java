// Real-client smoke test with the RabbitMQ Java client (Debian's librabbitmq-client-java, 5.0.0).
//
// usage: run_java.sh AMQP_URL   (compiles this single file and runs it; see that script)
//
// Same scenario as pika_smoke.py, each assertion one counted check:
//   durable direct exchange + durable queue (unique names), bind; confirm.select; 100 persistent
//   messages with rich properties, every publish sequence number confirmed (ConfirmListener tracks
//   the broker's coalesced multiple=true acks) and waitForConfirmsOrDie; a mandatory unroutable
//   publish -> ReturnListener sees 312 NO_ROUTE, delivered before its ack; basic.qos(10) + manual-ack
//   consumer: prefetch honoured, bodies in order, properties and headers round-tripped exactly;
//   basic.get on the empty queue -> null; inequivalent redeclare -> ShutdownSignalException with
//   channel.close 406 PRECONDITION_FAILED; delete queue and exchange; close.
//
// Prints "java: N passed, M failed" last and exits non-zero on any failure.
// Validated against RabbitMQ 3.10.8 (Debian).

import com.rabbitmq.client.AMQP;
import com.rabbitmq.client.Channel;
import com.rabbitmq.client.ConfirmListener;
import com.rabbitmq.client.Connection;
import com.rabbitmq.client.ConnectionFactory;
import com.rabbitmq.client.DefaultConsumer;
import com.rabbitmq.client.Envelope;
import com.rabbitmq.client.GetResponse;
import com.rabbitmq.client.LongString;
import com.rabbitmq.client.ReturnListener;
import com.rabbitmq.client.ShutdownSignalException;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Date;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.UUID;
import java.util.concurrent.ConcurrentSkipListSet;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;

public class JavaSmoke {
    static final int N = 100;
    static final int PREFETCH = 10;
    static int passed = 0;
    static int failed = 0;
    static final boolean VERBOSE = System.getenv("SMOKE_VERBOSE") != null;

    static synchronized boolean check(String name, boolean ok, String detail) {
        if (ok) {
            passed++;
            if (VERBOSE) System.out.println("ok    " + name);
        } else {
            failed++;
            System.out.println("FAIL  " + name + (detail == null || detail.isEmpty() ? "" : ": " + detail));
            System.out.flush();
        }
        return ok;
    }

    static boolean check(String name, boolean ok) {
        return check(name, ok, "");
    }

    static synchronized void finish() {
        System.out.println("java: " + passed + " passed, " + failed + " failed");
        System.out.flush();
        // halt: do not wait for client threads of a connection that may be wedged.
        Runtime.getRuntime().halt(failed == 0 && passed > 0 ? 0 : 1);
    }

    static Map<String, Object> expectedHeaders(int i) {
        Map<String, Object> deep = new LinkedHashMap<>();
        deep.put("deep", false);
        deep.put("n", i);
        Map<String, Object> nested = new LinkedHashMap<>();
        nested.put("a", 1);
        nested.put("b", "x");
        nested.put("c", deep);
        Map<String, Object> inList = new LinkedHashMap<>();
        inList.put("in", "list");
        Map<String, Object> h = new LinkedHashMap<>();
        h.put("str", "h\u00e9llo-" + i);
        h.put("int", i);
        h.put("neg", -i - 1);
        h.put("big", (1L << 40) + i);
        h.put("bool", i % 2 == 0);
        h.put("list", Arrays.asList(1, "two", true, inList));
        h.put("nested", nested);
        return h;
    }

    static AMQP.BasicProperties makeProps(int i, long tsSeconds) {
        return new AMQP.BasicProperties.Builder()
                .contentType("application/json")
                .contentEncoding("utf-8")
                .headers(expectedHeaders(i))
                .deliveryMode(2)
                .priority(0)
                .correlationId("corr-" + i)
                .replyTo("reply-queue")
                .messageId("msg-" + i)
                .timestamp(new Date((tsSeconds + i) * 1000L))
                .type("smoke")
                .appId("java_smoke")
                .build();
    }

    static byte[] bodyOf(int i) {
        StringBuilder pad = new StringBuilder();
        for (int k = 0; k < i * 7; k++) pad.append('x');
        return ("{\"seq\": " + i + ", \"pad\": \"" + pad + "\"}").getBytes(StandardCharsets.UTF_8);
    }

    /** Decoded field tables hold LongString for strings; turn them back into String, recursively. */
    static Object normalize(Object v) {
        if (v instanceof LongString) return v.toString();
        if (v instanceof Map) {
            Map<String, Object> out = new LinkedHashMap<>();
            for (Map.Entry<?, ?> e : ((Map<?, ?>) v).entrySet()) out.put(e.getKey().toString(), normalize(e.getValue()));
            return out;
        }
        if (v instanceof List) {
            List<Object> out = new ArrayList<>();
            for (Object o : (List<?>) v) out.add(normalize(o));
            return out;
        }
        return v;
    }

    static List<String> propsDiff(AMQP.BasicProperties got, AMQP.BasicProperties want) {
        List<String> d = new ArrayList<>();
        Object[][] fields = {
            {"content_type", got.getContentType(), want.getContentType()},
            {"content_encoding", got.getContentEncoding(), want.getContentEncoding()},
            {"headers", normalize(got.getHeaders()), normalize(want.getHeaders())},
            {"delivery_mode", got.getDeliveryMode(), want.getDeliveryMode()},
            {"priority", got.getPriority(), want.getPriority()},
            {"correlation_id", got.getCorrelationId(), want.getCorrelationId()},
            {"reply_to", got.getReplyTo(), want.getReplyTo()},
            {"expiration", got.getExpiration(), want.getExpiration()},
            {"message_id", got.getMessageId(), want.getMessageId()},
            {"timestamp", got.getTimestamp(), want.getTimestamp()},
            {"type", got.getType(), want.getType()},
            {"user_id", got.getUserId(), want.getUserId()},
            {"app_id", got.getAppId(), want.getAppId()},
            {"cluster_id", got.getClusterId(), want.getClusterId()},
        };
        for (Object[] f : fields) {
            if (!Objects.equals(f[1], f[2])) d.add(f[0] + ": got " + f[1] + " want " + f[2]);
        }
        return d;
    }

    /** The channel.close a broker sent, from the exception a blocking RPC threw. */
    static AMQP.Channel.Close channelClose(Throwable t) {
        for (Throwable c = t; c != null; c = c.getCause()) {
            if (c instanceof ShutdownSignalException) {
                Object reason = ((ShutdownSignalException) c).getReason();
                if (reason instanceof AMQP.Channel.Close) return (AMQP.Channel.Close) reason;
            }
        }
        return null;
    }

    static final class Delivery {
        final String consumerTag;
        final Envelope env;
        final AMQP.BasicProperties props;
        final byte[] body;

        Delivery(String consumerTag, Envelope env, AMQP.BasicProperties props, byte[] body) {
            this.consumerTag = consumerTag;
            this.env = env;
            this.props = props;
            this.body = body;
        }
    }

    public static void main(String[] args) throws Exception {
        if (args.length != 1) {
            System.err.println("usage: JavaSmoke AMQP_URL");
            System.exit(2);
        }
        int watchdogSeconds = Integer.parseInt(System.getenv().getOrDefault("SMOKE_TIMEOUT", "120"));
        Thread watchdog = new Thread(() -> {
            try {
                Thread.sleep(watchdogSeconds * 1000L);
            } catch (InterruptedException e) {
                return;
            }
            check("watchdog", false, "scenario did not finish within " + watchdogSeconds + "s (broker hang?)");
            finish();
        });
        watchdog.setDaemon(true);
        watchdog.start();

        String tag = UUID.randomUUID().toString().replace("-", "").substring(0, 12);
        String xname = "smoke.java.x." + tag;
        String qname = "smoke.java.q." + tag;
        String q2name = "smoke.java.q2." + tag;
        String rk = "smoke-rk";
        Connection conn = null;
        try {
            ConnectionFactory cf = new ConnectionFactory();
            cf.setUri(args[0]);
            // The Java client follows the AMQP URI spec: "amqp://h:p/" means vhost "" (RabbitMQ: 530
            // "NOT_ALLOWED - vhost  not found"). pika and amqp091-go read "/" as the default vhost "/";
            // do the same here so one URL works for every client ("%2F" still works too).
            String rawPath = new java.net.URI(args[0]).getRawPath();
            if (rawPath == null || rawPath.isEmpty() || rawPath.equals("/")) cf.setVirtualHost("/");
            cf.setConnectionTimeout(10000);
            cf.setHandshakeTimeout(10000);
            cf.setAutomaticRecoveryEnabled(false);
            cf.setTopologyRecoveryEnabled(false);
            conn = cf.newConnection("java-smoke");
            check("connection open", conn.isOpen());
            Channel ch = conn.createChannel();
            check("channel open", ch.isOpen());

            // --- topology ----------------------------------------------------------------------
            AMQP.Exchange.DeclareOk xok = ch.exchangeDeclare(xname, "direct", true);
            check("exchange.declare-ok", xok != null);
            AMQP.Queue.DeclareOk qok = ch.queueDeclare(qname, true, false, false, null);
            check("queue.declare-ok name", qname.equals(qok.getQueue()), qok.getQueue());
            check("queue.declare-ok counts", qok.getMessageCount() == 0 && qok.getConsumerCount() == 0,
                    qok.getMessageCount() + "/" + qok.getConsumerCount());
            check("queue.bind-ok", ch.queueBind(qname, xname, rk) != null);

            // --- publisher confirms ------------------------------------------------------------
            List<String> events = new CopyOnWriteArrayList<>();  // ordering of returns vs acks
            ConcurrentSkipListSet<Long> acked = new ConcurrentSkipListSet<>();
            ConcurrentSkipListSet<Long> nacked = new ConcurrentSkipListSet<>();
            long[] highestSeen = {0};
            ch.addConfirmListener(new ConfirmListener() {
                private void mark(ConcurrentSkipListSet<Long> set, long tagNo, boolean multiple, String kind) {
                    events.add(kind + ":" + tagNo + (multiple ? "+" : ""));
                    synchronized (highestSeen) {
                        long from = multiple ? highestSeen[0] + 1 : tagNo;
                        for (long t = from; t <= tagNo; t++) {
                            if (!acked.contains(t) && !nacked.contains(t)) set.add(t);
                        }
                        highestSeen[0] = Math.max(highestSeen[0], tagNo);
                    }
                }

                @Override
                public void handleAck(long deliveryTag, boolean multiple) {
                    mark(acked, deliveryTag, multiple, "ack");
                }

                @Override
                public void handleNack(long deliveryTag, boolean multiple) {
                    mark(nacked, deliveryTag, multiple, "nack");
                }
            });
            LinkedBlockingQueue<Object[]> returns = new LinkedBlockingQueue<>();
            ch.addReturnListener(new ReturnListener() {
                @Override
                public void handleReturn(int replyCode, String replyText, String exchange, String routingKey,
                                         AMQP.BasicProperties properties, byte[] body) {
                    events.add("return");
                    returns.add(new Object[] {replyCode, replyText, exchange, routingKey, properties, body});
                }
            });
            ch.confirmSelect();
            check("confirm.select", true);
            long ts = System.currentTimeMillis() / 1000L;
            for (int i = 0; i < N; i++) {
                long seq = ch.getNextPublishSeqNo();
                check("publish #" + (i + 1) + " sequence number", seq == i + 1, "got " + seq);
                ch.basicPublish(xname, rk, true, makeProps(i, ts), bodyOf(i));
            }
            try {
                ch.waitForConfirmsOrDie(15000);
                check("waitForConfirmsOrDie (" + N + " publishes)", true);
            } catch (Exception e) {
                check("waitForConfirmsOrDie (" + N + " publishes)", false, e.toString());
            }
            for (long t = 1; t <= N; t++) {
                check("confirm #" + t + " acked", acked.contains(t) && !nacked.contains(t),
                        "acked=" + acked.contains(t) + " nacked=" + nacked.contains(t));
            }
            check("no returns for routable publishes", returns.isEmpty(), returns.size() + " returned");

            // --- mandatory + unroutable -> basic.return, then ack -------------------------------
            String unroutableRk = "nowhere-" + tag;
            if (VERBOSE) System.out.println("confirm frames for " + N + " publishes: " + events);
            events.clear();
            long lostSeq = ch.getNextPublishSeqNo();
            ch.basicPublish(xname, unroutableRk, true,
                    new AMQP.BasicProperties.Builder().messageId("lost-1").build(),
                    "unroutable".getBytes(StandardCharsets.UTF_8));
            try {
                ch.waitForConfirmsOrDie(10000);
                check("unroutable mandatory publish is acked (not nacked)", acked.contains(lostSeq),
                        "events " + events);
            } catch (Exception e) {
                check("unroutable mandatory publish is acked (not nacked)", false, e + " events " + events);
            }
            Object[] ret = returns.poll(5, TimeUnit.SECONDS);
            if (check("ReturnListener received the message", ret != null)) {
                check("basic.return reply_code 312", ((Integer) ret[0]) == 312, String.valueOf(ret[0]));
                check("basic.return reply_text NO_ROUTE", "NO_ROUTE".equals(ret[1]), String.valueOf(ret[1]));
                check("basic.return exchange/routing_key", xname.equals(ret[2]) && unroutableRk.equals(ret[3]),
                        ret[2] + " " + ret[3]);
                check("returned body", "unroutable".equals(new String((byte[]) ret[5], StandardCharsets.UTF_8)));
                check("returned properties", "lost-1".equals(((AMQP.BasicProperties) ret[4]).getMessageId()));
            }
            check("exactly one return", returns.isEmpty(), returns.size() + " extra");
            check("basic.return arrives before its basic.ack", events.size() >= 2 && "return".equals(events.get(0))
                    && events.get(1).startsWith("ack:" + lostSeq), "events " + events);

            AMQP.Queue.DeclareOk pok = ch.queueDeclarePassive(qname);
            check("queue holds " + N + " messages after confirms", pok.getMessageCount() == N,
                    String.valueOf(pok.getMessageCount()));

            // --- consume with prefetch + manual ack ---------------------------------------------
            ch.basicQos(PREFETCH);
            LinkedBlockingQueue<Delivery> inbox = new LinkedBlockingQueue<>();
            String ctag = ch.basicConsume(qname, false, new DefaultConsumer(ch) {
                @Override
                public void handleDelivery(String consumerTag, Envelope envelope, AMQP.BasicProperties properties,
                                           byte[] body) {
                    inbox.add(new Delivery(consumerTag, envelope, properties, body));
                }
            });
            check("basic.consume-ok tag", ctag != null && !ctag.isEmpty(), ctag);
            List<Delivery> got = new ArrayList<>();
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
            while (got.size() < PREFETCH && System.nanoTime() < deadline) {
                Delivery d = inbox.poll(100, TimeUnit.MILLISECONDS);
                if (d != null) got.add(d);
            }
            Thread.sleep(500);  // give a prefetch-ignoring broker time to overrun
            check("prefetch " + PREFETCH + " honoured (no acks yet)", got.size() == PREFETCH && inbox.isEmpty(),
                    "received " + (got.size() + inbox.size()));
            for (Delivery d : got) ch.basicAck(d.env.getDeliveryTag(), false);
            deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
            while (got.size() < N && System.nanoTime() < deadline) {
                Delivery d = inbox.poll(100, TimeUnit.MILLISECONDS);
                if (d != null) {
                    got.add(d);
                    ch.basicAck(d.env.getDeliveryTag(), false);
                }
            }
            Delivery extra = inbox.poll(200, TimeUnit.MILLISECONDS);
            check("received exactly " + N + " deliveries", got.size() == N && extra == null,
                    "received " + (got.size() + (extra == null ? 0 : 1 + inbox.size())));
            for (int i = 0; i < Math.min(N, got.size()); i++) {
                Delivery d = got.get(i);
                List<String> problems = new ArrayList<>();
                if (!Arrays.equals(d.body, bodyOf(i))) problems.add("body " + new String(d.body, StandardCharsets.UTF_8));
                Envelope e = d.env;
                if (!xname.equals(e.getExchange()) || !rk.equals(e.getRoutingKey()) || e.isRedeliver()
                        || e.getDeliveryTag() != i + 1 || !ctag.equals(d.consumerTag)) {
                    problems.add("deliver " + e + " ctag " + d.consumerTag);
                }
                problems.addAll(propsDiff(d.props, makeProps(i, ts)));
                check("message #" + i + " in order, properties and headers intact", problems.isEmpty(),
                        String.join("; ", problems));
            }
            ch.basicCancel(ctag);
            check("basic.cancel", true);

            // --- basic.get on an empty queue --------------------------------------------------
            GetResponse gr = ch.basicGet(qname, false);
            check("basic.get on empty queue -> get-empty (null)", gr == null, String.valueOf(gr));
            pok = ch.queueDeclarePassive(qname);
            check("queue empty, no consumers", pok.getMessageCount() == 0 && pok.getConsumerCount() == 0,
                    pok.getMessageCount() + "/" + pok.getConsumerCount());

            // --- channel error: inequivalent redeclare ----------------------------------------
            Channel ch2 = conn.createChannel();
            ch2.queueDeclare(q2name, true, false, false, null);
            try {
                ch2.queueDeclare(q2name, false, false, false, null);
                check("inequivalent redeclare throws", false, "declare succeeded");
            } catch (IOException | ShutdownSignalException e) {
                AMQP.Channel.Close close = channelClose(e);
                if (check("inequivalent redeclare -> ShutdownSignalException with channel.close", close != null,
                        e.toString())) {
                    check("channel.close reply_code 406", close.getReplyCode() == 406, String.valueOf(close.getReplyCode()));
                    check("reply_text starts PRECONDITION_FAILED - inequivalent arg 'durable'",
                            close.getReplyText().startsWith("PRECONDITION_FAILED - inequivalent arg 'durable'"),
                            close.getReplyText());
                    String want = "PRECONDITION_FAILED - inequivalent arg 'durable' for queue '" + q2name
                            + "' in vhost '/': received 'false' but current is 'true'";
                    check("reply_text exact (RabbitMQ wording)", want.equals(close.getReplyText()), close.getReplyText());
                    check("channel.close names queue.declare (50/10)",
                            close.getClassId() == 50 && close.getMethodId() == 10,
                            close.getClassId() + "/" + close.getMethodId());
                }
            }
            check("errored channel is closed", !ch2.isOpen());
            check("connection survives a channel error", conn.isOpen());
            check("other channel survives a channel error", ch.isOpen());
            Channel ch3 = conn.createChannel();
            AMQP.Queue.DeleteOk dok = ch3.queueDelete(q2name);
            check("queue.delete of the durable queue", dok.getMessageCount() == 0, String.valueOf(dok.getMessageCount()));
            ch3.close();

            // --- cleanup ----------------------------------------------------------------------
            dok = ch.queueDelete(qname);
            check("queue.delete-ok message_count 0", dok.getMessageCount() == 0, String.valueOf(dok.getMessageCount()));
            check("exchange.delete-ok", ch.exchangeDelete(xname) != null);
            Channel ch4 = conn.createChannel();
            try {
                ch4.queueDeclarePassive(qname);
                check("deleted queue is gone (passive declare -> 404)", false, "queue still exists");
            } catch (IOException | ShutdownSignalException e) {
                AMQP.Channel.Close close = channelClose(e);
                check("deleted queue is gone (passive declare -> 404)", close != null && close.getReplyCode() == 404,
                        e.toString());
            }
            ch.close();
            check("channel.close", !ch.isOpen());
            conn.close(10000);
            check("connection.close", !conn.isOpen());
            conn = null;
        } catch (Throwable t) {
            check("scenario ran without unexpected exception", false, t + (t.getCause() != null ? " caused by " + t.getCause() : ""));
            if (VERBOSE) t.printStackTrace();
        } finally {
            if (conn != null && conn.isOpen()) {
                try {  // best effort: do not leave durable entities behind after a failure
                    Channel c = conn.createChannel();
                    c.queueDelete(qname);
                    c.queueDelete(q2name);
                    c.exchangeDelete(xname);
                    conn.close(5000);
                } catch (Throwable ignored) {
                    // already failing
                }
            }
        }
        finish();
    }
}
