package integration

import (
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

// inviteTo is a minimal INVITE to addr with rport, so the answer comes back
// to the sending socket.
func inviteTo(addr string, n int) []byte {
	return []byte(fmt.Sprintf("INVITE sip:+15559870002@%s SIP/2.0\r\n"+
		"Via: SIP/2.0/UDP 127.0.0.1:9;rport;branch=z9hG4bK-reload-%d\r\n"+
		"Max-Forwards: 70\r\nFrom: <sip:+15551230001@127.0.0.1>;tag=r%d\r\nTo: <sip:+15559870002@%s>\r\n"+
		"Call-ID: reload-%d@test\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n", addr, n, n, addr, n))
}

// reloadGauge reads stirgate_config_last_reload_successful.
func reloadGauge(t *testing.T, p *proxy) float64 {
	t.Helper()
	v, ok := p.Metrics(t).Sum("stirgate_config_last_reload_successful", nil)
	if !ok {
		t.Fatal("no stirgate_config_last_reload_successful metric")
	}
	return v
}

// waitLog waits (bounded) until stirgate's log contains s.
func waitLog(t *testing.T, p *proxy, s string) bool {
	t.Helper()
	for i := 0; i < 100; i++ {
		if strings.Contains(p.Log(), s) {
			return true
		}
		time.Sleep(50 * time.Millisecond)
	}
	return false
}

// TestReloadAllOrNothing edits the config file while stirgate serves and
// sends SIGHUP: a broken file changes nothing (gauge 0, old ACL still in
// force), a good one takes effect at once, and a listener change is
// reported as needing a restart.
func TestReloadAllOrNothing(t *testing.T) {
	cfg := newProxyConfig(t)
	cfg.DrainTimeout = 2 * time.Second
	p := startProxy(t, cfg)
	path := p.cmd.Args[len(p.cmd.Args)-1]
	rewrite := func(yaml string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(yaml), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := p.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
	}
	inside := cfg.InsideAddr()

	// 1. A broken file: unknown key and a bad CIDR. The old generation serves.
	broken := strings.Replace(cfg.YAML(), `trusted: ["127.0.0.0/8"]`, `trusted: ["127.0.0.0/99"]`, 1)
	broken = strings.Replace(broken, "  format: text\n", "  format: text\n  colour: red\n", 1)
	rewrite(broken)
	if !waitLog(t, p, "config reload failed") {
		t.Fatal("no log line for the failed reload")
	}
	log := p.Log()
	for _, want := range []string{"log.colour: unknown key", "trusted[0]:"} {
		if !strings.Contains(log, want) {
			t.Errorf("reload error should name %q; log:\n%s", want, tail(log, 10))
		}
	}
	if g := reloadGauge(t, p); g != 0 {
		t.Errorf("reload gauge = %v after a broken file, want 0", g)
	}
	if got := sendUDP(t, inside, optionsTo(inside, "UDP", 1), 2*time.Second); !strings.HasPrefix(got, "SIP/2.0 200 ") {
		t.Fatalf("OPTIONS after a failed reload: %q, want 200", got)
	}

	// 2. A good file that stops trusting loopback: new INVITEs get 403.
	untrusting := strings.Replace(cfg.YAML(), `trusted: ["127.0.0.0/8"]`, `trusted: ["192.0.2.0/24"]`, 1)
	rewrite(untrusting)
	if !waitLog(t, p, "config reloaded") {
		t.Fatal("no log line for the successful reload")
	}
	if g := reloadGauge(t, p); g != 1 {
		t.Errorf("reload gauge = %v after a good file, want 1", g)
	}
	if got := sendUDP(t, inside, inviteTo(inside, 2), 2*time.Second); !strings.HasPrefix(got, "SIP/2.0 403 ") {
		t.Errorf("INVITE after the ACL reload: %q, want 403", got)
	}

	// 3. A listener change cannot be applied without a restart: say so.
	moved := strings.Replace(cfg.YAML(), fmt.Sprintf("addr: %q}", inside), fmt.Sprintf("addr: %q}", hostPort(freePort(t))), 1)
	rewrite(moved)
	if !waitLog(t, p, "sip.realms.inside.listen") {
		t.Errorf("no log line naming the listener change that needs a restart; log:\n%s", tail(p.Log(), 10))
	}
	if got := sendUDP(t, inside, optionsTo(inside, "UDP", 3), 2*time.Second); !strings.HasPrefix(got, "SIP/2.0 200 ") {
		t.Errorf("OPTIONS on the old listener after a listener change: %q, want 200", got)
	}
}
