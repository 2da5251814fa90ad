// Package warrentest gives a Go test a throwaway Warren broker — an AMQP 0-9-1 broker that behaves like
// RabbitMQ and starts in milliseconds — and Warren's test endpoints: a virtual clock, "wait until idle"
// and the message journal.
//
//	func TestOrders(t *testing.T) {
//		b := warrentest.Start(t, warrentest.VirtualClock()) // stopped by t.Cleanup
//		conn, _ := amqp.Dial(b.URL)
//		// … publish message "m1" to a queue with a one-hour TTL and a dead-letter exchange …
//		b.AdvanceClock(time.Hour)
//		b.WaitFor(warrentest.Query{MessageID: "m1", Event: "dead-lettered"}, 2*time.Second)
//	}
//
// Start runs `warren --port 0 --bind 127.0.0.1 --ephemeral [args…]`, the binary from $WARREN_BIN or else
// `warren` on PATH, and waits for its LISTENING lines. Only the standard library is used.
package warrentest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const (
	startupTimeout = 10 * time.Second
	// The management and Prometheus LISTENING lines follow the AMQP one at once; this bounds the wait
	// only when a config file turned those listeners off.
	httpLinesTimeout = 2 * time.Second
	stopGrace        = 5 * time.Second
	logLinesKept     = 200
	// How many of the related journal events a WaitFor failure lists (the newest).
	relatedShown = 20
)

// Option configures Start.
type Option func(*options)

type options struct {
	bin       string
	args      []string
	env       []string
	stopGrace time.Duration
}

// Args passes extra arguments to the broker, e.g. Args("--config", "warren.toml").
func Args(args ...string) Option { return func(o *options) { o.args = append(o.args, args...) } }

// VirtualClock starts the broker with `--clock virtual`: broker time moves only by AdvanceClock.
func VirtualClock() Option { return Args("--clock", "virtual") }

// Bin sets the warren executable (default: $WARREN_BIN, else `warren` on PATH).
func Bin(path string) Option { return func(o *options) { o.bin = path } }

// Env sets the broker's environment (default: the test process's).
func Env(env []string) Option { return func(o *options) { o.env = env } }

// StopTimeout sets how long Stop waits after SIGTERM before it kills the broker (default 5 s).
func StopTimeout(d time.Duration) Option { return func(o *options) { o.stopGrace = d } }

// Broker is a running broker. Its methods that take no error return fail the test with t.Fatalf; the
// Try… variants return the error instead.
type Broker struct {
	// URL is the AMQP URL, amqp://guest:guest@127.0.0.1:PORT/%2F.
	URL string
	// ManagementURL is http://127.0.0.1:PORT (RabbitMQ's management API under /api, user guest/guest);
	// empty if the broker has no management listener.
	ManagementURL string
	// PrometheusURL is http://127.0.0.1:PORT (scrape /metrics); empty if there is none.
	PrometheusURL string
	Port          int

	t         testing.TB
	cmd       *exec.Cmd
	stopGrace time.Duration
	done      chan struct{} // closed when the process has exited
	mu        sync.Mutex
	log       []string
	client    *http.Client
}

// FindBinary returns the warren executable: explicit, else $WARREN_BIN, else `warren` on PATH.
func FindBinary(explicit string) (string, error) {
	for _, c := range []string{explicit, os.Getenv("WARREN_BIN")} {
		if c != "" {
			if st, err := os.Stat(c); err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
				return "", fmt.Errorf("warren binary %q is not an executable file", c)
			}
			return c, nil
		}
	}
	p, err := exec.LookPath("warren")
	if err != nil {
		return "", errors.New("cannot find the warren binary: set WARREN_BIN, pass warrentest.Bin, or put warren on PATH")
	}
	return p, nil
}

// Start starts a broker for this test and registers its Stop with t.Cleanup. It fails the test if the
// broker does not start.
func Start(t testing.TB, opts ...Option) *Broker {
	t.Helper()
	b, err := TryStart(t, opts...)
	if err != nil {
		t.Fatalf("%v", err)
	}
	return b
}

var listening = regexp.MustCompile(`^LISTENING (?:(\w+) )?port=(\d+)`)

// TryStart is Start returning its error. The broker is still stopped by t.Cleanup.
func TryStart(t testing.TB, opts ...Option) (*Broker, error) {
	var o options
	for _, f := range opts {
		f(&o)
	}
	exe, err := FindBinary(o.bin)
	if err != nil {
		return nil, err
	}
	if o.stopGrace <= 0 {
		o.stopGrace = stopGrace
	}
	b := &Broker{t: t, done: make(chan struct{}), client: &http.Client{}, stopGrace: o.stopGrace}
	b.cmd = exec.Command(exe, append([]string{"--port", "0", "--bind", "127.0.0.1", "--ephemeral", "--journal", "on"}, o.args...)...)
	b.cmd.Env = o.env
	stdout, err := b.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	stderr, err := b.cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := b.cmd.Start(); err != nil {
		return nil, fmt.Errorf("cannot run the warren binary %q: %v", exe, err)
	}
	t.Cleanup(b.Stop)

	type port struct {
		what string
		n    int
	}
	ports := make(chan port, 8)
	var readers sync.WaitGroup
	readers.Add(2)
	go func() {
		defer readers.Done()
		b.readLines(stderr, nil)
	}()
	go func() {
		defer readers.Done()
		b.readLines(stdout, func(line string) {
			if m := listening.FindStringSubmatch(line); m != nil {
				n, _ := strconv.Atoi(m[2])
				what := m[1]
				if what == "" {
					what = "amqp"
				}
				select {
				case ports <- port{what, n}:
				default:
				}
			}
		})
	}()
	go func() {
		readers.Wait() // the output is read to its end before Wait, so exit messages are complete
		_ = b.cmd.Wait()
		close(b.done)
	}()

	got := map[string]int{}
	deadline := time.After(startupTimeout)
	var httpLines <-chan time.Time
wait:
	for {
		select {
		case p := <-ports:
			got[p.what] = p.n
			if p.what == "amqp" {
				httpLines = time.After(httpLinesTimeout)
			}
			if p.what == "prometheus" {
				break wait
			}
		case <-httpLines:
			break wait
		case <-b.done:
			return nil, fmt.Errorf("warren exited (%v) before listening: %s", b.cmd.ProcessState, b.tail(10))
		case <-deadline:
			b.Stop()
			return nil, fmt.Errorf("warren did not print LISTENING within %v: %s", startupTimeout, b.tail(10))
		}
	}
	b.Port = got["amqp"]
	b.URL = fmt.Sprintf("amqp://guest:guest@127.0.0.1:%d/%%2F", b.Port)
	if p, ok := got["management"]; ok {
		b.ManagementURL = fmt.Sprintf("http://127.0.0.1:%d", p)
	}
	if p, ok := got["prometheus"]; ok {
		b.PrometheusURL = fmt.Sprintf("http://127.0.0.1:%d", p)
	}
	return b, nil
}

func (b *Broker) readLines(r io.Reader, onLine func(string)) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		line := sc.Text()
		b.mu.Lock()
		b.log = append(b.log, line)
		if len(b.log) > logLinesKept {
			b.log = b.log[1:]
		}
		b.mu.Unlock()
		if onLine != nil {
			onLine(line)
		}
	}
	_, _ = io.Copy(io.Discard, r)
}

func (b *Broker) tail(n int) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	from := len(b.log) - n
	if from < 0 {
		from = 0
	}
	return strings.Join(b.log[from:], " | ")
}

// Log returns the broker's last output lines.
func (b *Broker) Log() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.log...)
}

// PID is the broker's process id.
func (b *Broker) PID() int { return b.cmd.Process.Pid }

// Done is closed once the broker process has exited.
func (b *Broker) Done() <-chan struct{} { return b.done }

// Stop sends SIGTERM, then SIGKILL after 5 s (StopTimeout), and waits for the process to exit. Start registers it
// with t.Cleanup; calling it earlier is fine (it is idempotent).
func (b *Broker) Stop() {
	select {
	case <-b.done:
		return
	default:
	}
	_ = b.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-b.done:
	case <-time.After(b.stopGrace):
		_ = b.cmd.Process.Kill()
		<-b.done
	}
}

// API sends a request to the management API (path under /api/, e.g. "queues/%2F/q") and returns the
// status and body. Statuses not in ok (default 200, 201, 204) are errors.
func (b *Broker) API(ctx context.Context, method, path string, body any, ok ...int) (int, []byte, error) {
	if b.ManagementURL == "" {
		return 0, nil, errors.New("this broker has no management listener")
	}
	if len(ok) == 0 {
		ok = []int{200, 201, 204}
	}
	var rd io.Reader
	if body != nil {
		data, err := json.Marshal(body)
		if err != nil {
			return 0, nil, err
		}
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(ctx, method, b.ManagementURL+"/api/"+path, rd)
	if err != nil {
		return 0, nil, err
	}
	req.SetBasicAuth("guest", "guest")
	req.Header.Set("Content-Type", "application/json")
	res, err := b.client.Do(req)
	if err != nil {
		return 0, nil, fmt.Errorf("%s /api/%s: %v", method, path, err)
	}
	defer res.Body.Close()
	data, err := io.ReadAll(res.Body)
	if err != nil {
		return 0, nil, fmt.Errorf("%s /api/%s: %v", method, path, err)
	}
	for _, s := range ok {
		if res.StatusCode == s {
			return res.StatusCode, data, nil
		}
	}
	if res.StatusCode == 404 && strings.HasPrefix(path, "warren/") {
		return res.StatusCode, data, fmt.Errorf("%s /api/%s: 404 — this warren binary has no such test endpoint (too old?)", method, path)
	}
	return res.StatusCode, data, fmt.Errorf("%s /api/%s: %d %s", method, path, res.StatusCode, data)
}

func (b *Broker) call(timeout time.Duration, method, path string, body any, out any, ok ...int) (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	status, data, err := b.API(ctx, method, path, body, ok...)
	if err != nil {
		return status, err
	}
	if out != nil && len(data) > 0 {
		if err := json.Unmarshal(data, out); err != nil {
			return status, fmt.Errorf("%s /api/%s: bad JSON %q: %v", method, path, data, err)
		}
	}
	return status, nil
}

func (b *Broker) fatal(err error) {
	b.t.Helper()
	b.t.Fatalf("%v", err)
}

// Clock is the broker clock's state.
type Clock struct {
	Mode string `json:"mode"` // "virtual" or "real"
	Now  int64  `json:"now"`  // broker time, Unix ms
}

// TryClock reads the broker clock.
func (b *Broker) TryClock() (Clock, error) {
	var c Clock
	_, err := b.call(30*time.Second, "GET", "warren/clock", nil, &c)
	return c, err
}

// Now returns the broker time (virtual or real).
func (b *Broker) Now() time.Time {
	b.t.Helper()
	c, err := b.TryClock()
	if err != nil {
		b.fatal(err)
	}
	return time.UnixMilli(c.Now)
}

// TryAdvanceClock is AdvanceClock returning its error.
func (b *Broker) TryAdvanceClock(d time.Duration) (time.Time, error) {
	if d < 0 {
		return time.Time{}, fmt.Errorf("cannot advance the clock by a negative duration %v", d)
	}
	var c struct {
		Clock
		Error  string `json:"error"`
		Reason string `json:"reason"`
	}
	status, err := b.call(5*time.Minute, "POST", "warren/clock/advance", map[string]int64{"ms": d.Milliseconds()}, &c, 200, 400)
	if err != nil {
		return time.Time{}, err
	}
	if status == 400 {
		return time.Time{}, fmt.Errorf("AdvanceClock: %s", c.Reason)
	}
	return time.UnixMilli(c.Now), nil
}

// AdvanceClock moves a virtual clock (start with VirtualClock()) forward by d, firing every TTL expiry,
// dead-lettering, queue expiry and consumer timeout that falls due, in time order, before it returns.
// It returns the new broker time. On a real clock it fails the test.
func (b *Broker) AdvanceClock(d time.Duration) time.Time {
	b.t.Helper()
	now, err := b.TryAdvanceClock(d)
	if err != nil {
		b.fatal(err)
	}
	return now
}

// NotIdleError is what TryWaitIdle returns when the broker stayed busy.
type NotIdleError struct {
	Timeout time.Duration
	// Pending is the broker's account: deliverable_queues, unacknowledged_deliveries,
	// unconfirmed_publishes, unsent_bytes, timers_due.
	Pending map[string]any
}

func (e *NotIdleError) Error() string {
	keys := make([]string, 0, len(e.Pending))
	for k := range e.Pending {
		keys = append(keys, k)
	}
	// deliverable_queues first, as the broker sends it; the rest by name.
	sort.Slice(keys, func(i, j int) bool {
		if (keys[i] == "deliverable_queues") != (keys[j] == "deliverable_queues") {
			return keys[i] == "deliverable_queues"
		}
		return keys[i] < keys[j]
	})
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		v := e.Pending[k]
		if qs, ok := v.([]any); ok && k == "deliverable_queues" {
			names := make([]string, 0, len(qs))
			for _, q := range qs {
				m, _ := q.(map[string]any)
				name, _ := m["name"].(string)
				if vh, _ := m["vhost"].(string); vh != "" && vh != "/" {
					name += " (vhost " + vh + ")"
				}
				names = append(names, name)
			}
			parts = append(parts, fmt.Sprintf("%s=[%s]", k, strings.Join(names, ", ")))
			continue
		}
		switch v.(type) {
		case map[string]any, []any:
			j, _ := json.Marshal(v)
			parts = append(parts, fmt.Sprintf("%s=%s", k, j))
		default:
			parts = append(parts, fmt.Sprintf("%s=%v", k, v))
		}
	}
	what := strings.Join(parts, ", ")
	if what == "" {
		what = "(nothing reported)"
	}
	return fmt.Sprintf("broker not idle after %v; pending: %s", e.Timeout, what)
}

// TryWaitIdle is WaitIdle returning its error (a *NotIdleError when the broker stayed busy).
func (b *Broker) TryWaitIdle(timeout time.Duration) error {
	var r struct {
		Idle    bool           `json:"idle"`
		Pending map[string]any `json:"pending"`
	}
	status, err := b.call(timeout+30*time.Second, "GET", fmt.Sprintf("warren/idle?timeout_ms=%d", timeout.Milliseconds()), nil, &r, 200, 408)
	if err != nil {
		return err
	}
	if status == 408 || !r.Idle {
		return &NotIdleError{Timeout: timeout, Pending: r.Pending}
	}
	return nil
}

// WaitIdle returns once nothing is in flight — no ready message a consumer could take, no unacked
// delivery, no pending confirm, no unsent bytes, no due timer — and fails the test with what is still
// pending if that takes longer than timeout.
func (b *Broker) WaitIdle(timeout time.Duration) {
	b.t.Helper()
	if err := b.TryWaitIdle(timeout); err != nil {
		b.fatal(err)
	}
}

// Query filters the journal; every set field must match. Since and Until are broker times (inclusive).
type Query struct {
	Vhost         string
	MessageID     string
	CorrelationID string
	Queue         string
	Exchange      string
	// Event is one of published, routed, unroutable, returned, confirmed, delivered, acked, nacked,
	// rejected, requeued, expired, dead-lettered, dropped.
	Event        string
	Since, Until time.Time
	Limit        int // the newest N matching (the broker's default is 1000)
}

func (q Query) values() url.Values {
	v := url.Values{}
	for _, kv := range q.pairs(true) {
		v.Set(kv[0], kv[1])
	}
	if q.Limit > 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	return v
}

// pairs lists the set filters in a fixed order, as query parameter names and values.
func (q Query) pairs(withEvent bool) [][2]string {
	var out [][2]string
	add := func(k, v string) {
		if v != "" {
			out = append(out, [2]string{k, v})
		}
	}
	add("vhost", q.Vhost)
	add("message_id", q.MessageID)
	add("correlation_id", q.CorrelationID)
	add("queue", q.Queue)
	add("exchange", q.Exchange)
	if withEvent {
		add("event", q.Event)
	}
	if !q.Since.IsZero() {
		add("since", strconv.FormatInt(q.Since.UnixMilli(), 10))
	}
	if !q.Until.IsZero() {
		add("until", strconv.FormatInt(q.Until.UnixMilli(), 10))
	}
	return out
}

// String describes the filters other than Event, e.g. "message_id=m1 queue=q".
func (q Query) String() string {
	var parts []string
	for _, kv := range q.pairs(false) {
		parts = append(parts, kv[0]+"="+kv[1])
	}
	return strings.Join(parts, " ")
}

// Event is one journal entry. Fields the broker sent as null are empty; Raw has every field as sent.
type Event struct {
	Seq           uint64
	Time          time.Time // broker time
	Event         string
	Vhost         string
	MessageID     string
	CorrelationID string
	Exchange      string
	RoutingKey    string
	Queue         string
	// routed
	Queues []string
	// delivered
	ConsumerTag string // empty for basic.get
	DeliveryTag uint64
	Redelivered bool
	// nacked, rejected
	Requeue bool
	// dead-lettered (Queues: where it went), dropped
	Reason                string
	DeadLetterExchange    string
	DeadLetterRoutingKeys []string

	Raw map[string]any
}

// UnmarshalJSON reads the broker's event object. It is lenient: a field of an unexpected type is left
// empty (and is still in Raw), so a newer broker's extras never break a test.
func (e *Event) UnmarshalJSON(data []byte) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var raw map[string]any
	if err := dec.Decode(&raw); err != nil {
		return err
	}
	str := func(k string) string {
		v, _ := raw[k].(string)
		return v
	}
	strs := func(k string) []string { // a list of names, or one name
		switch v := raw[k].(type) {
		case string:
			return []string{v}
		case []any:
			out := []string{}
			for _, x := range v {
				if name, ok := x.(string); ok {
					out = append(out, name)
				}
			}
			return out
		}
		return nil
	}
	num := func(k string) uint64 {
		if n, ok := raw[k].(json.Number); ok {
			u, _ := strconv.ParseUint(n.String(), 10, 64)
			return u
		}
		return 0
	}
	*e = Event{
		Seq:                num("seq"),
		Time:               time.UnixMilli(int64(num("time"))),
		Event:              str("event"),
		Vhost:              str("vhost"),
		MessageID:          str("message_id"),
		CorrelationID:      str("correlation_id"),
		Exchange:           str("exchange"),
		RoutingKey:         str("routing_key"),
		Queue:              str("queue"),
		ConsumerTag:        str("consumer_tag"),
		DeliveryTag:        num("delivery_tag"),
		Reason:             str("reason"),
		DeadLetterExchange: str("dead_letter_exchange"),
		Queues:             strs("queues"),
		Raw:                raw,
	}
	e.Redelivered, _ = raw["redelivered"].(bool)
	e.Requeue, _ = raw["requeue"].(bool)
	if e.DeadLetterRoutingKeys = strs("dead_letter_routing_keys"); e.DeadLetterRoutingKeys == nil {
		e.DeadLetterRoutingKeys = strs("dead_letter_routing_key")
	}
	return nil
}

// has tells whether the broker sent field k with a non-null value.
func (e Event) has(k string) bool {
	v, ok := e.Raw[k]
	return ok && v != nil
}

func quoted(s string) string {
	if s == "" {
		return `""`
	}
	return s
}

// Format renders the event as one short line, e.g. "published 12:00:00.001 exchange=x rk=k"; fields the
// query already names (message id, vhost) are left out.
func (e Event) Format(q Query) string {
	parts := []string{e.Event, e.Time.UTC().Format("15:04:05.000")}
	if e.Vhost != "" && e.Vhost != "/" && q.Vhost == "" {
		parts = append(parts, "vhost="+e.Vhost)
	}
	if e.has("message_id") && q.MessageID == "" {
		parts = append(parts, "message_id="+e.MessageID)
	}
	switch e.Event {
	case "published", "unroutable", "returned", "routed":
		if e.has("exchange") {
			parts = append(parts, "exchange="+quoted(e.Exchange))
		}
		if e.has("routing_key") {
			parts = append(parts, "rk="+quoted(e.RoutingKey))
		}
	default:
		if e.has("queue") {
			parts = append(parts, "queue="+e.Queue)
		}
	}
	if e.Event == "delivered" {
		if e.ConsumerTag == "" {
			parts = append(parts, "by basic.get")
		} else {
			parts = append(parts, "consumer="+e.ConsumerTag)
		}
		if e.Redelivered {
			parts = append(parts, "redelivered")
		}
	}
	if ack, ok := e.Raw["ack"].(bool); ok && !ack && e.Event == "confirmed" {
		parts = append(parts, "nack")
	}
	if e.has("reply_code") {
		text, _ := e.Raw["reply_text"].(string)
		parts = append(parts, strings.TrimSpace(fmt.Sprintf("%v %s", e.Raw["reply_code"], text)))
	}
	if _, ok := e.Raw["requeue"].(bool); ok {
		parts = append(parts, fmt.Sprintf("requeue=%t", e.Requeue))
	}
	if e.has("reason") {
		parts = append(parts, "reason="+e.Reason)
	}
	if e.has("dead_letter_exchange") {
		parts = append(parts, "dlx="+quoted(e.DeadLetterExchange))
	}
	if e.DeadLetterRoutingKeys != nil {
		keys := make([]string, len(e.DeadLetterRoutingKeys))
		for i, k := range e.DeadLetterRoutingKeys {
			keys[i] = quoted(k)
		}
		parts = append(parts, "dlrk="+strings.Join(keys, ","))
	}
	if e.has("queues") {
		parts = append(parts, "to ["+strings.Join(e.Queues, ", ")+"]")
	}
	if alt, ok := e.Raw["alternate"].([]any); ok && len(alt) > 0 {
		names := make([]string, 0, len(alt))
		for _, a := range alt {
			names = append(names, fmt.Sprint(a))
		}
		parts = append(parts, "via alternate ["+strings.Join(names, ", ")+"]")
	}
	return strings.Join(parts, " ")
}

// JournalPage is the broker's answer to a journal query.
type JournalPage struct {
	Enabled  bool    `json:"enabled"`
	Capacity int     `json:"capacity"`
	Evicted  uint64  `json:"evicted"`
	Events   []Event `json:"events"`
	// Related is set on a timed-out wait: the events matching every filter but Event.
	Related []Event `json:"related"`
}

// TryJournal is Journal returning its error.
func (b *Broker) TryJournal(q Query) ([]Event, error) {
	var page JournalPage
	if _, err := b.call(30*time.Second, "GET", "warren/journal?"+q.values().Encode(), nil, &page); err != nil {
		return nil, err
	}
	return page.Events, nil
}

// Journal returns the journal events matching q, oldest first.
func (b *Broker) Journal(q Query) []Event {
	b.t.Helper()
	ev, err := b.TryJournal(q)
	if err != nil {
		b.fatal(err)
	}
	return ev
}

// WaitForError is what TryWaitFor returns when no matching event came in time.
type WaitForError struct {
	Query   Query
	Timeout time.Duration
	Page    JournalPage // Page.Related: what the journal holds about the same message
}

func (e *WaitForError) Error() string {
	var sb strings.Builder
	if e.Query.Event != "" {
		sb.WriteString("expected event " + e.Query.Event)
	} else {
		sb.WriteString("expected a journal event")
	}
	about := e.Query.String()
	if about != "" {
		sb.WriteString(" for " + about)
	}
	fmt.Fprintf(&sb, " within %v; ", e.Timeout)
	if !e.Page.Enabled {
		sb.WriteString(`the journal is disabled (the helper starts it with --journal on; or PUT /api/warren/journal {"enabled": true})`)
		return sb.String()
	}
	rel := e.Page.Related
	if len(rel) == 0 {
		sb.WriteString("journal has no events")
		if about != "" {
			sb.WriteString(" for " + about)
		}
	} else {
		sb.WriteString("journal has: ")
		shown := rel
		if len(shown) > relatedShown {
			shown = shown[len(shown)-relatedShown:]
			fmt.Fprintf(&sb, "(%d earlier) ", len(rel)-len(shown))
		}
		for i, ev := range shown {
			if i > 0 {
				sb.WriteString(", ")
			}
			sb.WriteString(ev.Format(e.Query))
		}
	}
	if e.Page.Evicted > 0 {
		fmt.Fprintf(&sb, " (the journal is full and dropped its %d oldest events)", e.Page.Evicted)
	}
	return sb.String()
}

// TryWaitFor is WaitFor returning its error (a *WaitForError when no matching event came in time).
func (b *Broker) TryWaitFor(q Query, timeout time.Duration) ([]Event, error) {
	v := q.values()
	v.Set("wait_ms", strconv.FormatInt(timeout.Milliseconds(), 10))
	var page JournalPage
	status, err := b.call(timeout+30*time.Second, "GET", "warren/journal?"+v.Encode(), nil, &page, 200, 408)
	if err != nil {
		return nil, err
	}
	if status == 408 || len(page.Events) == 0 {
		return nil, &WaitForError{Query: q, Timeout: timeout, Page: page}
	}
	return page.Events, nil
}

// WaitFor returns the journal events matching q as soon as there is one; if none comes within timeout it
// fails the test with what the journal does hold about the same message, e.g. "expected event
// dead-lettered for message_id=m1 within 2s; journal has: published 12:00:00.001 exchange=x rk=k, routed
// 12:00:00.001 exchange=x rk=k to [q], delivered 12:00:00.002 queue=q consumer=ctag-1".
func (b *Broker) WaitFor(q Query, timeout time.Duration) []Event {
	b.t.Helper()
	ev, err := b.TryWaitFor(q, timeout)
	if err != nil {
		b.fatal(err)
	}
	return ev
}

// ClearJournal empties the journal.
func (b *Broker) ClearJournal() {
	b.t.Helper()
	if _, err := b.call(30*time.Second, "DELETE", "warren/journal", nil, nil); err != nil {
		b.fatal(err)
	}
}
