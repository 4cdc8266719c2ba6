package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stirgate/stirgate/policy/store/redistest"
)

// stateYAML points a node at a shared Redis.
func stateYAML(addr string) string {
	return fmt.Sprintf("state:\n  backend: redis\n  redis:\n    addrs: [%q]\n    timeout: 50ms\n", addr)
}

// twoNodes starts two stirgate processes that share one Redis and one
// policy file, each with its own ports and PBX.
func twoNodes(t *testing.T, pol string, extra func(cfg *proxyConfig) string) (a, b proxyConfig, pa, pb *proxy) {
	t.Helper()
	redis := redistest.Start(t)
	polFile := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(polFile, []byte(pol), 0o644); err != nil {
		t.Fatal(err)
	}
	node := func() (proxyConfig, *proxy) {
		cfg := newProxyConfig(t)
		cfg.DrainTimeout = 2 * time.Second
		cfg.Extra = fmt.Sprintf("policy:\n  files: [%q]\n", polFile) + stateYAML(redis.Addr)
		if extra != nil {
			cfg.Extra += extra(&cfg)
		}
		return cfg, startProxy(t, cfg)
	}
	a, pa = node()
	b, pb = node()
	return a, b, pa, pb
}

// TestSharedRateLimitAcrossNodes: a per-caller limit of 10 calls a minute
// holds across two nodes sharing Redis: 6 calls through A and 6 through B
// from one caller, exactly 2 rejected (the last 2, through B).
func TestSharedRateLimitAcrossNodes(t *testing.T) {
	requireSipp(t)
	a, b, _, pb := twoNodes(t, "rules:\n  - name: per-caller\n    type: rate\n    match: {realm: outside}\n    key: caller\n    limit: 10\n    window: 1m\n    action: {type: reject}\n", nil)
	for _, n := range []struct {
		name string
		cfg  proxyConfig
		ok   int
	}{{"A", a, 6}, {"B", b, 4}} {
		uas := startSipp(t, sippRun{Name: "uas-" + n.name, Scenario: "uas.xml", Port: n.cfg.PBXPort, Calls: n.ok, Timeout: 30 * time.Second})
		res := runSipp(t, sippRun{Name: "uac-" + n.name, Scenario: "uac.xml", Remote: n.cfg.OutsideAddr(), Calls: 6, Rate: 20, Timeout: 30 * time.Second})
		if res.Successful != n.ok || res.Failed != 6-n.ok {
			t.Fatalf("node %s: %d calls through, %d refused; want %d through, %d refused", n.name, res.Successful, res.Failed, n.ok, 6-n.ok)
		}
		uas.Wait(t).require(t, n.ok)
	}
	if refused := waitRecordsWith(t, pb, "status=503", 2); len(refused) != 2 || !strings.Contains(refused[0], "rule=per-caller") {
		t.Fatalf("call records of B's 503s: %q, want 2 by rule per-caller", refused)
	}
}

// TestSharedReplayAcrossNodes: a PASSporT accepted by node A is a replay on
// node B.
func TestSharedReplayAcrossNodes(t *testing.T) {
	pki := testPKI(t, "http://127.0.0.1/")
	chain, err := os.ReadFile(filepath.Join(pki, "sp.pem"))
	if err != nil {
		t.Fatal(err)
	}
	srv := startX5UServers(t, chain)
	a, b, _, _ := twoNodes(t, "rules: []\n", func(*proxyConfig) string {
		return verifyYAML(filepath.Join(pki, "root.pem"), srv.ports)
	})
	id, err := signerFor(t, pki, srv.good.URL+"/sp.pem").Sign(passport("15551230001", time.Now()))
	if err != nil {
		t.Fatal(err)
	}
	requireForwarded(t, startSink(t, a.PBXPort), "127.0.0.1", a.OutsideAddr(), signedInvite(a.OutsideAddr(), 1, id), "the PASSporT's first use, through A")
	sinkB := startSink(t, b.PBXPort)
	if got := sendUDP(t, b.OutsideAddr(), signedInvite(b.OutsideAddr(), 2, id), answerWait); !strings.HasPrefix(got, "SIP/2.0 438 ") {
		t.Fatalf("the same PASSporT through B: %q, want 438 (replay)", got)
	}
	if msgs := sinkB.Messages(); len(msgs) != 0 {
		t.Fatalf("B forwarded the replayed call:\n%s", msgs[0])
	}
}

// TestSharedOneRingAcrossNodes: a one-ring caller flagged through A is
// refused through B.
func TestSharedOneRingAcrossNodes(t *testing.T) {
	requireSipp(t)
	a, b, pa, _ := twoNodes(t, "rules:\n"+wangiriRule, nil)
	for i := 0; i < 3; i++ {
		callee := fmt.Sprintf("+1555987010%d", i)
		uas := startSipp(t, sippRun{Name: fmt.Sprintf("ring%d-uas", i), Scenario: "uas_cancel.xml", Port: a.PBXPort, Calls: 1, Timeout: 20 * time.Second})
		runSipp(t, sippRun{Name: fmt.Sprintf("ring%d-uac", i), Scenario: "uac_cancel.xml", Remote: a.OutsideAddr(), Service: callee, Calls: 1, Rate: 1, Timeout: 20 * time.Second}).require(t, 1)
		uas.Wait(t).require(t, 1)
	}
	if !waitLogCount(t, pa, "one-ring caller flagged", 1) {
		t.Fatalf("caller not flagged through A:\n%s", tail(pa.Log(), 10))
	}
	if got := sendUDP(t, b.OutsideAddr(), dncInvite(b.OutsideAddr(), "+15559870200", 1), answerWait); !strings.HasPrefix(got, "SIP/2.0 608 ") {
		t.Fatalf("the flagged caller through B: %q, want 608", got)
	}
	requireForwarded(t, startSink(t, b.PBXPort), "127.0.0.1", b.OutsideAddr(), inviteFrom(b.OutsideAddr(), "+15551230002", "+15559870200", 2), "another caller through B")
}

// TestSharedComplaintsAcrossNodes: 607 complaints answered through A count
// on B.
func TestSharedComplaintsAcrossNodes(t *testing.T) {
	requireSipp(t)
	a, b, pa, _ := twoNodes(t, `rules:
  - name: trunk-reputation
    type: reputation
    subject: source
    limit: 2
    window: 1h
    action: {type: reject, code: 608}
`, nil)
	uas := startSipp(t, sippRun{Name: "unwanted-uas", Scenario: "uas_unwanted.xml", Port: a.PBXPort, Calls: 2, Timeout: 20 * time.Second})
	runSipp(t, sippRun{Name: "unwanted-uac", Scenario: "uac_unwanted.xml", Remote: a.OutsideAddr(), Calls: 2, Rate: 10, Timeout: 20 * time.Second}).require(t, 2)
	uas.Wait(t).require(t, 2)
	if !waitLogCount(t, pa, "complaint recorded", 2) {
		t.Fatalf("complaints not recorded through A:\n%s", tail(pa.Log(), 6))
	}
	if got := sendUDP(t, b.OutsideAddr(), dncInvite(b.OutsideAddr(), "+15559870002", 1), answerWait); !strings.HasPrefix(got, "SIP/2.0 608 ") {
		t.Fatalf("a call from the complained-about trunk through B: %q, want 608", got)
	}
}

// TestSharedConcurrencyAcrossNodes: a concurrent-call slot taken through A
// counts on B, and the BYE through A frees it for B.
func TestSharedConcurrencyAcrossNodes(t *testing.T) {
	requireSipp(t)
	a, b, pa, _ := twoNodes(t, "rules:\n  - name: trunk-capacity\n    type: concurrent\n    match: {realm: outside}\n    key: source\n    limit: 1\n    action: {type: reject, code: 503}\n", nil)
	uas := startSipp(t, sippRun{Name: "held-uas", Scenario: "uas.xml", Port: a.PBXPort, Calls: 1, Timeout: 30 * time.Second})
	uac := startSipp(t, sippRun{Name: "held-uac", Scenario: "uac.xml", Remote: a.OutsideAddr(), Calls: 1, Rate: 1, PauseMS: 3000, Timeout: 30 * time.Second})
	if !waitLogCount(t, pa, "status=200", 1) {
		t.Fatalf("the held call through A was not answered:\n%s", tail(pa.Log(), 5))
	}
	if got := sendUDP(t, b.OutsideAddr(), dncInvite(b.OutsideAddr(), "+15559870002", 1), answerWait); !strings.HasPrefix(got, "SIP/2.0 503 ") {
		t.Fatalf("a second call from the trunk through B while A holds one: %q, want 503", got)
	}
	uac.Wait(t).require(t, 1) // its BYE went through A
	uas.Wait(t).require(t, 1)
	requireForwarded(t, startSink(t, b.PBXPort), "127.0.0.1", b.OutsideAddr(), dncInvite(b.OutsideAddr(), "+15559870002", 2), "a call through B after the BYE through A")
}
