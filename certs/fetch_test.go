package certs

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// fakeClock is an injected clock.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock(t time.Time) *fakeClock { return &fakeClock{t: t} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// x5uServer is an httptest server on 127.0.0.1 counting the requests it
// serves; its handler can be swapped.
type x5uServer struct {
	srv     *httptest.Server
	hits    atomic.Int64
	handler atomic.Pointer[http.HandlerFunc]
}

func newX5UServer(t testing.TB, h http.HandlerFunc) *x5uServer {
	t.Helper()
	s := &x5uServer{}
	s.set(h)
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.hits.Add(1)
		(*s.handler.Load())(w, r)
	}))
	t.Cleanup(s.srv.Close)
	return s
}

func (s *x5uServer) set(h http.HandlerFunc) { s.handler.Store(&h) }

func (s *x5uServer) port() int { return s.srv.Listener.Addr().(*net.TCPAddr).Port }

func (s *x5uServer) url(path string) string { return s.srv.URL + path }

// policy allows this server: http, its port, loopback.
func (s *x5uServer) policy() FetchPolicy {
	return FetchPolicy{
		AllowHTTP:  true,
		Ports:      []int{s.port()},
		AllowAddrs: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
	}
}

func serveBytes(body []byte, header ...string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		for i := 0; i+1 < len(header); i += 2 {
			w.Header().Set(header[i], header[i+1])
		}
		if w.Header().Get("Content-Type") == "" {
			w.Header().Set("Content-Type", ContentTypePEMChain)
		}
		_, _ = w.Write(body)
	}
}

func serveStatus(code int) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) { http.Error(w, http.StatusText(code), code) }
}

func newTestFetcher(t testing.TB, p FetchPolicy, opts ...FetcherOption) *Fetcher {
	t.Helper()
	f, err := NewFetcher(p, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.Close)
	return f
}

// counterValue reads stirgate_x5u_fetches_total{result} from reg.
func counterValue(t testing.TB, reg *prometheus.Registry, result string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "stirgate_x5u_fetches_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "result" && l.GetValue() == result {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

func gaugeValue(t testing.TB, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("no gauge %s", name)
	return 0
}

func chainPEM(t testing.TB, opt InitOptions) ([]byte, *pkiFiles) {
	t.Helper()
	p := newPKI(t, opt)
	return readFile(t, p.path(FileSPCert)), p
}

func TestFetchOKAndCacheHit(t *testing.T) {
	body, p := chainPEM(t, InitOptions{})
	s := newX5UServer(t, serveBytes(body))
	reg := prometheus.NewRegistry()
	f := newTestFetcher(t, s.policy(), WithMetrics(reg))
	ctx := context.Background()

	const n = 20
	for i := range n {
		got, err := f.Fetch(ctx, s.url("/sp.pem"))
		if err != nil {
			t.Fatalf("fetch %d: %v", i, err)
		}
		if got.FromCache != (i > 0) {
			t.Fatalf("fetch %d: FromCache = %v", i, got.FromCache)
		}
		if len(got.Chain) != 2 || !got.Chain[0].Equal(p.spChain[0]) || !got.Chain[1].Equal(p.ca) {
			t.Fatalf("fetch %d: wrong chain", i)
		}
		if !bytes.Equal(got.PEM, body) {
			t.Fatalf("fetch %d: PEM differs", i)
		}
	}
	if h := s.hits.Load(); h != 1 {
		t.Fatalf("server saw %d requests for %d fetches, want 1", h, n)
	}
	if v := counterValue(t, reg, "ok"); v != 1 {
		t.Errorf("ok = %v", v)
	}
	if v := counterValue(t, reg, "cache_hit"); v != n-1 {
		t.Errorf("cache_hit = %v", v)
	}
	if v := gaugeValue(t, reg, "stirgate_x5u_cache_entries"); v != 1 {
		t.Errorf("cache entries = %v", v)
	}
	// A second fetcher on the same registry shares the metrics.
	if _, err := NewFetcher(s.policy(), WithMetrics(reg)); err != nil {
		t.Fatalf("second fetcher on one registry: %v", err)
	}
}

func TestFetchHTTPS(t *testing.T) {
	body, _ := chainPEM(t, InitOptions{})
	srv := httptest.NewUnstartedServer(serveBytes(body))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the untrusted-TLS case logs a handshake error
	srv.StartTLS()
	t.Cleanup(srv.Close)
	port := srv.Listener.Addr().(*net.TCPAddr).Port
	roots := x509.NewCertPool()
	roots.AddCert(srv.Certificate())
	// httptest's certificate is for example.com: resolve it to the server.
	res := staticResolver{"example.com": {netip.MustParseAddr("127.0.0.1")}}
	p := FetchPolicy{Ports: []int{port}, AllowAddrs: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}, AllowHosts: []string{"*.example.com"}}
	f := newTestFetcher(t, p, WithResolver(res), WithTLSConfig(&tls.Config{RootCAs: roots}))
	u := fmt.Sprintf("https://WWW.Example.com.:%d/sp.pem", port)
	if _, err := f.Fetch(context.Background(), u); !errors.Is(err, ErrFetch) || !strings.Contains(err.Error(), "www.example.com") {
		t.Fatalf("allowed but unresolvable name: %v", err)
	}
	u = fmt.Sprintf("https://EXAMPLE.com:%d/sp.pem", port)
	if _, err := f.Fetch(context.Background(), u); !errors.Is(err, ErrURLPolicy) {
		t.Fatalf("*.example.com allowed example.com itself: %v", err)
	}
	p.AllowHosts = []string{"example.com"}
	f = newTestFetcher(t, p, WithResolver(res), WithTLSConfig(&tls.Config{RootCAs: roots}))
	got, err := f.Fetch(context.Background(), u)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Chain) != 2 {
		t.Fatalf("chain of %d", len(got.Chain))
	}
	// Without the test root, TLS fails (ErrFetch, not cached as a chain).
	f = newTestFetcher(t, p, WithResolver(res))
	if _, err := f.Fetch(context.Background(), u); !errors.Is(err, ErrFetch) {
		t.Fatalf("untrusted TLS: %v", err)
	}
}

type staticResolver map[string][]netip.Addr

func (r staticResolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	if a, ok := r[host]; ok {
		return a, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
}

func TestFetchCacheLifetime(t *testing.T) {
	start := time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)
	body, _ := chainPEM(t, InitOptions{Now: start, Validity: 48 * time.Hour})
	shortBody, _ := chainPEM(t, InitOptions{Now: start, Validity: 2 * time.Hour}) // leaf notAfter = start+2h
	httpDate := func(t time.Time) string { return t.UTC().Format(http.TimeFormat) }
	cases := []struct {
		name   string
		body   []byte
		header []string
		want   time.Duration
	}{
		{"no header: CacheMin", body, nil, 5 * time.Minute},
		{"max-age", body, []string{"Cache-Control", "public, max-age=3600"}, time.Hour},
		{"max-age below min", body, []string{"Cache-Control", "max-age=10"}, 5 * time.Minute},
		{"max-age 0", body, []string{"Cache-Control", "max-age=0"}, 5 * time.Minute},
		{"max-age above max", body, []string{"Cache-Control", "max-age=999999999999999999999"}, 24 * time.Hour},
		{"quoted max-age", body, []string{"Cache-Control", `max-age="7200"`}, 2 * time.Hour},
		{"no-store", body, []string{"Cache-Control", "no-store, max-age=3600"}, 5 * time.Minute},
		{"no-cache", body, []string{"Cache-Control", "No-Cache"}, 5 * time.Minute},
		{"Expires - Date", body, []string{"Date", httpDate(start), "Expires", httpDate(start.Add(3 * time.Hour))}, 3 * time.Hour},
		{"max-age wins over Expires", body, []string{"Cache-Control", "max-age=1800", "Expires", httpDate(start.Add(3 * time.Hour))}, 30 * time.Minute},
		{"invalid Expires", body, []string{"Expires", "0"}, 5 * time.Minute},
		{"leaf notAfter caps", shortBody, []string{"Cache-Control", "max-age=86400"}, 2 * time.Hour},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			clock := newFakeClock(start)
			h := append([]string(nil), tc.header...)
			s := newX5UServer(t, func(w http.ResponseWriter, r *http.Request) {
				// The Date header tracks the injected clock.
				w.Header().Set("Date", httpDate(clock.Now()))
				serveBytes(tc.body, h...)(w, r)
			})
			f := newTestFetcher(t, s.policy(), WithClock(clock.Now))
			got, err := f.Fetch(context.Background(), s.url("/x"))
			if err != nil {
				t.Fatal(err)
			}
			if d := got.Expires.Sub(start); d != tc.want {
				t.Fatalf("lifetime %v, want %v", d, tc.want)
			}
			clock.Advance(tc.want - time.Second)
			if got, err := f.Fetch(context.Background(), s.url("/x")); err != nil || !got.FromCache {
				t.Fatalf("just before expiry: %v, %+v", err, got)
			}
			clock.Advance(time.Second)
			if got, err := f.Fetch(context.Background(), s.url("/x")); err != nil || got.FromCache {
				t.Fatalf("at expiry: %v, %+v", err, got)
			}
			if h := s.hits.Load(); h != 2 {
				t.Fatalf("%d requests, want 2", h)
			}
		})
	}
}

func TestFetchExpiredLeafNotCached(t *testing.T) {
	start := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	body, _ := chainPEM(t, InitOptions{Now: start.Add(-48 * time.Hour), Validity: time.Hour})
	s := newX5UServer(t, serveBytes(body, "Cache-Control", "max-age=3600"))
	f := newTestFetcher(t, s.policy(), WithClock(newFakeClock(start).Now))
	for range 2 {
		got, err := f.Fetch(context.Background(), s.url("/x"))
		if err != nil || got.FromCache {
			t.Fatalf("%v %+v", err, got)
		}
	}
	if h := s.hits.Load(); h != 2 {
		t.Fatalf("%d requests, want 2 (an expired leaf is returned, never cached)", h)
	}
}

func TestFetchSingleflight(t *testing.T) {
	body, _ := chainPEM(t, InitOptions{})
	release := make(chan struct{})
	arrived := make(chan struct{}, 100)
	s := newX5UServer(t, func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		<-release
		serveBytes(body)(w, r)
	})
	f := newTestFetcher(t, s.policy())
	const n = 50
	var wg sync.WaitGroup
	errs := make(chan error, n)
	// One caller starts the flight; wait until its request is at the
	// server, then start the others: they join the flight in progress (or,
	// if slower than the release, hit the cache), never another request.
	start := func() {
		wg.Go(func() {
			got, err := f.Fetch(context.Background(), s.url("/sp.pem"))
			if err == nil && len(got.Chain) != 2 {
				err = fmt.Errorf("chain of %d", len(got.Chain))
			}
			errs <- err
		})
	}
	start()
	<-arrived
	for range n - 1 {
		start()
	}
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if h := s.hits.Load(); h != 1 {
		t.Fatalf("%d concurrent fetches made %d requests, want 1", n, h)
	}
}

func TestFetchCallerDeadlineDoesNotFailTheFlight(t *testing.T) {
	body, _ := chainPEM(t, InitOptions{})
	release := make(chan struct{})
	arrived := make(chan struct{}, 1)
	s := newX5UServer(t, func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		<-release
		serveBytes(body)(w, r)
	})
	f := newTestFetcher(t, s.policy())
	patient := make(chan error, 1)
	go func() {
		_, err := f.Fetch(context.Background(), s.url("/sp.pem"))
		patient <- err
	}()
	<-arrived
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := f.Fetch(ctx, s.url("/sp.pem")); !errors.Is(err, ErrFetch) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("impatient caller: %v", err)
	}
	close(release)
	if err := <-patient; err != nil {
		t.Fatalf("patient caller: %v", err)
	}
	if got, err := f.Fetch(context.Background(), s.url("/sp.pem")); err != nil || !got.FromCache {
		t.Fatalf("after: %v %+v", err, got)
	}
	if h := s.hits.Load(); h != 1 {
		t.Fatalf("%d requests", h)
	}
}

func TestFetchNegativeCache(t *testing.T) {
	clock := newFakeClock(time.Now())
	s := newX5UServer(t, serveStatus(http.StatusNotFound))
	reg := prometheus.NewRegistry()
	f := newTestFetcher(t, s.policy(), WithClock(clock.Now), WithMetrics(reg))
	u := s.url("/missing.pem")
	_, err1 := f.Fetch(context.Background(), u)
	if !errors.Is(err1, ErrFetch) || !strings.Contains(err1.Error(), "404") || !strings.Contains(err1.Error(), u) {
		t.Fatalf("404: %v", err1)
	}
	_, err2 := f.Fetch(context.Background(), u)
	if err2 == nil || err2.Error() != err1.Error() {
		t.Fatalf("cached failure: %v", err2)
	}
	if h := s.hits.Load(); h != 1 {
		t.Fatalf("%d requests, want 1", h)
	}
	if v := counterValue(t, reg, "negative_hit"); v != 1 {
		t.Fatalf("negative_hit = %v", v)
	}
	if v := counterValue(t, reg, "status"); v != 1 {
		t.Fatalf("status = %v", v)
	}
	clock.Advance(DefaultNegativeTTL)
	_, _ = f.Fetch(context.Background(), u)
	if h := s.hits.Load(); h != 2 {
		t.Fatalf("%d requests after NegativeTTL, want 2", h)
	}
}

func TestFetchCircuitBreaker(t *testing.T) {
	body, _ := chainPEM(t, InitOptions{})
	clock := newFakeClock(time.Now())
	s := newX5UServer(t, serveStatus(http.StatusServiceUnavailable))
	p := s.policy()
	p.BreakerFailures = 3
	p.BreakerCooldown = 30 * time.Second
	reg := prometheus.NewRegistry()
	f := newTestFetcher(t, p, WithClock(clock.Now), WithMetrics(reg))
	ctx := context.Background()
	fetch := func(path string) error {
		_, err := f.Fetch(ctx, s.url(path))
		return err
	}
	for i := range 3 {
		if err := fetch("/a" + strconv.Itoa(i)); !errors.Is(err, ErrFetch) {
			t.Fatalf("failure %d: %v", i, err)
		}
	}
	if err := fetch("/a3"); !errors.Is(err, ErrCircuitOpen) {
		t.Fatalf("after 3 failures: %v", err)
	}
	if h := s.hits.Load(); h != 3 {
		t.Fatalf("open circuit let a request through: %d", h)
	}
	if v := counterValue(t, reg, "circuit_open"); v != 1 {
		t.Fatalf("circuit_open = %v", v)
	}
	// Circuit-open is not negative-cached: a retry once the host is back
	// goes out.
	clock.Advance(29 * time.Second)
	if err := fetch("/a3"); !errors.Is(err, ErrCircuitOpen) {
		t.Fatalf("still open: %v", err)
	}
	// Half-open: the probe fails, the circuit opens again at once.
	clock.Advance(time.Second)
	if err := fetch("/b"); !errors.Is(err, ErrFetch) || errors.Is(err, ErrCircuitOpen) {
		t.Fatalf("probe: %v", err)
	}
	if err := fetch("/c"); !errors.Is(err, ErrCircuitOpen) {
		t.Fatalf("after a failed probe: %v", err)
	}
	// Half-open again, the host is back: the probe closes the circuit.
	s.set(serveBytes(body))
	clock.Advance(30 * time.Second)
	if err := fetch("/a3"); err != nil {
		t.Fatalf("probe to a healthy host: %v", err)
	}
	if err := fetch("/d"); err != nil {
		t.Fatalf("closed again: %v", err)
	}
	// A 404 says the host is up: it does not count towards opening.
	s.set(serveStatus(http.StatusNotFound))
	for i := range 5 {
		if err := fetch("/nf" + strconv.Itoa(i)); errors.Is(err, ErrCircuitOpen) {
			t.Fatalf("404 #%d opened the circuit", i)
		}
	}
}

func TestBreakerHalfOpenLetsOneProbe(t *testing.T) {
	now := time.Now()
	b := &breakers{limit: 2, cooldown: time.Minute, max: 10, hosts: map[string]*hostState{}}
	allowed := func(host string, at time.Time) bool {
		_, err := b.allow(host, at)
		return err == nil
	}
	b.report("h", hostFailed, false, now)
	if !allowed("h", now) {
		t.Fatal("open after one failure")
	}
	b.report("h", hostFailed, false, now)
	if allowed("h", now) || allowed("h", now.Add(59*time.Second)) {
		t.Fatal("not open")
	}
	if !allowed("other", now) {
		t.Fatal("breaker is not per host")
	}
	later := now.Add(time.Minute)
	if probe, err := b.allow("h", later); err != nil || !probe {
		t.Fatalf("no probe after cooldown: %v", err)
	}
	for range 3 {
		if allowed("h", later) {
			t.Fatal("second probe while one is in flight")
		}
	}
	// A fetch that started before the circuit opened ends neutrally: the
	// probe is still the probe.
	b.report("h", hostNeutral, false, later)
	if allowed("h", later) {
		t.Fatal("a non-probe outcome released the probe")
	}
	b.report("h", hostNeutral, true, later) // e.g. the address was refused: no verdict
	if probe, err := b.allow("h", later); err != nil || !probe {
		t.Fatal("no new probe after a neutral probe")
	}
	b.report("h", hostOK, true, later)
	if !allowed("h", later) || len(b.hosts) != 0 {
		t.Fatal("not closed after a good probe")
	}
	// Bounded: hosts beyond max are not tracked.
	for i := range 25 {
		b.report("host"+strconv.Itoa(i), hostFailed, false, later)
	}
	if len(b.hosts) > 10 {
		t.Fatalf("%d hosts tracked", len(b.hosts))
	}
}

func TestFetchHangingServer(t *testing.T) {
	release := make(chan struct{})
	s := newX5UServer(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	t.Cleanup(func() { close(release) }) // before the server closes (LIFO)

	t.Run("caller deadline", func(t *testing.T) {
		p := s.policy()
		p.Timeout = time.Minute
		f := newTestFetcher(t, p)
		const deadline = 200 * time.Millisecond
		ctx, cancel := context.WithTimeout(context.Background(), deadline)
		defer cancel()
		start := time.Now()
		_, err := f.Fetch(ctx, s.url("/hang"))
		el := time.Since(start)
		if !errors.Is(err, ErrFetch) || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err = %v", err)
		}
		if el > deadline+5*time.Second { // generous: only "did not wait for the policy's minute"
			t.Fatalf("returned after %v", el)
		}
	})
	t.Run("policy timeout", func(t *testing.T) {
		p := s.policy()
		p.Timeout = 200 * time.Millisecond
		reg := prometheus.NewRegistry()
		f := newTestFetcher(t, p, WithMetrics(reg))
		start := time.Now()
		_, err := f.Fetch(context.Background(), s.url("/hang2"))
		el := time.Since(start)
		if !errors.Is(err, ErrFetch) || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err = %v", err)
		}
		if el > p.Timeout+5*time.Second {
			t.Fatalf("returned after %v", el)
		}
		if v := counterValue(t, reg, "timeout"); v != 1 {
			t.Fatalf("timeout = %v", v)
		}
	})
}

func TestFetchRefusals(t *testing.T) {
	body, _ := chainPEM(t, InitOptions{})
	big := bytes.Repeat([]byte("A"), 10<<20)
	keyPEM := readFile(t, newPKI(t, InitOptions{}).path(FileSPKey))
	cases := []struct {
		name   string
		h      http.HandlerFunc
		want   error
		label  string
		target bool // the redirect target must not be fetched
	}{
		{"404", serveStatus(http.StatusNotFound), ErrFetch, "status", false},
		{"500", serveStatus(http.StatusInternalServerError), ErrFetch, "status", false},
		{"204", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) }, ErrFetch, "status", false},
		{"10 MB with Content-Length", serveBytes(big, "Content-Length", strconv.Itoa(len(big))), ErrTooLarge, "too_large", false},
		{"10 MB chunked", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", ContentTypePEMChain)
			for i := 0; i < len(big); i += 32 << 10 {
				if _, err := w.Write(big[i : i+32<<10]); err != nil {
					return
				}
				w.(http.Flusher).Flush()
			}
		}, ErrTooLarge, "too_large", false},
		{"302", nil, ErrRedirect, "redirect", true},
		{"not PEM", serveBytes([]byte("<html>hello</html>")), ErrBadChain, "bad_chain", false},
		{"private key", serveBytes(append(append([]byte{}, body...), keyPEM...)), ErrBadChain, "bad_chain", false},
		{"too many certificates", serveBytes(bytes.Repeat(body, 5)), ErrBadChain, "bad_chain", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			target := newX5UServer(t, serveBytes(body))
			h := tc.h
			if h == nil {
				h = func(w http.ResponseWriter, r *http.Request) {
					http.Redirect(w, r, target.url("/sp.pem"), http.StatusFound)
				}
			}
			s := newX5UServer(t, h)
			p := s.policy()
			p.Ports = append(p.Ports, target.port())
			reg := prometheus.NewRegistry()
			f := newTestFetcher(t, p, WithMetrics(reg))
			u := s.url("/sp.pem")
			_, err := f.Fetch(context.Background(), u)
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if !strings.Contains(err.Error(), u) {
				t.Fatalf("error does not name the URL: %v", err)
			}
			if strings.Contains(err.Error(), "MIG") {
				t.Fatalf("error leaks PEM content: %v", err)
			}
			if v := counterValue(t, reg, tc.label); v != 1 {
				t.Fatalf("%s = %v", tc.label, v)
			}
			if tc.target && target.hits.Load() != 0 {
				t.Fatal("redirect followed")
			}
		})
	}
}

func TestFetchAddressChecks(t *testing.T) {
	body, _ := chainPEM(t, InitOptions{})
	s := newX5UServer(t, serveBytes(body))
	port := s.port()
	strict := FetchPolicy{AllowHTTP: true, Ports: []int{port}} // no AllowAddrs
	lab := s.policy()
	res := staticResolver{
		"x5u.test":    {netip.MustParseAddr("127.0.0.1")},
		"mapped.test": {netip.MustParseAddr("::ffff:127.0.0.1")},
		"mixed.test":  {netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("10.0.0.1")},
	}
	cases := []struct {
		name string
		p    FetchPolicy
		opts []FetcherOption
		host string
		want error // nil: success
	}{
		{"localhost, system resolver", strict, nil, "localhost", ErrAddressDenied},
		{"IP literal", strict, nil, "127.0.0.1", ErrAddressDenied},
		{"name resolving to loopback", strict, []FetcherOption{WithResolver(res)}, "x5u.test", ErrAddressDenied},
		{"IPv4-mapped answer", strict, []FetcherOption{WithResolver(res)}, "mapped.test", ErrAddressDenied},
		{"allowed by AllowAddrs", lab, []FetcherOption{WithResolver(res)}, "x5u.test", nil},
		{"IPv4-mapped allowed by AllowAddrs", lab, []FetcherOption{WithResolver(res)}, "mapped.test", nil},
		{"one private address among the answers", lab, []FetcherOption{WithResolver(res)}, "mixed.test", ErrAddressDenied},
		{"unknown name", lab, []FetcherOption{WithResolver(res)}, "nx.test", ErrFetch},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			reg := prometheus.NewRegistry()
			f := newTestFetcher(t, tc.p, append(tc.opts, WithMetrics(reg))...)
			before := s.hits.Load()
			_, err := f.Fetch(context.Background(), fmt.Sprintf("http://%s:%d/sp.pem", tc.host, port))
			if tc.want == nil {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if s.hits.Load() != before {
				t.Fatal("the server was reached")
			}
			if tc.want == ErrAddressDenied && counterValue(t, reg, "address") != 1 {
				t.Fatal("address metric")
			}
		})
	}
}

func TestFetchPolicyRefusalMakesNoRequest(t *testing.T) {
	s := newX5UServer(t, serveStatus(200))
	reg := prometheus.NewRegistry()
	p := s.policy()
	p.DenyHosts = []string{"127.0.0.1"}
	f := newTestFetcher(t, p, WithMetrics(reg))
	for _, u := range []string{s.url("/x"), s.url("/x?a=1"), "ftp://example.com/x", "https://user:secret@example.com/x"} {
		_, err := f.Fetch(context.Background(), u)
		if !errors.Is(err, ErrURLPolicy) {
			t.Fatalf("%s: %v", u, err)
		}
		if strings.Contains(err.Error(), "secret") {
			t.Fatalf("error leaks userinfo: %v", err)
		}
	}
	if s.hits.Load() != 0 || counterValue(t, reg, "policy") != 4 {
		t.Fatal("policy refusals reached the server or were not counted")
	}
}

func TestFetchCacheBounded(t *testing.T) {
	body, _ := chainPEM(t, InitOptions{})
	s := newX5UServer(t, serveBytes(body))
	p := s.policy()
	p.CacheEntries = 3
	reg := prometheus.NewRegistry()
	f := newTestFetcher(t, p, WithMetrics(reg))
	for i := range 5 {
		if _, err := f.Fetch(context.Background(), s.url("/c"+strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
	}
	if n := f.state.Load().cache.len(); n != 3 {
		t.Fatalf("%d entries, want 3", n)
	}
	if v := gaugeValue(t, reg, "stirgate_x5u_cache_entries"); v != 3 {
		t.Fatalf("gauge %v", v)
	}
	// The oldest went first.
	if got, _ := f.Fetch(context.Background(), s.url("/c4")); !got.FromCache {
		t.Fatal("newest evicted")
	}
	if got, _ := f.Fetch(context.Background(), s.url("/c0")); got.FromCache {
		t.Fatal("oldest kept")
	}
}

func TestFetcherSetPolicy(t *testing.T) {
	body, _ := chainPEM(t, InitOptions{})
	s := newX5UServer(t, serveBytes(body))
	f := newTestFetcher(t, s.policy())
	if _, err := f.Fetch(context.Background(), s.url("/x")); err != nil {
		t.Fatal(err)
	}
	p := s.policy()
	p.DenyHosts = []string{"127.0.0.1"}
	if err := f.SetPolicy(p); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Fetch(context.Background(), s.url("/x")); !errors.Is(err, ErrURLPolicy) {
		t.Fatalf("cache survived a policy change: %v", err)
	}
	if err := f.SetPolicy(FetchPolicy{Ports: []int{0}}); err == nil {
		t.Fatal("invalid policy accepted")
	}
	if got := f.Policy(); len(got.DenyHosts) != 1 || got.Timeout != DefaultFetchTimeout {
		t.Fatalf("policy in force: %+v", got)
	}
}

func TestParseCacheControl(t *testing.T) {
	cases := []struct {
		in      string
		age     time.Duration
		has, nc bool
	}{
		{"", 0, false, false},
		{"max-age=60", time.Minute, true, false},
		{"public, MAX-AGE = 60 ", time.Minute, true, false},
		{"max-age=60, max-age=30", 30 * time.Second, true, false},
		{"max-age=-1", 0, false, false},
		{"max-age=1e3", 0, false, false},
		{"max-age=", 0, false, false},
		{`max-age="5"`, 5 * time.Second, true, false},
		{"max-age=99999999999999999999999999", (1<<31 - 1) * time.Second, true, false},
		{"no-store", 0, false, true},
		{"private, no-cache=\"set-cookie\"", 0, false, true},
		{",,,", 0, false, false},
	}
	for _, tc := range cases {
		age, has, nc := parseCacheControl(tc.in)
		if age != tc.age || has != tc.has || nc != tc.nc {
			t.Errorf("%q: %v %v %v, want %v %v %v", tc.in, age, has, nc, tc.age, tc.has, tc.nc)
		}
	}
}

func FuzzParseCacheControl(f *testing.F) {
	for _, s := range []string{"max-age=60", "no-store", `max-age="1"`, "max-age=99999999999999999999", "a=b=c,,max-age"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		age, has, _ := parseCacheControl(s)
		if age < 0 || age > (1<<31-1)*time.Second || (!has && age != 0) {
			t.Fatalf("%q: age %v has %v", s, age, has)
		}
		h := http.Header{"Cache-Control": {s}, "Expires": {s}, "Date": {s}}
		if d := freshness(h, time.Now(), time.Minute, time.Hour); d < time.Minute || d > time.Hour {
			t.Fatalf("freshness %v outside bounds", d)
		}
	})
}

func BenchmarkFetchCacheHit(b *testing.B) {
	body, _ := chainPEM(b, InitOptions{})
	s := newX5UServer(b, serveBytes(body))
	f := newTestFetcher(b, s.policy(), WithMetrics(prometheus.NewRegistry()))
	u := s.url("/sp.pem")
	if _, err := f.Fetch(context.Background(), u); err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := f.Fetch(ctx, u); err != nil {
			b.Fatal(err)
		}
	}
}
