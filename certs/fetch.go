package certs

import (
	"container/list"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/singleflight"
)

// maxChainCerts bounds the certificates of a fetched chain (SHAKEN chains
// have 2 or 3).
const maxChainCerts = 8

// sweepEvery is how often a cache insert also drops every expired entry.
const sweepEvery = time.Minute

// Fetched is a certificate chain fetched from an x5u URL. It is shared
// between callers (and with the cache): do not modify it.
type Fetched struct {
	Chain     []*x509.Certificate // leaf first, as served
	PEM       []byte              // the certificates re-encoded as PEM
	Expires   time.Time           // end of its cache lifetime
	FromCache bool
}

// Resolver looks host names up; *net.Resolver is one.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// FetcherOption configures NewFetcher.
type FetcherOption func(*Fetcher)

// WithClock sets the clock of cache lifetimes, negative caching and the
// circuit breaker (not of network timeouts, which use real time).
func WithClock(now func() time.Time) FetcherOption { return func(f *Fetcher) { f.now = now } }

// WithResolver sets the resolver of x5u host names (default
// net.DefaultResolver). Every address it returns is checked.
func WithResolver(r Resolver) FetcherOption { return func(f *Fetcher) { f.resolver = r } }

// WithDialer sets the dialer used to connect to a checked address (its
// Control hook, if any, runs after the fetcher's own address check).
func WithDialer(d *net.Dialer) FetcherOption { return func(f *Fetcher) { f.dialer = d } }

// WithTLSConfig sets the TLS client configuration (e.g. RootCAs in tests);
// it is cloned and its MinVersion raised to TLS 1.2.
func WithTLSConfig(c *tls.Config) FetcherOption { return func(f *Fetcher) { f.tlsConfig = c } }

// WithMetrics registers the fetcher's metrics (see metrics.go). Metrics
// already registered by an earlier fetcher are shared.
func WithMetrics(reg prometheus.Registerer) FetcherOption { return func(f *Fetcher) { f.reg = reg } }

// WithLogger sets the logger (default: discard). It logs at Debug only:
// Content-Type other than application/pem-certificate-chain, each fetch
// failure. Verdicts are the verifier's to log.
func WithLogger(l *slog.Logger) FetcherOption { return func(f *Fetcher) { f.log = l } }

// Fetcher fetches x5u certificate chains under a FetchPolicy: SSRF guard on
// the URL and on every resolved address (at connect time), one bounded GET,
// per-URL singleflight, a bounded cache of chains and of failures, a
// per-host circuit breaker. It is safe for concurrent use and meant to be
// process-wide.
type Fetcher struct {
	now       func() time.Time
	resolver  Resolver
	dialer    *net.Dialer
	tlsConfig *tls.Config
	reg       prometheus.Registerer
	log       *slog.Logger

	client  *http.Client
	tr      *http.Transport
	metrics *fetchMetrics
	base    context.Context // cancelled by Close
	stop    context.CancelFunc

	mu    sync.Mutex // serialises SetPolicy
	state atomic.Pointer[fetchState]
}

// fetchState is everything that belongs to one policy: SetPolicy replaces
// it whole, so nothing admitted under an old policy survives.
type fetchState struct {
	p     *compiledPolicy
	cache *fetchCache
	br    *breakers
	sf    singleflight.Group
	sem   chan struct{}
}

// NewFetcher returns a fetcher for policy p (see FetchPolicy.Validate).
func NewFetcher(p FetchPolicy, opts ...FetcherOption) (*Fetcher, error) {
	f := &Fetcher{now: time.Now, resolver: net.DefaultResolver, dialer: &net.Dialer{}}
	for _, o := range opts {
		o(f)
	}
	if f.log == nil {
		f.log = slog.New(slog.DiscardHandler)
	}
	if f.now == nil {
		f.now = time.Now
	}
	if f.resolver == nil {
		f.resolver = net.DefaultResolver
	}
	if f.dialer == nil {
		f.dialer = &net.Dialer{}
	}
	if _, err := p.compile(); err != nil {
		return nil, err // before registering any metric
	}
	m, err := newFetchMetrics(f.reg)
	if err != nil {
		return nil, fmt.Errorf("certs: x5u fetcher metrics: %w", err)
	}
	f.metrics = m
	st, err := f.newState(p)
	if err != nil {
		return nil, err
	}
	f.state.Store(st)

	d := *f.dialer // a copy: its control hooks are chained below
	userControl, userControlCtx := d.Control, d.ControlContext
	d.Control = nil
	d.ControlContext = func(ctx context.Context, network, address string, c syscall.RawConn) error {
		// Second line of defence: whatever dials, the socket only
		// connects to an address the policy allows.
		ap, err := netip.ParseAddrPort(address)
		if err != nil {
			return fmt.Errorf("%w: cannot check %q", ErrAddressDenied, address)
		}
		if err := checkAddr(ap.Addr(), f.state.Load().p.AllowAddrs); err != nil {
			return err
		}
		switch {
		case userControlCtx != nil:
			return userControlCtx(ctx, network, address, c)
		case userControl != nil:
			return userControl(network, address, c)
		}
		return nil
	}
	f.dialer = &d

	tlsConf := &tls.Config{}
	if f.tlsConfig != nil {
		tlsConf = f.tlsConfig.Clone()
	}
	if tlsConf.MinVersion < tls.VersionTLS12 {
		tlsConf.MinVersion = tls.VersionTLS12
	}
	f.tr = &http.Transport{
		Proxy:                  nil, // never an environment proxy: the address check is on the x5u host itself
		DialContext:            f.dialContext,
		TLSClientConfig:        tlsConf,
		MaxIdleConns:           64,
		MaxIdleConnsPerHost:    2,
		IdleConnTimeout:        90 * time.Second,
		MaxResponseHeaderBytes: 16 << 10,
		DisableCompression:     true,
	}
	f.client = &http.Client{
		Transport: f.tr,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse // a 3xx is returned as is, and refused
		},
	}
	f.base, f.stop = context.WithCancel(context.Background())
	return f, nil
}

func (f *Fetcher) newState(p FetchPolicy) (*fetchState, error) {
	c, err := p.compile()
	if err != nil {
		return nil, err
	}
	return &fetchState{
		p:     c,
		cache: newFetchCache(c.CacheEntries, f.metrics.entries),
		br:    &breakers{limit: c.BreakerFailures, cooldown: c.BreakerCooldown, max: c.CacheEntries, hosts: map[string]*hostState{}},
		sem:   make(chan struct{}, c.MaxInFlight),
	}, nil
}

// SetPolicy replaces the policy (after Validate): Prepare, then Install.
func (f *Fetcher) SetPolicy(p FetchPolicy) error {
	pp, err := f.Prepare(p)
	if err != nil {
		return err
	}
	f.Install(pp)
	return nil
}

// PreparedPolicy is a policy compiled for one Fetcher and not yet in force.
type PreparedPolicy struct{ st *fetchState }

// Prepare compiles p (see FetchPolicy.Validate) without changing the policy
// in force: a configuration reload prepares it where the reload can still
// fail and installs it only once the whole new configuration is accepted.
func (f *Fetcher) Prepare(p FetchPolicy) (*PreparedPolicy, error) {
	st, err := f.newState(p)
	if err != nil {
		return nil, err
	}
	return &PreparedPolicy{st: st}, nil
}

// Install puts a prepared policy in force. The cache, the negative cache
// and the circuit breakers start afresh, since they were filled under the
// old policy; fetches in flight finish under the old one. pp must come from
// f's own Prepare.
func (f *Fetcher) Install(pp *PreparedPolicy) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.state.Store(pp.st)
	f.metrics.entries.Set(0)
	f.tr.CloseIdleConnections()
}

// Policy returns the policy in force, with defaults filled in.
func (f *Fetcher) Policy() FetchPolicy {
	p := f.state.Load().p.FetchPolicy
	p.Ports = slices.Clone(p.Ports)
	p.AllowHosts = slices.Clone(p.AllowHosts)
	p.DenyHosts = slices.Clone(p.DenyHosts)
	p.AllowAddrs = slices.Clone(p.AllowAddrs)
	return p
}

// Close cancels the fetches in flight and closes idle connections. Fetch
// may still be called: it then serves the cache and fails the rest.
func (f *Fetcher) Close() {
	f.stop()
	f.tr.CloseIdleConnections()
}

// Fetch returns the chain (leaf first) at x5u: from the cache, or by one GET
// shared by every concurrent caller of the same URL (singleflight). The GET
// runs detached from ctx, bounded by the policy's Timeout, so that one
// caller giving up does not fail the others and a slow success still fills
// the cache; Fetch itself returns when ctx is done.
//
// Every error wraps one of ErrURLPolicy, ErrAddressDenied, ErrFetch,
// ErrTooLarge, ErrRedirect, ErrCircuitOpen, ErrBadChain, and names the URL.
// Failures other than ErrURLPolicy, ErrCircuitOpen and overload are cached
// for NegativeTTL.
func (f *Fetcher) Fetch(ctx context.Context, x5u string) (*Fetched, error) {
	st := f.state.Load()
	now := f.now()
	if e := st.cache.get(x5u, now); e != nil {
		if e.err != nil {
			f.metrics.count(resNegativeHit)
			return nil, e.err
		}
		f.metrics.count(resCacheHit)
		return e.hit, nil
	}
	u, err := st.p.checkURL(x5u)
	if err != nil {
		f.metrics.count(resPolicy)
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, f.callerDone(x5u, err)
	}
	ch := st.sf.DoChan(x5u, func() (any, error) { return f.flight(st, u, x5u) })
	select {
	case r := <-ch:
		res, _ := r.Val.(flightResult)
		f.metrics.count(res.label)
		if r.Err != nil {
			return nil, r.Err
		}
		return res.fetched, nil
	case <-ctx.Done():
		return nil, f.callerDone(x5u, ctx.Err())
	}
}

func (f *Fetcher) callerDone(x5u string, err error) error {
	if errors.Is(err, context.DeadlineExceeded) {
		f.metrics.count(resTimeout)
	} else {
		f.metrics.count(resCanceled)
	}
	return fmt.Errorf("certs: x5u %s: %w: %w", quoteURL(x5u), ErrFetch, err)
}

type flightResult struct {
	fetched *Fetched
	label   string
}

// Breaker outcomes of one fetch.
type outcome int

const (
	hostNeutral outcome = iota // says nothing about the host's health
	hostOK                     // the host answered
	hostFailed                 // network error, timeout, 5xx, 429
)

// flight is one network fetch of key (u is its normalised form).
func (f *Fetcher) flight(st *fetchState, u *url.URL, key string) (flightResult, error) {
	host := u.Hostname()
	wrap := func(label string, sentinel error, format string, args ...any) (flightResult, error) {
		return flightResult{label: label}, fmt.Errorf("certs: x5u %s: %w: %s", quoteURL(key), sentinel, fmt.Sprintf(format, args...))
	}
	// A caller that missed the cache just before the previous flight for
	// this URL ended starts a new flight: the previous one's result is in
	// the cache by now.
	if e := st.cache.get(key, f.now()); e != nil {
		if e.err != nil {
			return flightResult{label: resNegativeHit}, e.err
		}
		return flightResult{fetched: e.hit, label: resCacheHit}, nil
	}
	probe, err := st.br.allow(host, f.now())
	if err != nil {
		return wrap(resCircuitOpen, ErrCircuitOpen, "%v", err)
	}
	select {
	case st.sem <- struct{}{}:
		defer func() { <-st.sem }()
	default:
		st.br.report(host, hostNeutral, probe, f.now())
		return wrap(resBusy, ErrFetch, "too many x5u fetches in flight (%d)", cap(st.sem))
	}

	start := time.Now()
	fetched, label, out, err := f.get(st, u, key)
	f.metrics.duration.Observe(time.Since(start).Seconds())
	now := f.now()
	st.br.report(host, out, probe, now)
	if err != nil {
		f.log.Debug("x5u fetch failed", "x5u", quoteURL(key), "result", label, "error", err)
		st.cache.put(key, &cacheEntry{err: err, expires: now.Add(st.p.NegativeTTL)}, now)
		return flightResult{label: label}, err
	}
	if fetched.Expires.After(now) {
		hit := *fetched
		hit.FromCache = true
		st.cache.put(key, &cacheEntry{hit: &hit, expires: fetched.Expires}, now)
	}
	return flightResult{fetched: fetched, label: resOK}, nil
}

// get does the GET; it returns the chain or an error wrapping a sentinel,
// the metric label and the breaker outcome.
func (f *Fetcher) get(st *fetchState, u *url.URL, key string) (*Fetched, string, outcome, error) {
	p := st.p
	fail := func(label string, out outcome, sentinel error, format string, args ...any) (*Fetched, string, outcome, error) {
		if label == resTimeout {
			// Timeouts also match context.DeadlineExceeded, as when the
			// caller's own deadline ends the wait.
			return nil, label, out, fmt.Errorf("certs: x5u %s: %w: %s: %w", quoteURL(key), sentinel, fmt.Sprintf(format, args...), context.DeadlineExceeded)
		}
		return nil, label, out, fmt.Errorf("certs: x5u %s: %w: %s", quoteURL(key), sentinel, fmt.Sprintf(format, args...))
	}
	ctx, cancel := context.WithTimeout(f.base, p.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return fail(resPolicy, hostNeutral, ErrURLPolicy, "%v", err)
	}
	req.Header.Set("Accept", ContentTypePEMChain+", application/x-pem-file;q=0.9, */*;q=0.1")
	req.Header.Set("User-Agent", "stirgate")
	resp, err := f.client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // the URL is named once, by us
		}
		switch {
		case errors.Is(err, ErrAddressDenied):
			return nil, resAddress, hostNeutral, fmt.Errorf("certs: x5u %s: %w", quoteURL(key), err)
		case isTimeout(err):
			return fail(resTimeout, hostFailed, ErrFetch, "no answer within %v", p.Timeout)
		default:
			return fail(resNetwork, hostFailed, ErrFetch, "%s", netReason(err))
		}
	}
	defer resp.Body.Close()
	switch code := resp.StatusCode; {
	case code == http.StatusOK:
	case code >= 300 && code < 400:
		return fail(resRedirect, hostOK, ErrRedirect, "status %d", code)
	case code == http.StatusTooManyRequests || code >= 500:
		return fail(resStatus, hostFailed, ErrFetch, "status %d", code)
	default:
		return fail(resStatus, hostOK, ErrFetch, "status %d", code)
	}
	if resp.ContentLength > p.MaxBody {
		return fail(resTooLarge, hostOK, ErrTooLarge, "Content-Length %d over %d bytes", resp.ContentLength, p.MaxBody)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, p.MaxBody+1))
	if err != nil {
		if isTimeout(err) {
			return fail(resTimeout, hostFailed, ErrFetch, "body not read within %v", p.Timeout)
		}
		return fail(resNetwork, hostFailed, ErrFetch, "reading the body: %s", netReason(err))
	}
	if int64(len(body)) > p.MaxBody {
		return fail(resTooLarge, hostOK, ErrTooLarge, "body over %d bytes", p.MaxBody)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "" {
		if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != ContentTypePEMChain {
			f.log.Debug("x5u served with an unexpected Content-Type", "x5u", quoteURL(key), "content_type", ct)
		}
	}
	pemBytes, chain, err := ParseChainPEM(body)
	if err != nil {
		return fail(resBadChain, hostOK, ErrBadChain, "%v", err)
	}
	if len(chain) > maxChainCerts {
		return fail(resBadChain, hostOK, ErrBadChain, "%d certificates (at most %d)", len(chain), maxChainCerts)
	}
	now := f.now()
	expires := now.Add(freshness(resp.Header, now, p.CacheMin, p.CacheMax))
	if na := chain[0].NotAfter; na.Before(expires) {
		expires = na
	}
	return &Fetched{Chain: chain, PEM: pemBytes, Expires: expires}, resOK, hostOK, nil
}

// netReason describes a network error without naming our own addresses or
// our DNS server (the verifier may pass the text on): DNS errors by name
// and reason, socket errors by operation and system error.
func netReason(err error) string {
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		return "DNS lookup of " + strconv.Quote(dnsErr.Name) + ": " + dnsErr.Err
	}
	var opErr *net.OpError
	if errors.As(err, &opErr) {
		if opErr.Err == nil {
			return opErr.Op + ": failed"
		}
		return opErr.Op + ": " + netReason(opErr.Err)
	}
	var sysErr *os.SyscallError
	if errors.As(err, &sysErr) {
		return sysErr.Syscall + ": " + sysErr.Err.Error()
	}
	return err.Error()
}

func isTimeout(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// dialContext resolves the host once, checks every address it resolves to
// (any refused address refuses the host: a name that mixes public and
// special-purpose addresses is a rebinding attempt or a mistake), then dials
// the checked addresses in order. The dialer's Control hook checks again on
// the socket itself.
func (f *Fetcher) dialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil {
		return nil, fmt.Errorf("bad port %q", portStr)
	}
	allow := f.state.Load().p.AllowAddrs
	var addrs []netip.Addr
	if a, err := netip.ParseAddr(host); err == nil {
		addrs = []netip.Addr{a}
	} else {
		addrs, err = f.resolver.LookupNetIP(ctx, "ip", host)
		if err != nil {
			return nil, err // a *net.DNSError, named by netReason
		}
		if len(addrs) == 0 {
			return nil, fmt.Errorf("resolve %s: no addresses", host)
		}
	}
	for _, a := range addrs {
		if err := checkAddr(a, allow); err != nil {
			return nil, fmt.Errorf("%s: %w", host, err)
		}
	}
	var errs []error
	for _, a := range addrs {
		c, err := f.dialer.DialContext(ctx, network, netip.AddrPortFrom(a.Unmap(), uint16(port)).String())
		if err == nil {
			return c, nil
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	return nil, errors.Join(errs...)
}

// freshness is the cache lifetime of a response: Cache-Control no-store or
// no-cache → min; else max-age; else Expires − Date (Expires − now without
// a Date); else min. Clamped to [min, max].
func freshness(h http.Header, now time.Time, lo, hi time.Duration) time.Duration {
	d := lo
	maxAge, has, noCache := parseCacheControl(strings.Join(h.Values("Cache-Control"), ","))
	switch {
	case noCache:
	case has:
		d = maxAge
	default:
		if e := h.Get("Expires"); e != "" {
			exp, err := http.ParseTime(e)
			if err != nil {
				d = 0 // an invalid Expires means already expired (RFC 9111 §5.3)
				break
			}
			base := now
			if dt, err := http.ParseTime(h.Get("Date")); err == nil {
				base = dt
			}
			d = exp.Sub(base)
		}
	}
	return min(max(d, lo), hi)
}

// parseCacheControl reads a Cache-Control value: max-age (the smallest if
// repeated; quoted accepted; overflow saturates), and whether no-store or
// no-cache is present. Malformed max-age values are ignored.
func parseCacheControl(v string) (maxAge time.Duration, hasMaxAge, noCache bool) {
	const limit = 1<<31 - 1 // RFC 9111 §1.2.2
	for len(v) > 0 {
		var d string
		d, v, _ = strings.Cut(v, ",")
		d = strings.TrimSpace(d)
		name, val, _ := strings.Cut(d, "=")
		name = strings.ToLower(strings.TrimSpace(name))
		switch name {
		case "no-store", "no-cache":
			noCache = true
		case "max-age":
			val = strings.TrimSpace(val)
			if len(val) >= 2 && val[0] == '"' && val[len(val)-1] == '"' {
				val = val[1 : len(val)-1]
			}
			if val == "" {
				continue
			}
			n := int64(0)
			ok := true
			for i := 0; i < len(val); i++ {
				c := val[i]
				if c < '0' || c > '9' {
					ok = false
					break
				}
				if n < limit {
					n = n*10 + int64(c-'0')
				}
			}
			if !ok {
				continue
			}
			n = min(n, limit)
			age := time.Duration(n) * time.Second
			if !hasMaxAge || age < maxAge {
				maxAge = age
			}
			hasMaxAge = true
		}
	}
	return maxAge, hasMaxAge, noCache
}

// ---- cache ----

type cacheEntry struct {
	hit     *Fetched // FromCache set; nil for a failure
	err     error
	expires time.Time
	elem    *list.Element // in fetchCache.order
}

// fetchCache maps an x5u URL (as received) to a chain or a failure. It is
// bounded: inserting into a full cache evicts the oldest insertion; expired
// entries are dropped when looked up, and all of them every sweepEvery.
type fetchCache struct {
	max   int
	gauge prometheus.Gauge

	mu        sync.RWMutex
	m         map[string]*cacheEntry
	order     *list.List // of string keys, oldest first
	lastSweep time.Time
}

func newFetchCache(max int, gauge prometheus.Gauge) *fetchCache {
	return &fetchCache{max: max, gauge: gauge, m: map[string]*cacheEntry{}, order: list.New()}
}

func (c *fetchCache) get(key string, now time.Time) *cacheEntry {
	c.mu.RLock()
	e := c.m[key]
	c.mu.RUnlock()
	if e == nil {
		return nil
	}
	if now.Before(e.expires) {
		return e
	}
	c.mu.Lock()
	if c.m[key] == e {
		c.remove(key, e)
		c.gauge.Set(float64(len(c.m)))
	}
	c.mu.Unlock()
	return nil
}

func (c *fetchCache) remove(key string, e *cacheEntry) {
	delete(c.m, key)
	c.order.Remove(e.elem)
}

func (c *fetchCache) put(key string, e *cacheEntry, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if old := c.m[key]; old != nil {
		c.remove(key, old)
	}
	if now.Sub(c.lastSweep) >= sweepEvery {
		c.lastSweep = now
		for k, old := range c.m {
			if !now.Before(old.expires) {
				c.remove(k, old)
			}
		}
	}
	for len(c.m) >= c.max {
		front := c.order.Front()
		k := front.Value.(string)
		c.remove(k, c.m[k])
	}
	e.elem = c.order.PushBack(key)
	c.m[key] = e
	c.gauge.Set(float64(len(c.m)))
}

func (c *fetchCache) len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.m)
}

// ---- circuit breaker ----

// breakers is a circuit breaker per host name: BreakerFailures consecutive
// failures open it for BreakerCooldown (fetches fail fast with
// ErrCircuitOpen); then it is half-open: one fetch (the probe) goes through
// while the others keep failing fast, and its outcome closes the circuit or
// opens it for another cooldown. Only hosts with failures are tracked, at
// most max of them.
type breakers struct {
	limit    int
	cooldown time.Duration
	max      int

	mu    sync.Mutex
	hosts map[string]*hostState
}

type hostState struct {
	fails     int
	openUntil time.Time
	probing   bool
}

// allow says whether a fetch from host may go out; probe is true for the
// one fetch let through a half-open circuit, which must be reported.
func (b *breakers) allow(host string, now time.Time) (probe bool, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	h := b.hosts[host]
	if h == nil || h.fails < b.limit {
		return false, nil // closed
	}
	if now.Before(h.openUntil) {
		return false, fmt.Errorf("host %s: %d consecutive failures, open until %s", host, h.fails, h.openUntil.UTC().Format(time.RFC3339))
	}
	if h.probing {
		return false, fmt.Errorf("host %s: half-open, a probe is in flight", host)
	}
	h.probing = true
	return true, nil
}

// report records the outcome of a fetch from host (probe: as allow said).
func (b *breakers) report(host string, out outcome, probe bool, now time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	h := b.hosts[host]
	if h != nil && probe {
		h.probing = false
	}
	switch out {
	case hostOK:
		delete(b.hosts, host)
	case hostNeutral:
	case hostFailed:
		if h == nil {
			if len(b.hosts) >= b.max {
				b.sweep(now)
			}
			if len(b.hosts) >= b.max {
				return // cannot track more hosts: fail open for this one
			}
			h = &hostState{}
			b.hosts[host] = h
		}
		h.fails++
		if h.fails >= b.limit {
			h.openUntil = now.Add(b.cooldown)
		}
	}
}

// sweep drops hosts whose circuit is closed or whose cooldown is over.
func (b *breakers) sweep(now time.Time) {
	for k, h := range b.hosts {
		if h.fails < b.limit || (!now.Before(h.openUntil) && !h.probing) {
			delete(b.hosts, k)
		}
	}
}
