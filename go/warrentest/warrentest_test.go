package warrentest_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"warren/warrentest"
)

// fatalRecorder stands in for *testing.T to catch what a helper passes to t.Fatalf inside fatalOf;
// elsewhere it passes Fatalf on to the real test.
type fatalRecorder struct {
	testing.TB
	armed bool
	msg   string
}

func (f *fatalRecorder) Fatalf(format string, args ...any) {
	if !f.armed {
		f.TB.Helper()
		f.TB.Fatalf(format, args...)
	}
	f.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

// fatalOf runs fn in a goroutine of its own and returns the message fn's helper passed to Fatalf ("" if none).
func fatalOf(rec *fatalRecorder, fn func()) string {
	rec.armed = true
	defer func() { rec.armed = false }()
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn()
	}()
	<-done
	return rec.msg
}

func channel(t *testing.T, b *warrentest.Broker) *amqp.Channel {
	t.Helper()
	conn, err := amqp.Dial(b.URL)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { conn.Close() }) // runs before the broker's Stop (cleanups run last-in first-out)
	ch, err := conn.Channel()
	if err != nil {
		t.Fatalf("channel: %v", err)
	}
	return ch
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func declare(t *testing.T, ch *amqp.Channel, name string, args amqp.Table) {
	t.Helper()
	_, err := ch.QueueDeclare(name, false, false, false, false, args)
	must(t, err)
}

func publish(t *testing.T, ch *amqp.Channel, exchange, key string, p amqp.Publishing) {
	t.Helper()
	must(t, ch.Publish(exchange, key, false, false, p))
}

func count(t *testing.T, ch *amqp.Channel, queue string) int {
	t.Helper()
	q, err := ch.QueueInspect(queue)
	must(t, err)
	return q.Messages
}

func TestStartGivesURLsAndStopEndsTheProcess(t *testing.T) {
	b := warrentest.Start(t)
	if !regexp.MustCompile(`^amqp://guest:guest@127\.0\.0\.1:\d+/%2F$`).MatchString(b.URL) {
		t.Fatalf("URL %q", b.URL)
	}
	req, _ := http.NewRequest("GET", b.ManagementURL+"/api/overview", nil)
	req.SetBasicAuth("guest", "guest")
	res, err := http.DefaultClient.Do(req)
	must(t, err)
	res.Body.Close()
	if res.StatusCode != 200 {
		t.Fatalf("GET /api/overview: %d", res.StatusCode)
	}
	res, err = http.Get(b.PrometheusURL + "/metrics")
	must(t, err)
	metrics, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if !strings.Contains(string(metrics), "rabbitmq_queues") {
		t.Fatalf("no rabbitmq_queues in /metrics")
	}
	conn, err := amqp.Dial(b.URL)
	must(t, err)
	conn.Close()

	b.Stop()
	select {
	case <-b.Done():
	default:
		t.Fatal("Stop returned before the process exited")
	}
	if c, err := amqp.Dial(b.URL); err == nil {
		c.Close()
		t.Fatal("dialled a stopped broker")
	}
	b.Stop() // idempotent
}

func TestStopKillsABrokerThatIgnoresSIGTERM(t *testing.T) {
	// A stand-in broker that prints the LISTENING lines, then ignores SIGTERM (ignored signals stay
	// ignored across exec).
	bin := filepath.Join(t.TempDir(), "stubborn")
	script := "#!/bin/sh\ntrap '' TERM\necho 'LISTENING port=1'\necho 'LISTENING management port=2'\n" +
		"echo 'LISTENING prometheus port=3'\nexec tail -f /dev/null\n"
	must(t, os.WriteFile(bin, []byte(script), 0o755))
	b := warrentest.Start(t, warrentest.Bin(bin), warrentest.StopTimeout(200*time.Millisecond))
	if b.URL != "amqp://guest:guest@127.0.0.1:1/%2F" || b.ManagementURL != "http://127.0.0.1:2" {
		t.Fatalf("URL %s, management %s", b.URL, b.ManagementURL)
	}
	t0 := time.Now()
	b.Stop()
	if el := time.Since(t0); el < 200*time.Millisecond {
		t.Fatalf("stopped after %v: SIGTERM was not ignored?", el)
	}
	select {
	case <-b.Done():
	default:
		t.Fatal("Stop returned before the process exited")
	}
}

func TestPublishAndConsume(t *testing.T) {
	b := warrentest.Start(t)
	ch := channel(t, b)
	declare(t, ch, "jobs", nil)
	publish(t, ch, "", "jobs", amqp.Publishing{Body: []byte("hello"), MessageId: "j1", Headers: amqp.Table{"n": int32(1)}})
	deliveries, err := ch.Consume("jobs", "", false, false, false, false, nil)
	must(t, err)
	select {
	case d := <-deliveries:
		if string(d.Body) != "hello" || d.MessageId != "j1" || d.Headers["n"] != int32(1) {
			t.Fatalf("got %q id=%q headers=%v", d.Body, d.MessageId, d.Headers)
		}
		must(t, d.Ack(false))
	case <-time.After(5 * time.Second):
		t.Fatal("no delivery")
	}
}

func TestEveryBrokerIsFresh(t *testing.T) {
	a, b := warrentest.Start(t), warrentest.Start(t)
	if a.URL == b.URL {
		t.Fatal("two brokers, one URL")
	}
	declare(t, channel(t, a), "only-on-a", nil)
	if _, err := channel(t, b).QueueInspect("only-on-a"); err == nil || !strings.Contains(err.Error(), "NOT_FOUND") {
		t.Fatalf("queue of broker a seen on broker b: %v", err)
	}
}

func TestMissingBinaryIsAClearError(t *testing.T) {
	_, err := warrentest.TryStart(t, warrentest.Bin("/nonexistent/warren"))
	if err == nil || !strings.Contains(err.Error(), `"/nonexistent/warren" is not an executable file`) {
		t.Fatalf("err = %v", err)
	}
}

func TestBrokerRefusingItsArgumentsIsReportedInItsOwnWords(t *testing.T) {
	_, err := warrentest.TryStart(t, warrentest.Args("--clock", "sundial"))
	if err == nil || !regexp.MustCompile(`exited .* before listening: .*sundial`).MatchString(err.Error()) {
		t.Fatalf("err = %v", err)
	}
}

func TestAdvancingARealClockFailsTheTest(t *testing.T) {
	rec := &fatalRecorder{TB: t}
	b := warrentest.Start(rec)
	msg := fatalOf(rec, func() { b.AdvanceClock(time.Second) })
	if !strings.Contains(msg, "real clock") {
		t.Fatalf("Fatalf(%q)", msg)
	}
}

func TestAnHourTTLDeadLettersOnlyAfterAnHour(t *testing.T) {
	b := warrentest.Start(t, warrentest.VirtualClock())
	ch := channel(t, b)
	must(t, ch.ExchangeDeclare("dlx", "fanout", false, false, false, false, nil))
	declare(t, ch, "dlq", nil)
	must(t, ch.QueueBind("dlq", "", "dlx", false, nil))
	declare(t, ch, "waiting", amqp.Table{"x-message-ttl": int32(3600000), "x-dead-letter-exchange": "dlx"})
	publish(t, ch, "", "waiting", amqp.Publishing{Body: []byte("later"), MessageId: "ttl-1"})
	b.WaitIdle(5 * time.Second)

	start := b.Now()
	// A minute short of the hour: everything due has fired when AdvanceClock returns, and nothing is.
	if now := b.AdvanceClock(59 * time.Minute); now.Sub(start) != 59*time.Minute {
		t.Fatalf("advanced to %v from %v", now, start)
	}
	if n := count(t, ch, "dlq"); n != 0 {
		t.Fatalf("dlq has %d messages after 59 minutes", n)
	}
	if n := count(t, ch, "waiting"); n != 1 {
		t.Fatalf("waiting has %d messages after 59 minutes", n)
	}
	now := b.AdvanceClock(time.Minute)
	if now.Sub(start) != time.Hour || !b.Now().Equal(now) {
		t.Fatalf("clock at %v, started %v", now, start)
	}
	if n := count(t, ch, "waiting"); n != 0 {
		t.Fatalf("waiting still has %d messages", n)
	}
	d, ok, err := ch.Get("dlq", true)
	must(t, err)
	if !ok || string(d.Body) != "later" || d.MessageId != "ttl-1" {
		t.Fatalf("dlq: ok=%v body=%q", ok, d.Body)
	}
	death := d.Headers["x-death"].([]any)[0].(amqp.Table)
	if death["reason"] != "expired" || death["queue"] != "waiting" {
		t.Fatalf("x-death %v", death)
	}
}

func TestWaitIdleAnswersAtOnceOnAQuietBroker(t *testing.T) {
	b := warrentest.Start(t)
	t0 := time.Now()
	b.WaitIdle(5 * time.Second)
	if el := time.Since(t0); el > time.Second {
		t.Fatalf("a quiet broker took %v to be idle", el)
	}
}

func TestWaitIdleWaitsForASlowConsumer(t *testing.T) {
	b := warrentest.Start(t)
	ch := channel(t, b)
	declare(t, ch, "work", nil)
	must(t, ch.Qos(1, 0, false))
	deliveries, err := ch.Consume("work", "", false, false, false, false, nil)
	must(t, err)
	publish(t, ch, "", "work", amqp.Publishing{Body: []byte("job")})
	var d amqp.Delivery
	select {
	case d = <-deliveries:
	case <-time.After(5 * time.Second):
		t.Fatal("no delivery")
	}

	// The consumer holds the delivery: not idle, and the error says why.
	err = b.TryWaitIdle(50 * time.Millisecond)
	var notIdle *warrentest.NotIdleError
	if !errors.As(err, &notIdle) || err.Error() != "broker not idle after 50ms; pending: unacknowledged_deliveries=1" {
		t.Fatalf("err = %v", err)
	}

	acked := make(chan struct{})
	go func() {
		time.Sleep(300 * time.Millisecond)
		close(acked)
		_ = d.Ack(false)
	}()
	b.WaitIdle(10 * time.Second)
	select {
	case <-acked:
	default:
		t.Fatal("WaitIdle returned before the consumer acked")
	}
}

func TestWaitIdleFailsTheTestWithWhatIsPending(t *testing.T) {
	rec := &fatalRecorder{TB: t}
	b := warrentest.Start(rec)
	ch := channel(t, b)
	declare(t, ch, "held", nil)
	publish(t, ch, "", "held", amqp.Publishing{Body: []byte("x")})
	if _, ok, err := ch.Get("held", false); err != nil || !ok {
		t.Fatalf("get: %v %v", ok, err)
	}
	msg := fatalOf(rec, func() { b.WaitIdle(20 * time.Millisecond) })
	if msg != "broker not idle after 20ms; pending: unacknowledged_deliveries=1" {
		t.Fatalf("Fatalf(%q)", msg)
	}
}

func TestJournalListsAMessagesLifeAndWaitForFindsAnEvent(t *testing.T) {
	b := warrentest.Start(t)
	ch := channel(t, b)
	declare(t, ch, "q", nil)
	publish(t, ch, "", "q", amqp.Publishing{Body: []byte("hi"), MessageId: "m1", CorrelationId: "c1"})
	routed := b.WaitFor(warrentest.Query{MessageID: "m1", Event: "routed"}, 5*time.Second)
	if len(routed) != 1 || strings.Join(routed[0].Queues, ",") != "q" {
		t.Fatalf("routed: %+v", routed)
	}
	if _, ok, err := ch.Get("q", true); err != nil || !ok {
		t.Fatalf("get: %v %v", ok, err)
	}
	b.WaitFor(warrentest.Query{MessageID: "m1", Event: "delivered"}, 5*time.Second)

	life := b.Journal(warrentest.Query{MessageID: "m1"})
	var names []string
	for _, e := range life {
		names = append(names, e.Event)
	}
	if len(names) < 3 || strings.Join(names[:3], " ") != "published routed delivered" {
		t.Fatalf("events %v", names)
	}
	if p := life[0]; p.Exchange != "" || p.RoutingKey != "q" || p.CorrelationID != "c1" || !p.Time.After(time.Unix(0, 0)) {
		t.Fatalf("published %+v", p)
	}
	if d := life[2]; d.Queue != "q" || d.ConsumerTag != "" {
		t.Fatalf("delivered %+v", d)
	}
	if got := b.Journal(warrentest.Query{CorrelationID: "c1", Event: "published"}); len(got) != 1 || got[0].MessageID != "m1" {
		t.Fatalf("by correlation id: %+v", got)
	}
	if got := b.Journal(warrentest.Query{MessageID: "nobody"}); len(got) != 0 {
		t.Fatalf("nobody: %+v", got)
	}
}

func TestWaitForWaitsForAnEventThatComesLater(t *testing.T) {
	b := warrentest.Start(t, warrentest.VirtualClock())
	ch := channel(t, b)
	declare(t, ch, "dlq", nil)
	declare(t, ch, "waiting", amqp.Table{"x-message-ttl": int32(3600000), "x-dead-letter-exchange": "", "x-dead-letter-routing-key": "dlq"})
	publish(t, ch, "", "waiting", amqp.Publishing{Body: []byte("later"), MessageId: "m2"})
	b.WaitFor(warrentest.Query{MessageID: "m2", Event: "routed"}, 5*time.Second)
	if got := b.Journal(warrentest.Query{MessageID: "m2", Event: "dead-lettered"}); len(got) != 0 {
		t.Fatalf("dead-lettered before the hour: %+v", got)
	}

	type result struct {
		ev  []warrentest.Event
		err error
	}
	waiting := make(chan result, 1)
	go func() {
		ev, err := b.TryWaitFor(warrentest.Query{MessageID: "m2", Event: "dead-lettered"}, 10*time.Second)
		waiting <- result{ev, err}
	}()
	now := b.AdvanceClock(time.Hour)
	r := <-waiting
	if r.err != nil {
		t.Fatal(r.err)
	}
	dl := r.ev[0]
	if dl.Reason != "expired" || dl.Queue != "waiting" || strings.Join(dl.DeadLetterRoutingKeys, ",") != "dlq" || strings.Join(dl.Queues, ",") != "dlq" {
		t.Fatalf("dead-lettered %+v", dl)
	}
	if dl.Time.After(now) || dl.Time.Before(now.Add(-time.Millisecond)) {
		t.Fatalf("dead-lettered at %v, clock %v", dl.Time, now)
	}
}

func TestWaitForFailsTheTestWithWhatDidHappen(t *testing.T) {
	rec := &fatalRecorder{TB: t}
	b := warrentest.Start(rec)
	ch := channel(t, b)
	declare(t, ch, "q", nil)
	publish(t, ch, "", "q", amqp.Publishing{Body: []byte("hi"), MessageId: "m1"})
	if _, ok, err := ch.Get("q", false); err != nil || !ok {
		t.Fatalf("get: %v %v", ok, err)
	}
	b.WaitFor(warrentest.Query{MessageID: "m1", Event: "delivered"}, 5*time.Second)

	msg := fatalOf(rec, func() {
		b.WaitFor(warrentest.Query{MessageID: "m1", Event: "dead-lettered"}, 300*time.Millisecond)
	})
	want := regexp.MustCompile(`^expected event dead-lettered for message_id=m1 within 300ms; journal has: ` +
		`published \d\d:\d\d:\d\d\.\d{3} exchange="" rk=q, routed \S+ exchange="" rk=q to \[q\], delivered \S+ queue=q by basic\.get$`)
	if !want.MatchString(msg) {
		t.Fatalf("Fatalf(%q)", msg)
	}
}

func TestWaitForOnAnUnknownMessageSaysTheJournalHasNothing(t *testing.T) {
	b := warrentest.Start(t)
	_, err := b.TryWaitFor(warrentest.Query{MessageID: "ghost", Event: "published"}, 100*time.Millisecond)
	var wf *warrentest.WaitForError
	if !errors.As(err, &wf) || err.Error() != "expected event published for message_id=ghost within 100ms; journal has no events for message_id=ghost" {
		t.Fatalf("err = %v", err)
	}
}

func TestAnUnroutablePublishIsInTheJournal(t *testing.T) {
	b := warrentest.Start(t)
	ch := channel(t, b)
	must(t, ch.ExchangeDeclare("nowhere", "direct", false, false, false, false, nil))
	publish(t, ch, "nowhere", "k", amqp.Publishing{Body: []byte("lost"), MessageId: "m3"})
	ev := b.WaitFor(warrentest.Query{Exchange: "nowhere", Event: "unroutable"}, 5*time.Second)
	if ev[0].MessageID != "m3" || ev[0].RoutingKey != "k" {
		t.Fatalf("unroutable %+v", ev[0])
	}
}

// The failure texts from canned events (no broker).
func TestFailureTexts(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 12, 0, 0, 1e6, time.UTC).UnixMilli()
	var page warrentest.JournalPage
	must(t, json.Unmarshal([]byte(fmt.Sprintf(`{"enabled":true,"capacity":10,"evicted":0,"events":[],"related":[
		{"seq":1,"time":%d,"event":"published","vhost":"/","message_id":"m1","correlation_id":null,"exchange":"x","routing_key":"k","queue":null,"properties":{}},
		{"seq":2,"time":%d,"event":"routed","vhost":"/","message_id":"m1","correlation_id":null,"exchange":"x","routing_key":"k","queue":null,"queues":["q"]},
		{"seq":3,"time":%d,"event":"delivered","vhost":"/","message_id":"m1","correlation_id":null,"exchange":"x","routing_key":"k","queue":"q","consumer_tag":"ctag-1","delivery_tag":1,"redelivered":false},
		{"seq":4,"time":%d,"event":"rejected","vhost":"/","message_id":"m1","correlation_id":null,"exchange":"x","routing_key":"k","queue":"q","delivery_tag":1,"requeue":false},
		{"seq":5,"time":%d,"event":"dead-lettered","vhost":"v","message_id":"m1","correlation_id":null,"exchange":"x","routing_key":"k","queue":"q","reason":"rejected","dead_letter_exchange":"","dead_letter_routing_keys":["dlq"],"queues":["dlq"]},
		{"seq":6,"time":%d,"event":"returned","vhost":"/","message_id":"m1","correlation_id":null,"exchange":"x","routing_key":"k","queue":null,"reply_code":312,"reply_text":"NO_ROUTE"}]}`,
		t0, t0, t0+1, t0+2, t0+2, t0+2)), &page))
	err := &warrentest.WaitForError{Query: warrentest.Query{MessageID: "m1", Event: "acked"}, Timeout: 2 * time.Second, Page: page}
	want := "expected event acked for message_id=m1 within 2s; journal has: published 12:00:00.001 exchange=x rk=k, " +
		"routed 12:00:00.001 exchange=x rk=k to [q], delivered 12:00:00.002 queue=q consumer=ctag-1, " +
		`rejected 12:00:00.003 queue=q requeue=false, dead-lettered 12:00:00.003 vhost=v queue=q reason=rejected dlx="" dlrk=dlq to [dlq], ` +
		"returned 12:00:00.003 exchange=x rk=k 312 NO_ROUTE"
	if err.Error() != want {
		t.Fatalf("got  %s\nwant %s", err, want)
	}
	// The spec's single dead_letter_routing_key is read too.
	var e warrentest.Event
	must(t, json.Unmarshal([]byte(`{"event":"dead-lettered","time":0,"dead_letter_routing_key":"k2"}`), &e))
	if strings.Join(e.DeadLetterRoutingKeys, ",") != "k2" {
		t.Fatalf("%+v", e)
	}
	off := &warrentest.WaitForError{Query: warrentest.Query{Queue: "q"}, Timeout: time.Second}
	if !strings.HasPrefix(off.Error(), "expected a journal event for queue=q within 1s; the journal is disabled") {
		t.Fatal(off.Error())
	}
	idle := &warrentest.NotIdleError{Timeout: 50 * time.Millisecond, Pending: map[string]any{
		"unacknowledged_deliveries": 1, "timers_due": true,
		"deliverable_queues": []any{map[string]any{"vhost": "/", "name": "a"}, map[string]any{"vhost": "v", "name": "b"}},
	}}
	if got := idle.Error(); got != "broker not idle after 50ms; pending: deliverable_queues=[a, b (vhost v)], timers_due=true, unacknowledged_deliveries=1" {
		t.Fatal(got)
	}
}

func TestWaitForExplainsAMaxLengthDrop(t *testing.T) {
	b := warrentest.Start(t)
	ch := channel(t, b)
	declare(t, ch, "short", amqp.Table{"x-max-length": int32(1)})
	publish(t, ch, "", "short", amqp.Publishing{Body: []byte("1"), MessageId: "first"})
	publish(t, ch, "", "short", amqp.Publishing{Body: []byte("2"), MessageId: "second"})
	if ev := b.WaitFor(warrentest.Query{MessageID: "first", Event: "dropped"}, 5*time.Second); ev[0].Reason != "maxlen" {
		t.Fatalf("dropped %+v", ev[0])
	}
	_, err := b.TryWaitFor(warrentest.Query{MessageID: "first", Event: "delivered"}, 100*time.Millisecond)
	want := regexp.MustCompile(`^expected event delivered for message_id=first within 100ms; journal has: published .*, routed .* to \[short\], dropped \S+ queue=short reason=maxlen$`)
	if err == nil || !want.MatchString(err.Error()) {
		t.Fatalf("err = %v", err)
	}
}

func TestWaitForOnABrokerWhoseJournalIsOffSaysSo(t *testing.T) {
	b := warrentest.Start(t, warrentest.Args("--journal", "off"))
	_, err := b.TryWaitFor(warrentest.Query{MessageID: "m1", Event: "published"}, 50*time.Millisecond)
	if err == nil || !strings.HasPrefix(err.Error(), "expected event published for message_id=m1 within 50ms; the journal is disabled") {
		t.Fatalf("err = %v", err)
	}
}
