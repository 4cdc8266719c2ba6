package integration

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/stirgate/stirgate/attest"
	// Aliased: passport is this package's helper that builds claims.
	pp "github.com/stirgate/stirgate/attest/passport"
	"github.com/stirgate/stirgate/certs"
)

// Timing of the verification tests, and why each bound is what it is.
// verifyYAML configures stirgate with verifyBudget (verify.budget: the most
// verification may take) and x5uTimeout (verify.x5u.timeout). The hanging
// certificate server holds each request for hangFor. The tests wait at most
// answerWait for an answer: far above the budget, far below hangFor, so an
// answer within it can only come from stirgate's own limit, never from the
// hanging server letting go.
const (
	verifyBudget = 1500 * time.Millisecond
	x5uTimeout   = 700 * time.Millisecond
	hangFor      = 30 * time.Second
	answerWait   = 10 * time.Second
)

// Why the hanging server's handler returned (hang.ends).
const (
	hangClientGone = "client closed the request"
	hangReleased   = "released at the end of the test"
	hangTimedOut   = "held for hangFor"
)

// x5uServers are the certificate servers a verification test points at:
// the good one and the ones that misbehave. hangEnds says, per request to
// the hanging server, why its handler returned.
type x5uServers struct {
	good, hang, huge, redirect *httptest.Server
	ports                      []int
	hangEnds                   chan string
}

func startX5UServers(t *testing.T, chainPEM []byte) *x5uServers {
	t.Helper()
	release := make(chan struct{})
	s := &x5uServers{hangEnds: make(chan string, 64)}
	s.good = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/pem-certificate-chain")
		w.Header().Set("Cache-Control", "max-age=3600")
		_, _ = w.Write(chainPEM)
	}))
	s.hang = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		why := hangTimedOut
		select { // answers nothing until the client gives up or the test ends (bounded)
		case <-release:
			why = hangReleased
		case <-r.Context().Done():
			why = hangClientGone
		case <-time.After(hangFor):
		}
		select {
		case s.hangEnds <- why:
		default: // nobody reads: only the verify test does
		}
	}))
	s.huge = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		chunk := []byte(strings.Repeat("A", 64<<10))
		for i := 0; i < 160; i++ { // 10 MiB
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	}))
	s.redirect = httptest.NewServer(http.RedirectHandler(s.good.URL+"/sp.pem", http.StatusFound))
	t.Cleanup(func() {
		close(release)
		for _, srv := range []*httptest.Server{s.good, s.hang, s.huge, s.redirect} {
			srv.Close()
		}
	})
	for _, srv := range []*httptest.Server{s.good, s.hang, s.huge, s.redirect} {
		_, p, _ := net.SplitHostPort(srv.Listener.Addr().String())
		n, _ := strconv.Atoi(p)
		s.ports = append(s.ports, n)
	}
	return s
}

// verifyYAML turns verification on for the outside realm, trusting root
// and allowing the loopback x5u servers.
func verifyYAML(root string, ports []int) string {
	ps := make([]string, len(ports))
	for i, p := range ports {
		ps[i] = strconv.Itoa(p)
	}
	return fmt.Sprintf(`verify:
  enabled: true
  trust_roots: [%q]
  budget: %s
  x5u:
    allow_http: true
    ports: [%s]
    allow_addresses: ["127.0.0.0/8"]
    timeout: %s
`, root, verifyBudget, strings.Join(ps, ", "), x5uTimeout)
}

// signerFor loads the SP key of a test PKI.
func signerFor(t *testing.T, pki, x5u string) *attest.Signer {
	t.Helper()
	s, err := certs.LoadSigner(filepath.Join(pki, "sp.key"), filepath.Join(pki, "sp.pem"), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	sg, err := attest.NewSigner(s.Key, x5u)
	if err != nil {
		t.Fatal(err)
	}
	return sg
}

// passport is A-attested claims from orig to the SIPp callee, signed at iat.
func passport(orig string, iat time.Time) pp.Claims {
	return pp.Claims{Attest: pp.LevelA, Orig: orig, Dest: []string{"15559870002"}, IAT: iat.Unix(), OrigID: uuid.NewString()}
}

// signedInvite is an INVITE from the trunk to addr with the given Identity
// header values, rport set so the answer comes back to the sending socket.
func signedInvite(addr string, n int, ids ...string) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "INVITE sip:+15559870002@%s SIP/2.0\r\n", addr)
	fmt.Fprintf(&b, "Via: SIP/2.0/UDP 127.0.0.1:9;rport;branch=z9hG4bK-verify-%d-%d\r\n", n, time.Now().UnixNano())
	fmt.Fprintf(&b, "Max-Forwards: 70\r\nFrom: <sip:+15551230001@127.0.0.1>;tag=v%d\r\nTo: <sip:+15559870002@%s>\r\n", n, addr)
	fmt.Fprintf(&b, "Call-ID: verify-%d-%d@test\r\nCSeq: 1 INVITE\r\n", n, time.Now().UnixNano())
	for _, id := range ids {
		fmt.Fprintf(&b, "Identity: %s\r\n", id)
	}
	b.WriteString("Content-Length: 0\r\n\r\n")
	return []byte(b.String())
}

// TestVerifiedCallsThroughOutside: a signed call from the trunk reaches the
// PBX-side callee with verstat=TN-Validation-Passed (SIPp on both ends).
func TestVerifiedCallsThroughOutside(t *testing.T) {
	requireSipp(t)
	cfg := newProxyConfig(t)
	pki := testPKI(t, "http://127.0.0.1/")
	chain, err := os.ReadFile(filepath.Join(pki, "sp.pem"))
	if err != nil {
		t.Fatal(err)
	}
	srv := startX5UServers(t, chain)
	cfg.Extra = verifyYAML(filepath.Join(pki, "root.pem"), srv.ports)
	startProxy(t, cfg)

	x5u := srv.good.URL + "/sp.pem"
	id, err := signerFor(t, pki, x5u).Sign(passport("15551230001", time.Now()))
	if err != nil {
		t.Fatal(err)
	}
	uas := startSipp(t, sippRun{Name: "uas", Scenario: "uas.xml", Port: cfg.PBXPort, Calls: 1, Timeout: 30 * time.Second})
	uac := runSipp(t, sippRun{Name: "uac", Scenario: "../interop/uac_identity.xml", Remote: cfg.OutsideAddr(), Calls: 1, Rate: 1,
		Timeout: 30 * time.Second, Extra: []string{"-key", "identity", id}})
	uac.require(t, 1)
	res := uas.Wait(t)
	res.require(t, 1)
	msgs, err := os.ReadFile(filepath.Join(res.Dir, "messages.log"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(msgs), "verstat=TN-Validation-Passed") {
		t.Fatalf("the PBX side did not see verstat=TN-Validation-Passed:\n%s", tail(string(msgs), 40))
	}
}

// TestVerificationFailuresNeverForwarded sends INVITEs from the trunk whose
// Identity fails each check: each gets its RFC 8224 code with a STIR Reason
// (RFC 9410) and the PBX sees nothing. A valid header reaches the PBX once;
// replayed, it is 438. A hanging x5u is answered by stirgate's own limits:
// 436 within answerWait, with the fetch abandoned by stirgate while the
// server still held it.
func TestVerificationFailuresNeverForwarded(t *testing.T) {
	cfg := newProxyConfig(t)
	pki := testPKI(t, "http://127.0.0.1/")
	other := testPKI(t, "http://127.0.0.1/")
	chain, err := os.ReadFile(filepath.Join(pki, "sp.pem"))
	if err != nil {
		t.Fatal(err)
	}
	srv := startX5UServers(t, chain)
	otherChain, err := os.ReadFile(filepath.Join(other, "sp.pem"))
	if err != nil {
		t.Fatal(err)
	}
	otherSrv := startX5UServers(t, otherChain)
	closed := freePort(t) // nothing listens there: unreachable x5u
	cfg.Extra = verifyYAML(filepath.Join(pki, "root.pem"), append(append(srv.ports, otherSrv.ports[0]), closed))
	// The PBX (a sink) never answers: the one forwarded call ends with
	// stirgate's own 408 when timer C (invite_timeout) fires.
	cfg.InviteTimeout = 2 * time.Second
	cfg.DrainTimeout = 2 * time.Second
	sink := startSink(t, cfg.PBXPort)
	startProxy(t, cfg)

	good := srv.good.URL + "/sp.pem"
	sign := func(dir, x5u string, p pp.Claims) string {
		id, err := signerFor(t, dir, x5u).Sign(p)
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	valid := sign(pki, good, passport("15551230001", time.Now()))
	jws, params, _ := strings.Cut(valid, ";")
	tampered := jws[:len(jws)-4] + "AAAA;" + params

	tests := []struct {
		name string
		id   string
		want string
	}{
		{"tampered signature", tampered, "SIP/2.0 438 "},
		{"stale iat", sign(pki, good, passport("15551230001", time.Now().Add(-5*time.Minute))), "SIP/2.0 403 "},
		{"orig mismatch", sign(pki, good, passport("15551239999", time.Now())), "SIP/2.0 438 "},
		{"signed with another key", sign(other, good, passport("15551230001", time.Now())), "SIP/2.0 438 "},
		{"untrusted root", sign(other, otherSrv.good.URL+"/sp.pem", passport("15551230001", time.Now())), "SIP/2.0 437 "},
		{"x5u unreachable", sign(pki, fmt.Sprintf("http://127.0.0.1:%d/sp.pem", closed), passport("15551230001", time.Now())), "SIP/2.0 436 "},
		{"x5u hangs", sign(pki, srv.hang.URL+"/sp.pem", passport("15551230001", time.Now())), "SIP/2.0 436 "},
		{"x5u 10 MB", sign(pki, srv.huge.URL+"/sp.pem", passport("15551230001", time.Now())), "SIP/2.0 436 "},
		{"x5u redirects", sign(pki, srv.redirect.URL+"/sp.pem", passport("15551230001", time.Now())), "SIP/2.0 436 "},
		{"x5u on a denied port", sign(pki, "http://127.0.0.1:1/sp.pem", passport("15551230001", time.Now())), "SIP/2.0 436 "},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// answerWait: see its comment. For the hanging x5u, an answer
			// within it is stirgate's limit: the server holds for hangFor.
			got := sendUDP(t, cfg.OutsideAddr(), signedInvite(cfg.OutsideAddr(), i, tt.id), answerWait)
			if !strings.HasPrefix(got, tt.want) {
				t.Fatalf("got %q, want %q", got, tt.want)
			}
		})
	}
	t.Run("x5u hangs: stirgate gave up the fetch", func(t *testing.T) {
		// Event order: the 436 above came while the hanging server still
		// held the request, and the request ended because stirgate closed
		// it (its x5u timeout), not because the server let go.
		select {
		case why := <-srv.hangEnds:
			if why != hangClientGone {
				t.Fatalf("the hanging x5u request ended: %s; want: %s", why, hangClientGone)
			}
		case <-time.After(answerWait):
			t.Fatalf("the hanging x5u request was still open %s after the 436: stirgate left its fetch running", answerWait)
		}
	})
	t.Run("valid header, then replayed", func(t *testing.T) {
		first := signedInvite(cfg.OutsideAddr(), 100, valid)
		// Verified and forwarded: the PBX gets the call, never answers,
		// and stirgate ends it with 408 at timer C.
		got := sendUDP(t, cfg.OutsideAddr(), first, cfg.InviteTimeout+answerWait)
		if got != "SIP/2.0 408 Request Timeout" {
			t.Fatalf("first use of the header: %q, want stirgate's 408 after forwarding it to the silent PBX", got)
		}
		if m := sink.waitCallID(callIDOf(t, first)); !strings.Contains(m, ") INVITE ") {
			t.Fatalf("the PBX never received the verified call %s", callIDOf(t, first))
		}
		second := sendUDP(t, cfg.OutsideAddr(), signedInvite(cfg.OutsideAddr(), 101, valid), answerWait)
		if !strings.HasPrefix(second, "SIP/2.0 438 ") {
			t.Fatalf("replayed header: %q, want 438", second)
		}
	})
	// Only the first use of the valid header may have reached the PBX.
	for _, m := range sink.Messages() {
		if strings.Contains(m, ") INVITE ") && !strings.Contains(m, "Call-ID: verify-100-") {
			t.Fatalf("the PBX received a call that failed verification:\n%s", m)
		}
	}
}
