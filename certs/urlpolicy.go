package certs

import (
	"fmt"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Defaults of FetchPolicy: a zero field means its default.
const (
	DefaultFetchTimeout    = 2 * time.Second
	DefaultFetchMaxBody    = 64 << 10
	DefaultCacheMin        = 5 * time.Minute
	DefaultCacheMax        = 24 * time.Hour
	DefaultNegativeTTL     = 10 * time.Second
	DefaultBreakerFailures = 5
	DefaultBreakerCooldown = 30 * time.Second
	DefaultCacheEntries    = 10000
	DefaultMaxInFlight     = 64
)

// DefaultFetchPorts are the ports an x5u URL may name when Ports is empty.
var DefaultFetchPorts = []int{443, 8443}

// maxURLLen bounds an x5u URL (it arrives in a SIP header).
const maxURLLen = 2048

// FetchPolicy says which x5u URLs may be fetched and how (SHAKEN STI-VS
// checks 7–9, and the SSRF guard: an x5u is chosen by whoever sent the
// INVITE). Zero fields take the defaults above; negative values are refused
// by Validate.
type FetchPolicy struct {
	AllowHTTP  bool  // default false: https only
	Ports      []int // default {443, 8443}; an URL without a port means 443 (https) or 80 (http), which must be listed
	AllowQuery bool  // default false: no query; userinfo and fragment are always refused
	// AllowHosts: exact host names (or IP literals) or "*.suffix" (any
	// depth of subdomain of suffix, not suffix itself); empty = any host.
	AllowHosts []string
	// DenyHosts: same syntax; checked first.
	DenyHosts []string
	// AllowAddrs: special-purpose address ranges that may be connected to
	// anyway (e.g. 127.0.0.0/8 in tests and labs). Public addresses are
	// always allowed.
	AllowAddrs []netip.Prefix
	// Timeout bounds one fetch: DNS, connect, TLS, headers and body.
	Timeout time.Duration // default 2s
	MaxBody int64         // default 64 KiB
	// CacheMin and CacheMax bound the lifetime of a cached chain, taken
	// from Cache-Control max-age, else Expires; with neither, or with
	// no-store / no-cache, it is CacheMin. Never past the leaf's notAfter.
	CacheMin, CacheMax time.Duration // defaults 5m / 24h
	NegativeTTL        time.Duration // failures are cached this long; default 10s
	BreakerFailures    int           // consecutive failures of a host that open its circuit; default 5
	BreakerCooldown    time.Duration // how long an open circuit fails fast; default 30s
	CacheEntries       int           // bound of the cache (chains and failures); default 10,000
	MaxInFlight        int           // network fetches at once; more fail fast; default 64
}

// withDefaults fills the zero fields.
func (p FetchPolicy) withDefaults() FetchPolicy {
	if len(p.Ports) == 0 {
		p.Ports = DefaultFetchPorts
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&p.Timeout, DefaultFetchTimeout)
	def(&p.CacheMin, DefaultCacheMin)
	def(&p.CacheMax, DefaultCacheMax)
	def(&p.NegativeTTL, DefaultNegativeTTL)
	def(&p.BreakerCooldown, DefaultBreakerCooldown)
	if p.MaxBody == 0 {
		p.MaxBody = DefaultFetchMaxBody
	}
	if p.BreakerFailures == 0 {
		p.BreakerFailures = DefaultBreakerFailures
	}
	if p.CacheEntries == 0 {
		p.CacheEntries = DefaultCacheEntries
	}
	if p.MaxInFlight == 0 {
		p.MaxInFlight = DefaultMaxInFlight
	}
	return p
}

// Validate checks the policy: ports 1..65535, well-formed host patterns and
// address prefixes, no negative value, CacheMin ≤ CacheMax (after defaults).
func (p FetchPolicy) Validate() error {
	_, err := p.compile()
	return err
}

// compiledPolicy is a defaulted, validated policy with normalised patterns.
type compiledPolicy struct {
	FetchPolicy
	allow, deny []hostPattern
}

type hostPattern struct {
	suffix   string // ".example.com" for "*.example.com"
	exact    string
	wildcard bool
}

func (h hostPattern) match(host string, isIP bool) bool {
	if h.wildcard {
		return !isIP && strings.HasSuffix(host, h.suffix)
	}
	return host == h.exact
}

func (p FetchPolicy) compile() (*compiledPolicy, error) {
	bad := func(format string, args ...any) (*compiledPolicy, error) {
		return nil, fmt.Errorf("certs: x5u fetch policy: "+format, args...)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"timeout", p.Timeout}, {"cache min", p.CacheMin}, {"cache max", p.CacheMax}, {"negative TTL", p.NegativeTTL}, {"breaker cooldown", p.BreakerCooldown}} {
		if d.v < 0 {
			return bad("negative %s %v", d.name, d.v)
		}
	}
	if p.MaxBody < 0 || p.BreakerFailures < 0 || p.CacheEntries < 0 || p.MaxInFlight < 0 {
		return bad("negative max body, breaker failures, cache entries or max in flight")
	}
	p = p.withDefaults()
	// Our own copies: the caller may reuse its slices.
	p.Ports = slices.Clone(p.Ports)
	p.AllowHosts = slices.Clone(p.AllowHosts)
	p.DenyHosts = slices.Clone(p.DenyHosts)
	p.AllowAddrs = slices.Clone(p.AllowAddrs)
	if p.CacheMin > p.CacheMax {
		return bad("cache min %v is above cache max %v", p.CacheMin, p.CacheMax)
	}
	for _, port := range p.Ports {
		if port < 1 || port > 65535 {
			return bad("port %d out of range", port)
		}
	}
	for _, a := range p.AllowAddrs {
		if !a.IsValid() {
			return bad("invalid allowed address prefix %v", a)
		}
	}
	c := &compiledPolicy{FetchPolicy: p}
	for _, l := range []struct {
		name string
		in   []string
		out  *[]hostPattern
	}{{"allowed", p.AllowHosts, &c.allow}, {"denied", p.DenyHosts, &c.deny}} {
		for _, s := range l.in {
			hp, err := parseHostPattern(s)
			if err != nil {
				return bad("%s host %q: %v", l.name, s, err)
			}
			*l.out = append(*l.out, hp)
		}
	}
	return c, nil
}

func parseHostPattern(s string) (hostPattern, error) {
	if rest, ok := strings.CutPrefix(s, "*."); ok {
		h, isIP, err := normaliseHost(rest)
		if err != nil {
			return hostPattern{}, err
		}
		if isIP {
			return hostPattern{}, fmt.Errorf("a wildcard over an IP address")
		}
		return hostPattern{wildcard: true, suffix: "." + h}, nil
	}
	h, _, err := normaliseHost(strings.TrimSuffix(strings.TrimPrefix(s, "["), "]"))
	if err != nil {
		return hostPattern{}, err
	}
	return hostPattern{exact: h}, nil
}

// CheckURL parses raw and checks it against the policy without any DNS
// lookup: absolute https (or http when AllowHTTP) URL with a host; no
// userinfo, no fragment, no query unless AllowQuery; port (explicit or the
// scheme's default) in Ports; host name ASCII letters, digits, '-' and '_'
// (IDNs only in their xn-- form), or an IP literal (IPv6 without zone;
// numeric host names that are not a plain dotted quad, like "0x7f.1" or
// "2130706433", are refused); not denied by DenyHosts, and allowed by
// AllowHosts when that is set.
//
// The URL returned is normalised: lower-case host without a trailing dot,
// canonical IP literal, default port dropped. Errors wrap ErrURLPolicy.
func (p FetchPolicy) CheckURL(raw string) (*url.URL, error) {
	c, err := p.compile()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrURLPolicy, err)
	}
	return c.checkURL(raw)
}

func (c *compiledPolicy) checkURL(raw string) (*url.URL, error) {
	refuse := func(format string, args ...any) (*url.URL, error) {
		return nil, fmt.Errorf("certs: x5u %s: %w: %s", quoteURL(raw), ErrURLPolicy, fmt.Sprintf(format, args...))
	}
	if raw == "" {
		return refuse("empty")
	}
	if len(raw) > maxURLLen {
		return refuse("longer than %d bytes", maxURLLen)
	}
	if strings.Contains(raw, "#") {
		return refuse("fragment")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return refuse("unparsable")
	}
	switch {
	case u.Scheme == "https":
	case u.Scheme == "http" && c.AllowHTTP:
	case u.Scheme == "http":
		return refuse("http not allowed (https only)")
	default:
		return refuse("scheme %q not allowed", u.Scheme)
	}
	if u.Opaque != "" || u.Host == "" {
		return refuse("no host")
	}
	if u.User != nil || strings.Contains(u.Host, "@") {
		return refuse("userinfo")
	}
	if (u.RawQuery != "" || u.ForceQuery) && !c.AllowQuery {
		return refuse("query")
	}
	port := 443
	if u.Scheme == "http" {
		port = 80
	}
	if ps := u.Port(); ps != "" {
		n, err := strconv.Atoi(ps)
		if err != nil || strconv.Itoa(n) != ps {
			return refuse("bad port %q", ps)
		}
		port = n
	} else if strings.HasSuffix(u.Host, ":") {
		return refuse("empty port")
	}
	if !slices.Contains(c.Ports, port) {
		return refuse("port %d not allowed", port)
	}
	host, isIP, err := normaliseHost(u.Hostname())
	if err != nil {
		return refuse("host: %v", err)
	}
	if strings.HasPrefix(u.Host, "[") != (isIP && strings.Contains(host, ":")) {
		return refuse("host: bad IP literal")
	}
	for _, d := range c.deny {
		if d.match(host, isIP) {
			return refuse("host %s denied", host)
		}
	}
	if len(c.allow) > 0 {
		ok := false
		for _, a := range c.allow {
			if a.match(host, isIP) {
				ok = true
				break
			}
		}
		if !ok {
			return refuse("host %s not in the allowed hosts", host)
		}
	}
	hp := host
	if strings.Contains(host, ":") {
		hp = "[" + host + "]"
	}
	if (u.Scheme == "https" && port != 443) || (u.Scheme == "http" && port != 80) {
		hp += ":" + strconv.Itoa(port)
	}
	u.Host = hp
	return u, nil
}

// normaliseHost lower-cases a host name and drops one trailing dot, or
// canonicalises an IP literal. It refuses non-ASCII (IDN in U-label form),
// characters outside letters, digits, '-', '_' and '.', empty or overlong
// labels, IPv6 zones, and numeric-looking names that are not a canonical
// dotted-quad IPv4 address.
func normaliseHost(h string) (host string, isIP bool, err error) {
	if h == "" {
		return "", false, fmt.Errorf("empty")
	}
	if strings.Contains(h, ":") {
		a, err := netip.ParseAddr(h)
		if err != nil || !a.Is6() {
			return "", false, fmt.Errorf("bad IPv6 literal")
		}
		if a.Zone() != "" {
			return "", false, fmt.Errorf("IPv6 zone not allowed")
		}
		return a.String(), true, nil
	}
	h = strings.TrimSuffix(h, ".")
	if h == "" || len(h) > 253 {
		return "", false, fmt.Errorf("bad length")
	}
	var b strings.Builder
	b.Grow(len(h))
	for i := 0; i < len(h); i++ {
		ch := h[i]
		switch {
		case ch >= 'A' && ch <= 'Z':
			ch += 'a' - 'A'
		case ch >= 'a' && ch <= 'z', ch >= '0' && ch <= '9', ch == '-', ch == '_', ch == '.':
		case ch >= 0x80:
			return "", false, fmt.Errorf("non-ASCII host name (use the xn-- form)")
		default:
			return "", false, fmt.Errorf("character %q not allowed", ch)
		}
		b.WriteByte(ch)
	}
	h = b.String()
	labels := strings.Split(h, ".")
	for _, l := range labels {
		if l == "" || len(l) > 63 {
			return "", false, fmt.Errorf("empty or overlong label")
		}
	}
	last := labels[len(labels)-1]
	if last[0] >= '0' && last[0] <= '9' {
		// WHATWG URL: a host whose last label is numeric is an IPv4
		// address. Only the canonical dotted quad is accepted, so that
		// "127.1", "0x7f.0.0.1" or "2130706433" cannot reach a resolver
		// that would read them as 127.0.0.1.
		a, err := netip.ParseAddr(h)
		if err != nil || !a.Is4() {
			return "", false, fmt.Errorf("numeric host name that is not a dotted-quad IPv4 address")
		}
		return a.String(), true, nil
	}
	return h, false, nil
}

// quoteURL is raw for an error message: quoted, without userinfo,
// truncated.
func quoteURL(raw string) string {
	if u, err := url.Parse(raw); err == nil {
		if u.User != nil {
			u.User = nil
			raw = u.String()
		}
	} else if strings.Contains(raw, "@") {
		raw = "(unparsable URL)"
	}
	if len(raw) > 256 {
		raw = raw[:256] + "..."
	}
	return strconv.Quote(raw)
}

// addrRange is a special-purpose address block (IANA IPv4/IPv6
// Special-Purpose Address Registries and related RFCs).
type addrRange struct {
	p    netip.Prefix
	name string
}

// deniedRanges are refused unless in AllowAddrs. Order matters only for the
// name in the error message (more specific first).
var deniedRanges = func() []addrRange {
	list := []struct{ p, name string }{
		{"0.0.0.0/8", "\"this network\""},
		{"10.0.0.0/8", "private-use"},
		{"100.64.0.0/10", "shared address space (CGNAT)"},
		{"127.0.0.0/8", "loopback"},
		{"169.254.0.0/16", "link-local"},
		{"172.16.0.0/12", "private-use"},
		{"192.0.0.0/24", "IETF protocol assignments"},
		{"192.0.2.0/24", "documentation (TEST-NET-1)"},
		{"192.88.99.0/24", "6to4 relay anycast"},
		{"192.168.0.0/16", "private-use"},
		{"198.18.0.0/15", "benchmarking"},
		{"198.51.100.0/24", "documentation (TEST-NET-2)"},
		{"203.0.113.0/24", "documentation (TEST-NET-3)"},
		{"224.0.0.0/4", "multicast"},
		{"255.255.255.255/32", "limited broadcast"},
		{"240.0.0.0/4", "reserved"},
		{"::/128", "unspecified"},
		{"::1/128", "loopback"},
		{"::/96", "IPv4-compatible (deprecated)"},
		{"::ffff:0:0:0/96", "IPv4-translated"},
		{"64:ff9b::/96", "NAT64 well-known prefix"},
		{"64:ff9b:1::/48", "NAT64 local-use prefix"},
		{"100::/64", "discard-only"},
		{"2001::/32", "Teredo"},
		{"2001:2::/48", "benchmarking"},
		{"2001:10::/28", "ORCHID"},
		{"2001:20::/28", "ORCHIDv2"},
		{"2001:db8::/32", "documentation"},
		{"2002::/16", "6to4"},
		{"3fff::/20", "documentation"},
		{"5f00::/16", "SRv6 SIDs"},
		{"fc00::/7", "unique local (ULA)"},
		{"fe80::/10", "link-local"},
		{"fec0::/10", "site-local (deprecated)"},
		{"ff00::/8", "multicast"},
	}
	out := make([]addrRange, len(list))
	for i, r := range list {
		out[i] = addrRange{netip.MustParsePrefix(r.p), r.name}
	}
	return out
}()

// CheckAddr says whether a resolved address may be connected to: it is
// refused (ErrAddressDenied) when it lies in a special-purpose range —
// loopback, private, ULA, link-local, CGNAT, unspecified, multicast,
// broadcast, documentation, benchmarking, 0/8, 240/4, NAT64, 6to4, Teredo…
// — including the IPv4-mapped IPv6 forms of the IPv4 ones, unless it is in
// AllowAddrs. Public addresses are allowed.
func (p FetchPolicy) CheckAddr(a netip.Addr) error {
	return checkAddr(a, p.AllowAddrs)
}

func checkAddr(a netip.Addr, allow []netip.Prefix) error {
	if !a.IsValid() {
		return fmt.Errorf("%w: invalid address", ErrAddressDenied)
	}
	orig := a
	a = a.WithZone("").Unmap()
	for _, p := range allow {
		if p.Contains(a) || p.Contains(orig.WithZone("")) {
			return nil
		}
	}
	for _, r := range deniedRanges {
		if r.p.Contains(a) {
			return fmt.Errorf("%w: %s is %s (%s)", ErrAddressDenied, orig, r.name, r.p)
		}
	}
	return nil
}
