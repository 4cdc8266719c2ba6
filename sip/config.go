package sip

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"
)

// Config is the `sip:` section of stirgate.yaml.
//
// Validate errors start with the YAML key path of the offending value so that
// the loader can point at file and line.
type Config struct {
	// UserAgent names stirgate in the Server header of the responses it
	// makes itself and the User-Agent header of the requests it originates
	// (CANCEL, ACK and BYE for a late 2xx). A change needs a restart.
	UserAgent string `yaml:"user_agent"`
	// MaxMessageSize: a larger message is dropped (UDP) or closes its
	// connection (TCP), counted as dropped oversize.
	MaxMessageSize int `yaml:"max_message_size"`
	// InviteTimeout is timer C (RFC 3261 16.6 step 11): started when an
	// INVITE is forwarded, restarted by each provisional response above 100
	// (16.7 step 2); when it fires the caller gets 408 and the callee a
	// CANCEL (16.8).
	InviteTimeout time.Duration `yaml:"invite_timeout"`
	// TransactionLinger is how long a completed transaction stays in memory
	// to absorb retransmissions (RFC 3261 timers D, J and RFC 6026 L, M,
	// which are 32 s by the book). Kamailio's tm wait timer is 5 s for the
	// same job: at 1,000 calls/s the book value keeps ~100,000 finished
	// transactions, a few hundred MB. Process-wide: a change needs a restart.
	TransactionLinger time.Duration `yaml:"transaction_linger"`
	// Overload is the admission control in front of the pipeline.
	Overload OverloadConfig `yaml:"overload"`
	// MaxAnnouncements caps the announcements the node plays at once;
	// beyond it a rejected caller gets the plain rejection (counted in
	// stirgate_announcements_refused_total{reason="cap"}).
	MaxAnnouncements int    `yaml:"max_announcements"`
	Realms           Realms `yaml:"realms"`
}

// OverloadConfig is admission control (overload.go): new INVITEs beyond
// what the edge can serve within its latency budget get a 503 with
// Retry-After at once instead of waiting in a queue. A reload applies a
// change.
type OverloadConfig struct {
	// Mode: on (default) or off.
	Mode string `yaml:"mode"`
	// TargetWait is the queue wait the edge steers new INVITEs' admission
	// by: an initial INVITE's from its arrival in the kernel to the start
	// of its pipeline, and any UDP datagram's in the socket. While
	// overloaded, an INVITE that waited twice as long is answered 503 when
	// its turn comes.
	TargetWait time.Duration `yaml:"target_wait"`
	// Interval is how often admission is adjusted: each interval's
	// smallest wait above TargetWait admits fewer.
	Interval time.Duration `yaml:"interval"`
	// RetryAfter is the Retry-After of the 503, ±50% at random so that
	// the refused callers do not come back together.
	RetryAfter time.Duration `yaml:"retry_after"`
	// ExemptNumbers are never refused for overload: emergency numbers,
	// matched against the user part of the Request-URI and the To URI
	// (digits and an optional leading +, compared as written).
	ExemptNumbers []string `yaml:"exempt_numbers"`
}

// Realms are the two sides of the edge.
type Realms struct {
	Inside  RealmConfig `yaml:"inside"`
	Outside RealmConfig `yaml:"outside"`
}

// RealmConfig is one side of the edge: its sockets, its peer and its ACL.
type RealmConfig struct {
	Listen  []ListenConfig `yaml:"listen"`
	NextHop string         `yaml:"next_hop"`
	Trusted []string       `yaml:"trusted"`
	UDP     UDPConfig      `yaml:"udp"`
	Media   MediaConfig    `yaml:"media"`
	// TLS is how this realm's next hop is reached over TLS.
	TLS TLSClientConfig `yaml:"tls"`
}

// MediaConfig is where the realm's announcements (policy announce:) are
// played from: RTP early media to callers whose INVITE arrived in this
// realm.
type MediaConfig struct {
	// Addr is the IP address RTP is sent from. Default: the address of the
	// realm's first listener; with a wildcard listener, announcements need
	// it set (until then callers get the plain rejection).
	Addr string `yaml:"addr"`
	// Advertise is the address the SDP answer names (c=), when callers
	// reach Addr through NAT. Default: Addr.
	Advertise string `yaml:"advertise"`
	// Ports is the UDP port range of the streams, "low-high", one port per
	// stream; a port is used again only after its stream ended.
	Ports string `yaml:"ports"`
	// SymmetricRTP sends to where the caller's own RTP comes from, once it
	// comes, instead of the offer's c=/m= address: for callers behind NAT
	// whose SDP names a private address.
	SymmetricRTP bool `yaml:"symmetric_rtp"`
}

// ListenConfig is one listening socket.
type ListenConfig struct {
	Transport string `yaml:"transport"` // udp | tcp | tls
	Addr      string `yaml:"addr"`      // ip:port to bind
	// Advertise is the host:port written in Via and Record-Route; needed when
	// Addr is a wildcard address. Defaults to Addr.
	Advertise string `yaml:"advertise"`
	// TLS (transport: tls): the server certificate chain and its key (PEM;
	// the key readable by its owner only), ClientCA the CA bundle whose
	// client certificates are required (mutual TLS: a peer without a valid
	// one cannot send a request), MinVersion "1.2" (default) or "1.3".
	// Files are re-read on reload; open connections keep their session.
	Cert       string `yaml:"cert"`
	Key        string `yaml:"key"`
	ClientCA   string `yaml:"client_ca"`
	MinVersion string `yaml:"min_version"`
	// IdleTimeout closes an accepted TCP or TLS connection that brought
	// nothing (no message, no CRLF keep-alive) for this long (default
	// 120s, Kamailio's tcp_connection_lifetime; a PBX keeping its
	// connection pings more often). Connections stirgate opens (to a next
	// hop) last until the peer closes them: sipgo v1.7.3 takes a read
	// timeout only on transports handed over whole, which lose the
	// realm's logger.
	IdleTimeout time.Duration `yaml:"idle_timeout"`
}

// DefaultIdleTimeout is a tcp or tls listener's idle_timeout when absent.
const DefaultIdleTimeout = 120 * time.Second

// TLSClientConfig is how a realm connects to a next hop over TLS
// (next_hop ...;transport=tls): the CA bundle that verifies the peer (the
// system roots when empty), the name its certificate must carry (default:
// the next hop's host), and a client certificate and key for peers that
// ask for one. The peer is always verified.
type TLSClientConfig struct {
	CA         string `yaml:"ca"`
	ServerName string `yaml:"server_name"`
	Cert       string `yaml:"cert"`
	Key        string `yaml:"key"`
}

// UDPConfig is the realm's deliberate choice about large UDP messages.
type UDPConfig struct {
	MaxSize  int    `yaml:"max_size"`
	Oversize string `yaml:"oversize"` // tcp | reject
	// SocketBuffer is SO_RCVBUF/SO_SNDBUF of the realm's UDP sockets, in
	// bytes. A burst larger than the receive buffer is dropped by the
	// kernel before stirgate sees it (retransmissions, failed calls). The
	// kernel caps it at net.core.rmem_max / wmem_max; Kamailio's maxbuffer
	// plays the same role. A reload applies a change to the open sockets.
	SocketBuffer int `yaml:"socket_buffer"`
}

// Defaults used when a key is absent.
const (
	DefaultMaxMessageSize = 16384
	DefaultInviteTimeout  = 180 * time.Second
	DefaultLinger         = 5 * time.Second
	maxLinger             = 32 * time.Second
	DefaultUDPMaxSize     = 4096
	DefaultTargetWait     = 10 * time.Millisecond
	DefaultOverloadEvery  = 100 * time.Millisecond
	DefaultRetryAfter     = 10 * time.Second
	DefaultSocketBuffer   = 4 << 20
	DefaultAnnouncements  = 500
	maxAnnouncements      = 10000
	minUDPMaxSize         = 1300
	maxUDPMaxSize         = 65000
)

// DefaultMediaPorts are the inside and outside realms' RTP port ranges.
var DefaultMediaPorts = [2]string{"20000-20999", "21000-21999"}

// ApplyDefaults fills absent values.
// tlsFiles are pointers to every file name of the TLS settings: each tls
// listener's cert, key and client_ca, each realm's tls ca, cert and key.
func (c *Config) tlsFiles() []*string {
	var out []*string
	for _, r := range []*RealmConfig{&c.Realms.Inside, &c.Realms.Outside} {
		for i := range r.Listen {
			l := &r.Listen[i]
			out = append(out, &l.Cert, &l.Key, &l.ClientCA)
		}
		out = append(out, &r.TLS.CA, &r.TLS.Cert, &r.TLS.Key)
	}
	return out
}

// WithFilesResolved is c with every TLS file name passed through resolve
// (relative names against the configuration file's directory); c's
// listener slices are not changed.
func (c Config) WithFilesResolved(resolve func(string) string) Config {
	c.Realms.Inside.Listen = slices.Clone(c.Realms.Inside.Listen)
	c.Realms.Outside.Listen = slices.Clone(c.Realms.Outside.Listen)
	for _, f := range c.tlsFiles() {
		*f = resolve(*f)
	}
	return c
}

// TLSFiles are the TLS file names c sets (a reload watches them).
func (c Config) TLSFiles() []string {
	var out []string
	for _, f := range c.tlsFiles() {
		if *f != "" {
			out = append(out, *f)
		}
	}
	return out
}

func (c *Config) ApplyDefaults() {
	if c.UserAgent == "" {
		c.UserAgent = "stirgate"
	}
	if c.MaxMessageSize == 0 {
		c.MaxMessageSize = DefaultMaxMessageSize
	}
	if c.InviteTimeout == 0 {
		c.InviteTimeout = DefaultInviteTimeout
	}
	if c.TransactionLinger == 0 {
		c.TransactionLinger = DefaultLinger
	}
	o := &c.Overload
	if o.Mode == "" {
		o.Mode = "on"
	}
	if o.TargetWait == 0 {
		o.TargetWait = DefaultTargetWait
	}
	if o.Interval == 0 {
		o.Interval = DefaultOverloadEvery
	}
	if o.RetryAfter == 0 {
		o.RetryAfter = DefaultRetryAfter
	}
	if o.ExemptNumbers == nil {
		o.ExemptNumbers = DefaultExemptNumbers()
	}
	if c.MaxAnnouncements == 0 {
		c.MaxAnnouncements = DefaultAnnouncements
	}
	for i, r := range []*RealmConfig{&c.Realms.Inside, &c.Realms.Outside} {
		for j := range r.Listen {
			if l := &r.Listen[j]; l.Transport != "udp" && l.IdleTimeout == 0 {
				l.IdleTimeout = DefaultIdleTimeout
			}
		}
		if r.Media.Ports == "" {
			r.Media.Ports = DefaultMediaPorts[i]
		}
		if r.Media.Addr == "" && len(r.Listen) > 0 {
			if ap, err := netip.ParseAddrPort(r.Listen[0].Addr); err == nil && !ap.Addr().IsUnspecified() {
				r.Media.Addr = ap.Addr().String()
			}
		}
		if r.UDP.MaxSize == 0 {
			r.UDP.MaxSize = DefaultUDPMaxSize
		}
		if r.UDP.Oversize == "" {
			r.UDP.Oversize = "tcp"
		}
		if r.UDP.SocketBuffer == 0 {
			r.UDP.SocketBuffer = DefaultSocketBuffer
		}
	}
}

// Validate checks the section; it reports every problem it finds.
func (c *Config) Validate() error {
	var errs []error
	// It becomes a header value (Server, User-Agent) as it is.
	if _, err := safeHeader("Server", c.UserAgent); err != nil {
		errs = append(errs, errors.New("user_agent: must not contain control characters (CR, LF, NUL...)"))
	}
	if c.MaxMessageSize < 2048 || c.MaxMessageSize > 65535 {
		errs = append(errs, fmt.Errorf("max_message_size: %d out of range 2048..65535", c.MaxMessageSize))
	}
	if c.InviteTimeout < time.Second {
		errs = append(errs, fmt.Errorf("invite_timeout: %s is below 1s", c.InviteTimeout))
	}
	if c.TransactionLinger < time.Second || c.TransactionLinger > maxLinger {
		errs = append(errs, fmt.Errorf("transaction_linger: %s out of range 1s..32s", c.TransactionLinger))
	}
	if err := c.Overload.validate(); err != nil {
		errs = append(errs, prefixErrors("overload.", err)...)
	}
	if c.MaxAnnouncements < 1 || c.MaxAnnouncements > maxAnnouncements {
		errs = append(errs, fmt.Errorf("max_announcements: %d out of range 1..%d", c.MaxAnnouncements, maxAnnouncements))
	}
	for _, r := range []struct {
		name string
		cfg  *RealmConfig
	}{{"inside", &c.Realms.Inside}, {"outside", &c.Realms.Outside}} {
		if err := r.cfg.Validate(); err != nil {
			errs = append(errs, prefixErrors("realms."+r.name+".", err)...)
		}
	}
	return errors.Join(errs...)
}

// DefaultExemptNumbers are emergency numbers of North America (911),
// Europe and GSM (112), the UK (999), Australia (000), and 110 and 119
// (police and fire/ambulance in several Asian countries).
func DefaultExemptNumbers() []string { return []string{"911", "112", "999", "000", "110", "119"} }

func (o *OverloadConfig) validate() error {
	var errs []error
	if o.Mode != "on" && o.Mode != "off" {
		errs = append(errs, fmt.Errorf("mode: %q is not one of on, off", o.Mode))
	}
	if o.TargetWait < time.Millisecond || o.TargetWait > 10*time.Second {
		errs = append(errs, fmt.Errorf("target_wait: %s out of range 1ms..10s", o.TargetWait))
	}
	if o.Interval < 10*time.Millisecond || o.Interval > 10*time.Second {
		errs = append(errs, fmt.Errorf("interval: %s out of range 10ms..10s", o.Interval))
	}
	if o.RetryAfter < time.Second || o.RetryAfter > time.Hour {
		errs = append(errs, fmt.Errorf("retry_after: %s out of range 1s..1h", o.RetryAfter))
	}
	for i, n := range o.ExemptNumbers {
		if d := strings.TrimPrefix(n, "+"); d == "" || strings.Trim(d, "0123456789") != "" {
			errs = append(errs, fmt.Errorf("exempt_numbers[%d]: %q is not a number (digits, optional leading +)", i, n))
		}
	}
	return errors.Join(errs...)
}

// Validate checks one realm.
func (r *RealmConfig) Validate() error {
	var errs []error
	if len(r.Listen) == 0 {
		errs = append(errs, errors.New("listen: at least one listener is required"))
	}
	hasTCP := false
	for i, l := range r.Listen {
		if err := l.Validate(); err != nil {
			errs = append(errs, prefixErrors(fmt.Sprintf("listen[%d].", i), err)...)
		}
		if l.Transport == "tcp" {
			hasTCP = true
		}
	}
	if r.NextHop == "" {
		errs = append(errs, errors.New("next_hop: required (sip:host:port;transport=udp|tcp|tls)"))
	} else if nh, err := ParseNextHop(r.NextHop); err != nil {
		errs = append(errs, fmt.Errorf("next_hop: %w", err))
	} else if nh.Transport == "TLS" && !slices.ContainsFunc(r.Listen, func(l ListenConfig) bool { return l.Transport == "tls" }) {
		// Our Via and Record-Route on that side name a TLS listener.
		errs = append(errs, errors.New("next_hop: transport=tls needs a tls listener in this realm"))
	}
	if (r.TLS.Cert == "") != (r.TLS.Key == "") {
		errs = append(errs, errors.New("tls.cert: a client certificate needs both cert and key"))
	}
	if len(r.Trusted) == 0 {
		errs = append(errs, errors.New("trusted: at least one network is required (requests from other sources get 403)"))
	}
	for i, t := range r.Trusted {
		if _, err := parsePrefix(t); err != nil {
			errs = append(errs, fmt.Errorf("trusted[%d]: %w", i, err))
		}
	}
	if r.UDP.MaxSize < minUDPMaxSize || r.UDP.MaxSize > maxUDPMaxSize {
		errs = append(errs, fmt.Errorf("udp.max_size: %d out of range %d..%d", r.UDP.MaxSize, minUDPMaxSize, maxUDPMaxSize))
	}
	if r.UDP.SocketBuffer < 64<<10 || r.UDP.SocketBuffer > 256<<20 {
		errs = append(errs, fmt.Errorf("udp.socket_buffer: %d out of range 65536..268435456 bytes", r.UDP.SocketBuffer))
	}
	if err := r.Media.validate(); err != nil {
		errs = append(errs, prefixErrors("media.", err)...)
	}
	switch r.UDP.Oversize {
	case "reject":
	case "tcp":
		if !hasTCP {
			errs = append(errs, errors.New("udp.oversize: \"tcp\" needs a tcp listener in this realm"))
		}
	default:
		errs = append(errs, fmt.Errorf("udp.oversize: %q is not one of tcp, reject", r.UDP.Oversize))
	}
	return errors.Join(errs...)
}

func (m *MediaConfig) validate() error {
	var errs []error
	for _, f := range []struct{ key, v string }{{"addr", m.Addr}, {"advertise", m.Advertise}} {
		if f.v == "" {
			continue
		}
		if a, err := netip.ParseAddr(f.v); err != nil || a.IsUnspecified() || a.IsMulticast() {
			errs = append(errs, fmt.Errorf("%s: %q is not a unicast IP address", f.key, f.v))
		}
	}
	if _, _, err := m.PortRange(); err != nil {
		errs = append(errs, fmt.Errorf("ports: %w", err))
	}
	return errors.Join(errs...)
}

// PortRange parses Ports.
func (m *MediaConfig) PortRange() (lo, hi uint16, err error) {
	a, b, ok := strings.Cut(m.Ports, "-")
	l, err1 := strconv.ParseUint(strings.TrimSpace(a), 10, 16)
	h, err2 := strconv.ParseUint(strings.TrimSpace(b), 10, 16)
	if !ok || err1 != nil || err2 != nil || l < 1024 || h < l {
		return 0, 0, fmt.Errorf("%q is not a port range low-high (1024 <= low <= high <= 65535)", m.Ports)
	}
	return uint16(l), uint16(h), nil
}

// tlsVersion is a min_version value as a crypto/tls version.
func tlsVersion(v string) (uint16, error) {
	switch v {
	case "", "1.2":
		return tls.VersionTLS12, nil
	case "1.3":
		return tls.VersionTLS13, nil
	}
	return 0, fmt.Errorf("%q is not one of 1.2, 1.3", v)
}

// Validate checks one listener.
func (l *ListenConfig) Validate() error {
	var errs []error
	switch { // 0: the default (ApplyDefaults)
	case l.IdleTimeout == 0:
	case l.Transport == "udp":
		errs = append(errs, errors.New("idle_timeout: udp has no connections: only tcp and tls listeners have one"))
	case l.IdleTimeout < time.Second || l.IdleTimeout > 24*time.Hour:
		errs = append(errs, fmt.Errorf("idle_timeout: %s out of range 1s..24h", l.IdleTimeout))
	}
	switch l.Transport {
	case "udp", "tcp":
		for _, f := range []struct{ key, v string }{{"cert", l.Cert}, {"key", l.Key}, {"client_ca", l.ClientCA}, {"min_version", l.MinVersion}} {
			if f.v != "" {
				errs = append(errs, fmt.Errorf("%s: only a tls listener has one", f.key))
			}
		}
	case "tls":
		if l.Cert == "" || l.Key == "" {
			errs = append(errs, errors.New("cert: a tls listener needs cert and key"))
		}
		if _, err := tlsVersion(l.MinVersion); err != nil {
			errs = append(errs, fmt.Errorf("min_version: %w", err))
		}
	default:
		errs = append(errs, fmt.Errorf("transport: %q is not one of udp, tcp, tls", l.Transport))
	}
	ap, err := netip.ParseAddrPort(l.Addr)
	if err != nil {
		errs = append(errs, fmt.Errorf("addr: %q is not ip:port: %w", l.Addr, err))
	} else if ap.Addr().IsUnspecified() && l.Advertise == "" {
		errs = append(errs, errors.New("advertise: required when addr is a wildcard address"))
	}
	if l.Advertise != "" {
		if _, _, err := sip.ParseAddr(l.Advertise); err != nil || strings.ContainsAny(l.Advertise, "\r\n;,<> ") {
			errs = append(errs, fmt.Errorf("advertise: %q is not host:port", l.Advertise))
		}
	}
	return errors.Join(errs...)
}

// NextHop is a parsed next_hop URI.
type NextHop struct {
	Host      string
	Port      int
	Transport string // "UDP", "TCP" or "TLS"
}

// Addr is host:port.
func (n NextHop) Addr() string { return joinHostPort(n.Host, n.Port) }

// String is host:port;transport=udp|tcp|tls (as recorded in call records).
func (n NextHop) String() string { return n.Addr() + ";transport=" + strings.ToLower(n.Transport) }

// ParseNextHop reads "sip:host[:port][;transport=udp|tcp|tls]" (5061 is
// the default port of tls).
func ParseNextHop(s string) (NextHop, error) {
	var u sip.Uri
	if err := sip.ParseUri(s, &u); err != nil {
		return NextHop{}, fmt.Errorf("%q is not a SIP URI: %w", s, err)
	}
	if u.Scheme != "sip" {
		return NextHop{}, fmt.Errorf("%q: scheme must be sip", s)
	}
	if u.User != "" || u.Host == "" {
		return NextHop{}, fmt.Errorf("%q: want sip:host:port without user part", s)
	}
	n := NextHop{Host: u.Host, Port: u.Port, Transport: "UDP"}
	if t, ok := u.UriParams.Get("transport"); ok {
		switch strings.ToLower(t) {
		case "udp":
		case "tcp":
			n.Transport = "TCP"
		case "tls":
			n.Transport = "TLS"
		default:
			return NextHop{}, fmt.Errorf("%q: transport must be udp, tcp or tls", s)
		}
	}
	if n.Port == 0 {
		n.Port = 5060
		if n.Transport == "TLS" {
			n.Port = 5061
		}
	}
	return n, nil
}

func parsePrefix(s string) (netip.Prefix, error) {
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not an address or CIDR", s)
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// prefixErrors puts a key path in front of every joined error.
func prefixErrors(prefix string, err error) []error {
	var out []error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range j.Unwrap() {
			out = append(out, prefixErrors(prefix, e)...)
		}
		return out
	}
	return []error{fmt.Errorf("%s%w", prefix, err)}
}
