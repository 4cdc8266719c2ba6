package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/stirgate/stirgate/certs"
	"github.com/stirgate/stirgate/configs"
	"github.com/stirgate/stirgate/policy/store"
	"github.com/stirgate/stirgate/sip"
	"github.com/stirgate/stirgate/verify"
)

// reloadFixture is serve's wiring (shared state, edge, repository,
// reloader) on loopback port 0, with a config file the test rewrites.
type reloadFixture struct {
	t       *testing.T
	dir     string
	cfgPath string
	r       *reloader
	x5u     string       // a chain an HTTP server on loopback publishes
	log     syncBuffer   // what the reloader logged
	hits    atomic.Int64 // GETs of x5u
}

// reloadConfig is what the tests change between reloads.
type reloadConfig struct {
	pki       string        // directory of sp.key / sp.pem
	x5uPath   string        // path of attest.x5u (published by the repository)
	timeout   time.Duration // verify.x5u.timeout: a change of fetch policy
	logLevel  string
	inviteTTL string // sip.invite_timeout
	noSigning bool   // attest.enabled: false
	state     string // a state: section ("" none: memory)
}

func newReloadFixture(t *testing.T, c reloadConfig) *reloadFixture {
	t.Helper()
	f := &reloadFixture{t: t, dir: t.TempDir()}
	f.cfgPath = filepath.Join(f.dir, "stirgate.yaml")
	for _, name := range []string{"a", "b"} {
		if err := certs.InitPKI(certs.InitOptions{Dir: filepath.Join(f.dir, name)}); err != nil {
			t.Fatal(err)
		}
	}
	chain, err := os.ReadFile(filepath.Join(f.dir, "a", "sp.pem"))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		f.hits.Add(1)
		w.Header().Set("Content-Type", certs.ContentTypePEMChain)
		w.Header().Set("Cache-Control", "max-age=3600")
		_, _ = w.Write(chain)
	}))
	t.Cleanup(srv.Close)
	f.x5u = srv.URL + "/sp.pem"

	f.write(c)
	cfg, err := loadConfig(f.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(&f.log, nil))
	reg := prometheus.NewRegistry()
	sh, err := newShared(log, reg, cfg.Verify.X5U, store.NewMemory(), verify.NewMemoryReplay())
	if err != nil {
		t.Fatal(err)
	}
	gen, err := build(cfg, sh)
	if err != nil {
		t.Fatal(err)
	}
	edge, err := sip.New(cfg.SIP, gen.chains, sip.Options{Logger: log, Registry: reg})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(edge.Close)
	repo := &x5uRepository{}
	gen.install(sh, repo)
	var level slog.LevelVar
	f.r = &reloader{log: log, level: &level, path: f.cfgPath, cfg: cfg, watched: cfg, edge: edge, repo: repo, sh: sh, m: newReloadMetrics(reg)}
	return f
}

func (f *reloadFixture) write(c reloadConfig) {
	f.t.Helper()
	u, _ := url.Parse(f.x5u)
	if c.logLevel == "" {
		c.logLevel = "info"
	}
	if c.inviteTTL == "" {
		c.inviteTTL = "180s"
	}
	yaml := fmt.Sprintf(`log: {level: %s}
admin: {listen: "127.0.0.1:0"}
sip:
  invite_timeout: %s
  realms:
    inside:
      listen: [{transport: udp, addr: "127.0.0.1:0"}]
      next_hop: "sip:127.0.0.1:5090"
      trusted: ["127.0.0.0/8"]
      udp: {oversize: reject}
    outside:
      listen: [{transport: udp, addr: "127.0.0.1:0"}]
      next_hop: "sip:127.0.0.1:5100"
      trusted: ["127.0.0.0/8"]
      udp: {oversize: reject}
attest:
  enabled: %t
  key: %s/sp.key
  cert: %s/sp.pem
  x5u: http://127.0.0.1:9060%s
  customers: [{name: lab, sources: ["127.0.0.0/8"], numbers: ["1202555*"]}]
verify:
  enabled: true
  trust_roots: [a/root.pem]
  x5u: {allow_http: true, ports: [%s], allow_addresses: ["127.0.0.0/8"], timeout: %s}
`, c.logLevel, c.inviteTTL, !c.noSigning, c.pki, c.pki, c.x5uPath, u.Port(), c.timeout) + c.state
	if err := os.WriteFile(f.cfgPath, []byte(yaml), 0o644); err != nil {
		f.t.Fatal(err)
	}
}

// fetch fetches the test x5u through the process-wide fetcher.
func (f *reloadFixture) fetch() {
	f.t.Helper()
	if _, err := f.r.sh.fetcher.Fetch(context.Background(), f.x5u); err != nil {
		f.t.Fatal(err)
	}
}

// published is the chain the repository serves at path.
func (f *reloadFixture) published(path string) []byte {
	rec := httptest.NewRecorder()
	f.r.repo.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	return rec.Body.Bytes()
}

func chainOf(t *testing.T, pki string) []byte {
	t.Helper()
	s, err := certs.LoadSigner(filepath.Join(pki, "sp.key"), filepath.Join(pki, "sp.pem"), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return s.ChainPEM
}

// TestRefusedReloadChangesNothing: a reload that fails at its last step
// (here the rotation check after the whole generation was built: a new key
// under the old x5u URL) leaves the x5u fetch policy, the certificate
// cache, the published chain, the log level and the success timestamp as
// they were. A good reload (the new key under a new x5u URL) then changes
// all of them, so the test would see a leak.
func TestRefusedReloadChangesNothing(t *testing.T) {
	base := reloadConfig{pki: "a", x5uPath: "/certs/sp.pem", timeout: 2 * time.Second}
	f := newReloadFixture(t, base)
	pkiA, pkiB := filepath.Join(f.dir, "a"), filepath.Join(f.dir, "b")
	f.fetch()
	f.fetch()
	if n := f.hits.Load(); n != 1 {
		t.Fatalf("x5u GETs after two fetches = %d, want 1 (cached)", n)
	}
	policy := f.r.sh.fetcher.Policy()
	okTS := testutil.ToFloat64(f.r.m.ts)
	if !bytes.Equal(f.published("/certs/sp.pem"), chainOf(t, pkiA)) {
		t.Fatal("the repository does not publish the first chain")
	}
	time.Sleep(10 * time.Millisecond) // a success now would move the timestamp

	// Everything changes, the key too, but not the x5u: refused at the
	// last step.
	changed := reloadConfig{pki: "b", x5uPath: "/certs/sp.pem", timeout: 3 * time.Second, logLevel: "debug", inviteTTL: "90s"}
	f.write(changed)
	if err := f.r.reload(); err == nil || !strings.Contains(err.Error(), "new x5u URL") {
		t.Fatalf("a new key under the old x5u URL: %v, want refused", err)
	}
	if got := f.r.sh.fetcher.Policy(); !reflect.DeepEqual(got, policy) {
		t.Errorf("refused reload changed the fetch policy: timeout %v, was %v", got.Timeout, policy.Timeout)
	}
	f.fetch()
	if n := f.hits.Load(); n != 1 {
		t.Errorf("refused reload cleared the certificate cache: %d GETs", n)
	}
	if !bytes.Equal(f.published("/certs/sp.pem"), chainOf(t, pkiA)) {
		t.Error("refused reload changed the published chain")
	}
	if f.r.level.Level() != slog.LevelInfo {
		t.Errorf("refused reload changed the log level to %v", f.r.level.Level())
	}
	if got := testutil.ToFloat64(f.r.m.ok); got != 0 {
		t.Errorf("stirgate_config_last_reload_successful = %v after a refused reload", got)
	}
	if got := testutil.ToFloat64(f.r.m.ts); got != okTS {
		t.Errorf("success timestamp moved from %v to %v on a refused reload", okTS, got)
	}
	if f.r.cfg.Attest.Key != "a/sp.key" {
		t.Errorf("configuration in force is now %s", f.r.cfg.Attest.Key)
	}

	// The same change with a new x5u path is accepted: every effect shows,
	// and the old chain stays published at its own path.
	changed.x5uPath = "/certs/sp-2.pem"
	f.write(changed)
	if err := f.r.reload(); err != nil {
		t.Fatal(err)
	}
	if got := f.r.sh.fetcher.Policy().Timeout; got != 3*time.Second {
		t.Errorf("accepted reload: fetch timeout %v", got)
	}
	f.fetch()
	if n := f.hits.Load(); n != 2 {
		t.Errorf("accepted reload with a new fetch policy kept the old cache: %d GETs", n)
	}
	if !bytes.Equal(f.published("/certs/sp-2.pem"), chainOf(t, pkiB)) {
		t.Error("accepted reload did not publish the new chain at the new x5u")
	}
	if !bytes.Equal(f.published("/certs/sp.pem"), chainOf(t, pkiA)) {
		t.Error("the old x5u no longer serves the old chain right after a rotation")
	}
	if f.r.level.Level() != slog.LevelDebug {
		t.Errorf("accepted reload: log level %v", f.r.level.Level())
	}
	if got := testutil.ToFloat64(f.r.m.ok); got != 1 {
		t.Errorf("stirgate_config_last_reload_successful = %v after a good reload", got)
	}
	if got := testutil.ToFloat64(f.r.m.ts); got <= okTS {
		t.Errorf("success timestamp %v did not move from %v", got, okTS)
	}
}

// TestReloadPublishesWhatItSigns: signing turned on by a reload is published
// at once on the admin server (it was routed only when signing was on at
// start), and an old chain is retired after its cache lifetime.
func TestReloadPublishesWhatItSigns(t *testing.T) {
	f := newReloadFixture(t, reloadConfig{pki: "a", x5uPath: "/certs/sp.pem", timeout: 2 * time.Second, noSigning: true})
	var clock atomic.Int64 // the repository's clock, moved by the test
	clock.Store(time.Now().UnixNano())
	f.r.repo.now = func() time.Time { return time.Unix(0, clock.Load()) }
	admin, err := startAdmin(f.r.log, configs.AdminConfig{Listen: "127.0.0.1:0"}, "", f.r.edge, prometheus.NewRegistry(), f.r.repo, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(admin.Close)
	get := func(path string) (int, []byte) {
		t.Helper()
		resp, err := http.Get("http://" + admin.Addr + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	if code, _ := get("/certs/sp.pem"); code != http.StatusNotFound {
		t.Fatalf("signing off: GET x5u = %d, want 404", code)
	}
	f.write(reloadConfig{pki: "a", x5uPath: "/certs/sp.pem", timeout: 2 * time.Second})
	if err := f.r.reload(); err != nil {
		t.Fatal(err)
	}
	if code, body := get("/certs/sp.pem"); code != http.StatusOK || !bytes.Equal(body, chainOf(t, filepath.Join(f.dir, "a"))) {
		t.Fatalf("signing turned on by reload: GET x5u = %d, want 200 and the chain", code)
	}

	// A rotation retires the old path after max(cert_max_age, minKeepOld).
	f.write(reloadConfig{pki: "b", x5uPath: "/certs/sp-2.pem", timeout: 2 * time.Second})
	if err := f.r.reload(); err != nil {
		t.Fatal(err)
	}
	if code, _ := get("/certs/sp.pem"); code != http.StatusOK {
		t.Fatalf("old x5u right after the rotation: %d, want 200", code)
	}
	clock.Add(int64(time.Hour + time.Second)) // attest.cert_max_age defaults to 1h
	if code, _ := get("/certs/sp.pem"); code != http.StatusNotFound {
		t.Fatalf("old x5u after its cache lifetime: %d, want 404", code)
	}
	if code, _ := get("/certs/sp-2.pem"); code != http.StatusOK {
		t.Fatalf("new x5u: %d, want 200", code)
	}
}

// syncBuffer is a bytes.Buffer safe for the logger and the test at once.
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

// TestReloadStateNeedsRestart: the state backend is opened at start only
// (configs/stirgate.yaml says "a change needs a restart"): a reload that
// changes it is applied otherwise, warns with key state, and the policy
// store in force stays the one opened at start.
func TestReloadStateNeedsRestart(t *testing.T) {
	base := reloadConfig{pki: "a", x5uPath: "/certs/sp.pem", timeout: 2 * time.Second}
	f := newReloadFixture(t, base)
	st := f.r.sh.policy
	base.state = "state:\n  backend: redis\n  redis: {addrs: [\"127.0.0.1:1\"]}\n"
	base.logLevel = "debug"
	f.write(base)
	if err := f.r.reload(); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(f.log.String(), "keys=state") {
		t.Fatalf("no restart warning naming state:\n%s", f.log.String())
	}
	if f.r.sh.policy != st || f.r.level.Level() != slog.LevelDebug {
		t.Fatal("the reload replaced the policy store, or did not apply the rest")
	}
}
