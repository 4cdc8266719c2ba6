package sip

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// syncBuffer is a log sink written by several goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// serveTestEdge starts an edge on loopback (testConfig) with opt, serving
// until the test ends.
func serveTestEdge(t *testing.T, opt Options) *Edge {
	t.Helper()
	return serveTestEdgeConfig(t, testConfig(), opt)
}

// serveTestEdgeConfig is serveTestEdge with cfg.
func serveTestEdgeConfig(t *testing.T, cfg Config, opt Options) *Edge {
	t.Helper()
	e, err := New(cfg, Chains{}, opt)
	if err != nil {
		t.Fatal(err)
	}
	serveEdge(t, e)
	return e
}

// serveEdge serves e until the test ends.
func serveEdge(t *testing.T, e *Edge) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = e.Serve(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done; e.Close() })
	if !waitFor(e.serving.Load) {
		t.Fatal("edge not serving")
	}
}

// TestDebugLogNeverHoldsRawBytes: with the log at debug, what sipgo logs
// about unparsable input (its error texts quote the input) reaches our log
// without the raw bytes; the events are still counted.
func TestDebugLogNeverHoldsRawBytes(t *testing.T) {
	var buf syncBuffer
	e := serveTestEdge(t, Options{Logger: slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	c, err := net.Dial("udp", e.ListenAddrs("inside")["UDP"])
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	datagrams := []string{
		// not SIP at all
		"HELLO-RAW-BYTES secret-one\r\n\r\n",
		// a header line without a colon
		"OPTIONS sip:bob@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5090;branch=z9hG4bK-x\r\n" +
			"RAWHEADERNOCOLON-SECRET-TWO\r\nContent-Length: 0\r\n\r\n",
		// parsable, but no transaction can be made of it (no Via)
		"OPTIONS sip:SECRET-THREE@127.0.0.1 SIP/2.0\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>\r\n" +
			"Call-ID: SECRET-THREE\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
	}
	for _, d := range datagrams {
		if _, err := c.Write([]byte(d)); err != nil {
			t.Fatal(err)
		}
	}
	parseErrors := func() float64 { return testutil.ToFloat64(e.m.dropped.WithLabelValues("inside", "parse_error")) }
	if !waitFor(func() bool { return parseErrors() >= 2 && countDrops(e) >= 3 }) {
		t.Fatalf("drops counted: parse_error %v, all %v; want 2 parse errors and 3 drops\nlog:\n%s", parseErrors(), countDrops(e), buf.String())
	}
	log := buf.String()
	for _, secret := range []string{"HELLO-RAW-BYTES", "secret-one", "RAWHEADERNOCOLON", "SECRET-TWO", "SECRET-THREE"} {
		if strings.Contains(log, secret) {
			t.Errorf("the log holds raw network bytes %q:\n%s", secret, log)
		}
	}
	if !strings.Contains(log, "drop_reason=parse_error") {
		t.Errorf("the log does not say what was dropped:\n%s", log)
	}
}

// countDrops is the sum of stirgate_sip_dropped_total for the inside realm
// over the reasons sipgo's log events map to.
func countDrops(e *Edge) float64 {
	var n float64
	for _, reason := range []string{"parse_error", "tx_error", "bad_request", "oversize"} {
		n += testutil.ToFloat64(e.m.dropped.WithLabelValues("inside", reason))
	}
	return n
}

// TestTCPOversizeDroppedAndClosed: a message over sip.max_message_size on
// TCP is counted as oversize (not parse_error) and its connection closed,
// as README promises.
func TestTCPOversizeDroppedAndClosed(t *testing.T) {
	e := serveTestEdge(t, Options{Logger: slog.New(slog.DiscardHandler)})
	c, err := net.Dial("tcp", e.ListenAddrs("inside")["TCP"])
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	body := strings.Repeat("v", 20<<10)
	msg := strings.Replace(testInvite, "Content-Length: 0", fmt.Sprintf("Content-Type: application/sdp\r\nContent-Length: %d", len(body)), 1) + body
	_, _ = c.Write([]byte(msg)) // may fail once the edge has closed

	// Bound the wait so a connection left open fails the test, not hangs it.
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err = c.Read(make([]byte, 4096))
	var ne net.Error
	if err == nil || (errors.As(err, &ne) && ne.Timeout()) {
		t.Fatalf("read after an oversize message: %v; want the connection closed", err)
	}
	if got := testutil.ToFloat64(e.m.dropped.WithLabelValues("inside", "oversize")); got != 1 {
		t.Errorf(`dropped{reason="oversize"} = %v, want 1`, got)
	}
	if got := testutil.ToFloat64(e.m.dropped.WithLabelValues("inside", "parse_error")); got != 0 {
		t.Errorf(`dropped{reason="parse_error"} = %v, want 0`, got)
	}
}
