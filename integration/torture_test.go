package integration

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// tortureMessage is one RFC 4475 message with the catalog's expectation.
type tortureMessage struct {
	name, class, expect string
	data                []byte
}

func loadTorture(t *testing.T) []tortureMessage {
	t.Helper()
	dir := filepath.Join("testdata", "rfc4475")
	cat, err := os.ReadFile(filepath.Join(dir, "catalog.tsv"))
	if err != nil {
		t.Fatal(err)
	}
	var msgs []tortureMessage
	sc := bufio.NewScanner(bytes.NewReader(cat))
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") || line == "" {
			continue
		}
		f := strings.Split(line, "\t")
		if len(f) < 4 {
			t.Fatalf("catalog line %q", line)
		}
		data, err := os.ReadFile(filepath.Join(dir, f[0]+".dat"))
		if err != nil {
			t.Fatal(err)
		}
		msgs = append(msgs, tortureMessage{name: f[0], class: f[2], expect: f[3], data: data})
	}
	if len(msgs) != 49 {
		t.Fatalf("catalog lists %d messages, want the 49 of RFC 4475", len(msgs))
	}
	return msgs
}

// statusLine reads the first response status line from b ("" if none).
func statusLine(b []byte) string {
	line, _, _ := strings.Cut(string(b), "\r\n")
	if !strings.HasPrefix(line, "SIP/2.0 ") {
		return ""
	}
	return line
}

// withRport adds ;rport to the first Via of a torture message so that the
// answer to a UDP request comes back to the sending socket (RFC 3581); without
// it a response goes to the Via's port, which the message invented. The rest
// of the message stays byte for byte.
func withRport(msg []byte) []byte {
	lines := bytes.SplitAfter(msg, []byte("\n"))
	for i, l := range lines {
		low := bytes.ToLower(l)
		if !bytes.HasPrefix(low, []byte("via:")) && !bytes.HasPrefix(low, []byte("v:")) {
			continue
		}
		if j := bytes.Index(low, []byte(";branch=")); j >= 0 {
			lines[i] = append(append(append([]byte{}, l[:j]...), ";rport"...), l[j:]...)
		}
		break
	}
	return bytes.Join(lines, nil)
}

// sendUDP sends msg from a fresh socket on 127.0.0.1 and returns the
// first response status line seen within wait ("" if none: dropped).
func sendUDP(t *testing.T, addr string, msg []byte, wait time.Duration) string {
	t.Helper()
	return sendUDPFrom(t, loopback, addr, msg, wait)
}

// sendUDPFrom is sendUDP from a chosen loopback source address. A 100
// Trying is skipped; the first other status line is returned.
func sendUDPFrom(t *testing.T, local, addr string, msg []byte, wait time.Duration) string {
	t.Helper()
	got, err := exchangeUDP(local, addr, msg, wait)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// exchangeUDP is sendUDPFrom for goroutines: a socket error is returned,
// not a t.Fatal (which must run on the test's goroutine).
func exchangeUDP(local, addr string, msg []byte, wait time.Duration) (string, error) {
	laddr, err := net.ResolveUDPAddr("udp", net.JoinHostPort(local, "0"))
	if err != nil {
		return "", fmt.Errorf("udp to %s: %w", addr, err)
	}
	raddr, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return "", fmt.Errorf("udp to %s: %w", addr, err)
	}
	c, err := net.DialUDP("udp", laddr, raddr)
	if err != nil {
		return "", fmt.Errorf("udp to %s: %w", addr, err)
	}
	defer c.Close()
	if _, err := c.Write(msg); err != nil {
		return "", fmt.Errorf("udp to %s: %w", addr, err)
	}
	buf := make([]byte, 65535)
	deadline := time.Now().Add(wait)
	for i := 0; i < 10 && time.Now().Before(deadline); i++ {
		_ = c.SetReadDeadline(deadline)
		n, err := c.Read(buf)
		if err != nil {
			return "", nil // nothing within wait: the message was dropped
		}
		if s := statusLine(buf[:n]); s != "" && !strings.HasPrefix(s, "SIP/2.0 100 ") {
			return s, nil
		}
	}
	return "", nil
}

// exchangeTCP writes msg on a fresh connection and returns the first final
// status line within wait ("" if none, or the connection was closed). A
// failed connect is an error (returned, not t.Fatal: it runs in
// goroutines); a write refused by stirgate (it closed the connection) is an
// answer, returned as "write: ...".
func exchangeTCP(addr string, msg []byte, wait time.Duration) (string, error) {
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return "", fmt.Errorf("tcp to %s: %w", addr, err)
	}
	defer c.Close()
	if _, err := c.Write(msg); err != nil {
		return "write: " + err.Error(), nil
	}
	_ = c.SetReadDeadline(time.Now().Add(wait))
	r := bufio.NewReader(c)
	for i := 0; i < 10; i++ {
		line, err := r.ReadString('\n')
		if err != nil {
			return "", nil
		}
		line = strings.TrimRight(line, "\r\n")
		if strings.HasPrefix(line, "SIP/2.0 ") && !strings.HasPrefix(line, "SIP/2.0 100 ") {
			return line, nil
		}
	}
	return "", nil
}

func optionsTo(addr, transport string, n int) []byte {
	return []byte(fmt.Sprintf("OPTIONS sip:%s SIP/2.0\r\n"+
		"Via: SIP/2.0/%s 127.0.0.1:9;rport;branch=z9hG4bK-alive-%d\r\n"+
		"Max-Forwards: 70\r\nFrom: <sip:probe@127.0.0.1>;tag=p%d\r\nTo: <sip:%s>\r\n"+
		"Call-ID: alive-%d@test\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n", addr, transport, n, n, addr, n))
}

// TestTortureMessagesDoNotHurt sends every RFC 4475 message to every
// listener over UDP and over TCP. stirgate must survive all of them and still
// answer OPTIONS; the replies are logged against the RFC's expectation, and
// the ones stirgate decides itself are asserted.
func TestTortureMessagesDoNotHurt(t *testing.T) {
	msgs := loadTorture(t)
	// What stirgate itself must answer (the rest is sipgo's parser or the
	// next hop deciding, and informative).
	mustAnswer := map[string]string{
		"zeromf": "SIP/2.0 483 ",
		"bext01": "SIP/2.0 420 ",
		"unkscm": "SIP/2.0 416 ",
		"insuf":  "SIP/2.0 400 ",
	}
	transports := []struct {
		name string
		send func(addr string, msg []byte, wait time.Duration) (string, error)
		prep func([]byte) []byte
	}{
		{"UDP", func(addr string, msg []byte, wait time.Duration) (string, error) {
			return exchangeUDP(loopback, addr, msg, wait)
		}, withRport},
		{"TCP", exchangeTCP, func(b []byte) []byte { return b }},
	}
	for _, tp := range transports {
		t.Run(tp.name, func(t *testing.T) {
			// One stirgate per transport: the same message over UDP and TCP
			// would match the same server transaction.
			cfg := newProxyConfig(t)
			cfg.DrainTimeout = 2 * time.Second // forwarded torture INVITEs have no callee
			cfg.LogLevel = "warn"
			p := startProxy(t, cfg)
			addrs := []string{cfg.InsideAddr(), cfg.OutsideAddr()}

			// The senders run concurrently; they only record what happened.
			// Failures are reported below, on the test's goroutine.
			type reply struct {
				status string
				err    error
			}
			replies := make(map[string]reply)
			var mu sync.Mutex
			var wg sync.WaitGroup
			for _, addr := range addrs {
				for _, m := range msgs {
					wg.Add(1)
					go func() {
						defer wg.Done()
						got, err := tp.send(addr, tp.prep(m.data), 500*time.Millisecond)
						mu.Lock()
						replies[addr+" "+m.name] = reply{got, err}
						mu.Unlock()
					}()
				}
			}
			wg.Wait()

			var table strings.Builder
			for _, addr := range addrs {
				for _, m := range msgs {
					r, ok := replies[addr+" "+m.name]
					if !ok || r.err != nil {
						t.Errorf("%s to %s over %s: not sent: %v", m.name, addr, tp.name, r.err)
						continue
					}
					got := r.status
					fmt.Fprintf(&table, "%-21s %-10s %-11s %-36q rfc: %s\n", addr, m.name, m.class, got, m.expect)
					if want, ok := mustAnswer[m.name]; ok && !strings.HasPrefix(got, want) {
						t.Errorf("%s to %s over %s: got %q, want %q", m.name, addr, tp.name, got, want)
					}
				}
			}
			t.Logf("replies over %s to the RFC 4475 messages (\"\" = none within 500 ms):\n%s", tp.name, table.String())

			if _, exited := p.Wait(0); exited {
				t.Fatalf("stirgate exited during the torture run")
			}
			for i, addr := range addrs {
				probe := optionsTo(addr, tp.name, i)
				got, err := tp.send(addr, probe, 2*time.Second)
				if err != nil || !strings.HasPrefix(got, "SIP/2.0 200 ") {
					t.Errorf("OPTIONS over %s to %s after the torture run: %q (%v), want 200", tp.name, addr, got, err)
				}
			}
			if strings.Contains(p.Log(), "panic") {
				t.Errorf("stirgate log mentions a panic")
			}
		})
	}
}
