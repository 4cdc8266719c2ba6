package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/stirgate/stirgate/attest"
	"github.com/stirgate/stirgate/attest/passport"
	"github.com/stirgate/stirgate/certs"
	"github.com/stirgate/stirgate/configs"
	"github.com/stirgate/stirgate/policy/store"
	"github.com/stirgate/stirgate/sip"
	"github.com/stirgate/stirgate/verify"
)

// benchPolicy is a realistic policy for the whole-pipeline benchmarks: a
// 100,000-number DNC list, rate limits per source and per caller, call
// bombing, caller-ID hygiene and a block list, on both realms.
const benchPolicy = `lists:
  - name: dnc
    file: dnc.txt
  - name: spammers
    numbers: ["+1 900*"]
rules:
  - name: dnc
    type: dnc
    lists: [dnc]
    action: {type: reject}
  - name: flood-per-source
    type: rate
    key: source
    limit: 1000000
    window: 10s
    action: {type: reject}
  - name: busy-caller
    type: rate
    key: caller
    limit: 30
    window: 1m
    action: {type: tag, header: X-Stirgate-Rate, value: high}
  - name: call-bombing
    type: bombing
    match: {realm: outside}
    action: {type: reject}
  - name: hygiene
    type: hygiene
    match: {realm: outside}
    checks: [anonymous, same_number, invalid]
    action: {type: reject}
  - name: spammers
    type: list
    number: caller
    lists: [spammers]
    action: {type: reject, code: 608}
`

// pipelineFixture is a generation built by build() from a real config:
// attest (inside) and verify (outside, certificate served on loopback and
// cached after the first call), plus benchPolicy.
type pipelineFixture struct {
	gen    *generation
	signer *attest.Signer
	x5u    string
}

func newPipelineFixture(b *testing.B) *pipelineFixture {
	b.Helper()
	dir := b.TempDir()
	pki := filepath.Join(dir, "pki")
	if err := certs.InitPKI(certs.InitOptions{Dir: pki}); err != nil {
		b.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/pem-certificate-chain")
		http.ServeFile(w, r, filepath.Join(pki, "sp.pem"))
	}), ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	b.Cleanup(func() { srv.Close() })
	port := ln.Addr().(*net.TCPAddr).Port
	x5u := fmt.Sprintf("http://127.0.0.1:%d/sp.pem", port)

	var dnc strings.Builder
	for i := 0; i < 100_000; i++ {
		fmt.Fprintf(&dnc, "+1212%07d\n", i)
	}
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			b.Fatal(err)
		}
		return p
	}
	write("dnc.txt", dnc.String())
	pol := write("policy.yaml", benchPolicy)
	cfgPath := write("stirgate.yaml", fmt.Sprintf(`mode: production
sip:
  realms:
    inside: {listen: [{transport: udp, addr: "127.0.0.1:0"}], next_hop: "sip:127.0.0.1:5090", trusted: ["127.0.0.0/8"], udp: {oversize: reject}}
    outside: {listen: [{transport: udp, addr: "127.0.0.1:0"}], next_hop: "sip:127.0.0.1:5080", trusted: ["127.0.0.0/8"], udp: {oversize: reject}}
attest:
  enabled: true
  key: %q
  cert: %q
  x5u: %q
  customers:
    - name: pbx
      sources: ["127.0.0.0/8"]
      numbers: ["+1202*"]
verify:
  enabled: true
  trust_roots: [%q]
  x5u: {allow_http: true, ports: [%d], allow_addresses: ["127.0.0.0/8"]}
policy:
  files: [%q]
`, filepath.Join(pki, "sp.key"), filepath.Join(pki, "sp.pem"), x5u, filepath.Join(pki, "root.pem"), port, pol))
	cfg, err := configs.Load(cfgPath)
	if err != nil {
		b.Fatal(err)
	}
	sh, err := newShared(slog.New(slog.NewTextHandler(io.Discard, nil)), prometheus.NewRegistry(), cfg.Verify.X5U, store.NewMemory(), verify.NewMemoryReplay())
	if err != nil {
		b.Fatal(err)
	}
	gen, err := build(cfg, sh)
	if err != nil {
		b.Fatal(err)
	}
	s, err := certs.LoadSigner(filepath.Join(pki, "sp.key"), filepath.Join(pki, "sp.pem"), time.Now())
	if err != nil {
		b.Fatal(err)
	}
	signer, err := attest.NewSigner(s.Key, x5u)
	if err != nil {
		b.Fatal(err)
	}
	return &pipelineFixture{gen: gen, signer: signer, x5u: x5u}
}

// invite is an initial INVITE from caller to callee, with identity as its
// Identity header when not empty.
func invite(i int, caller, callee, identity string) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "INVITE sip:%s@127.0.0.1:5070 SIP/2.0\r\n", callee)
	fmt.Fprintf(&b, "Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-bench-%d;rport\r\n", i)
	fmt.Fprintf(&b, "From: <sip:%s@127.0.0.1:5061>;tag=b%d\r\nTo: <sip:%s@127.0.0.1:5070>\r\n", caller, i, callee)
	fmt.Fprintf(&b, "Call-ID: bench-%d@127.0.0.1\r\nCSeq: 1 INVITE\r\nContact: <sip:%s@127.0.0.1:5061>\r\nMax-Forwards: 70\r\n", i, caller)
	if identity != "" {
		fmt.Fprintf(&b, "Identity: %s\r\n", identity)
	}
	fmt.Fprintf(&b, "Content-Type: application/sdp\r\nContent-Length: %d\r\n\r\n%s", len(benchSDP), benchSDP)
	return []byte(b.String())
}

const benchSDP = "v=0\r\no=a 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n"

// benchCaller and benchCallee are valid NANP numbers (libphonenumber),
// different for each call; callers are the attest customer's.
func benchCaller(i int) string { return fmt.Sprintf("1202%07d", 2_000_000+(i+1)%1_000_000) }
func benchCallee(i int) string { return fmt.Sprintf("1646%07d", 3_000_000+(i+1)%1_000_000) }

var benchSrc = netip.MustParseAddrPort("127.0.0.1:5061")

// BenchmarkPipelineInside is one outbound call through the whole pipeline
// without sockets: parse, classify, policy (benchPolicy), attest (signs),
// and the INVITE that would be forwarded. Callers and callees differ per
// call, as under load.
//
//	go test ./cmd/stirgate -run '^$' -bench Pipeline -benchmem
func BenchmarkPipelineInside(b *testing.B) {
	f := newPipelineFixture(b)
	raws := make([][]byte, b.N)
	for i := range raws {
		raws[i] = invite(i, "+"+benchCaller(i), "+"+benchCallee(i), "")
	}
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		call, fwd, err := sip.DryRun(ctx, f.gen.chains.Inside, "inside", benchSrc, raws[i], nil)
		if err != nil || !strings.Contains(string(fwd), "\r\nIdentity: ") || call.Attest != "A" {
			b.Fatalf("call %d: %v (call %+v)", i, err, call)
		}
	}
}

// BenchmarkPipelineOutside is one inbound call through the whole pipeline
// without sockets: parse, policy, verify (a fresh PASSporT per call, the
// certificate cached) and the INVITE with verstat that would be forwarded.
func BenchmarkPipelineOutside(b *testing.B) {
	f := newPipelineFixture(b)
	now := time.Now()
	raws := make([][]byte, b.N+1) // the last one warms the certificate cache
	for i := range raws {
		caller, callee := benchCaller(i), benchCallee(i)
		id, err := f.signer.Sign(passport.Claims{Attest: passport.LevelA, Orig: caller, Dest: []string{callee}, IAT: now.Unix(), OrigID: fmt.Sprintf("00000000-0000-4000-8000-%012d", i)})
		if err != nil {
			b.Fatal(err)
		}
		raws[i] = invite(i, "+"+caller, "+"+callee, id)
	}
	ctx := context.Background()
	// The first call fetches and checks the certificate: not measured.
	if call, _, err := sip.DryRun(ctx, f.gen.chains.Outside, "outside", benchSrc, raws[b.N], nil); err != nil || call.Verstat != sip.VerstatPassed {
		b.Fatalf("warm-up: %v", err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		call, fwd, err := sip.DryRun(ctx, f.gen.chains.Outside, "outside", benchSrc, raws[i], nil)
		if err != nil || call.Verstat != sip.VerstatPassed || !strings.Contains(string(fwd), "verstat=TN-Validation-Passed") {
			b.Fatalf("call %d: %v (call %+v)", i, err, call)
		}
	}
}
