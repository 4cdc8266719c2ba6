package sip

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/stirgate/stirgate/sip/media"
)

// Realm indexes.
const (
	inside  = 0
	outside = 1
)

// Chains are the call pipelines of one configuration generation, by the realm
// the call arrives in.
type Chains struct {
	Inside, Outside Chain
}

// Options are the edge's collaborators.
type Options struct {
	Logger   *slog.Logger
	Registry prometheus.Registerer
	// Records receives one record per finished initial INVITE (may be nil).
	Records func(CallRecord)
	// Ended is told when the dialog of an answered call ends (may be nil).
	Ended func(DialogEnd)
}

// Edge is the SIP side of stirgate: two realms, their sockets and the proxy
// core between them. It is the only writer of SIP messages.
type Edge struct {
	log     *slog.Logger
	m       *metrics
	records func(CallRecord)
	ended   func(DialogEnd)
	realms  [2]*realm
	ours    map[string]bool // host:port of every listener, for Route/Via/R-URI checks
	static  staticConfig

	gen      atomic.Pointer[generation]
	draining atomic.Bool
	inflight atomic.Int64
	dialogs  *dialogs
	acks     *ackFilter
	parser   *sip.Parser // shared with sipgo; safe for concurrent use
	serving  atomic.Bool
	closing  sync.Once

	// Server and User-Agent headers (sip.user_agent) for the responses and
	// requests stirgate makes itself: built once, shared, never changed.
	serverHdr, uaHdr sip.Header
	// cancelWait is how long a CANCELled INVITE waits for its final
	// response before it is given up (RFC 3261 9.1: 64*T1).
	cancelWait time.Duration

	// Overload control (overload.go): the controller, when each new
	// UDP INVITE arrived (by Call-ID, until its pipeline starts), the
	// INVITEs a reader admitted (their retransmissions pass) and those it
	// refused (their retransmissions get the 503 again).
	adm                         *admission
	arrivals, admitted, refused *callSet

	// udpTx is the transaction table of the UDP sockets (udptx.go);
	// stopped ends its sweeper at Close.
	udpTx   *udpTxLayer
	stopped chan struct{}
	// request starts the client transaction of a forwarded request
	// (startClientTx), send sends an ACK (sendRequest); unit tests play
	// the callee in their place.
	request func(ctx context.Context, out *realm, req *sip.Request) (clientTx, error)
	send    func(out *realm, req *sip.Request) error

	// Announcements (announce.go): the one scheduler that paces every
	// stream, how many play now, and the media port ranges in use.
	media      *media.Scheduler
	announcing atomic.Int64
	portsMu    sync.Mutex
	ports      map[string]*media.Ports

	// tlsPeers is the client certificate of each open TLS connection,
	// by remote address (tls.go).
	tlsPeers sync.Map
}

// staticConfig is what a reload cannot change (sockets, parser).
type staticConfig struct {
	userAgent      string
	maxMessageSize int
	linger         time.Duration
	listen         [2][]ListenConfig
	dialTLS        [2]TLSClientConfig // its CA and server name; the client certificate follows reloads
}

// sameSocket reports whether two listeners are the same socket: a reload
// applies new TLS files to it, a new address, transport or idle timeout
// needs a restart.
func sameSocket(a, b ListenConfig) bool {
	return a.Transport == b.Transport && a.Addr == b.Addr && a.Advertise == b.Advertise && a.IdleTimeout == b.IdleTimeout
}

// generation is what a reload swaps atomically.
type generation struct {
	inviteTimeout    time.Duration
	maxAnnouncements int
	overload         overloadPolicy
	realms           [2]realmPolicy
	chains           [2]Chain
}

// overloadPolicy is sip.overload as a generation uses it.
type overloadPolicy struct {
	on                           bool
	target, interval, retryAfter time.Duration
	exempt                       map[string]bool
}

type realmPolicy struct {
	trusted      []netip.Prefix
	nextHop      NextHop
	nextHopText  string // nextHop.String(), made once for the call records
	udpMax       int
	oversizeTCP  bool
	socketBuffer int         // SO_RCVBUF/SO_SNDBUF of the UDP sockets; Install applies a change
	media        *mediaRealm // nil: announcements are not played in this realm
	// tlsServer is the configuration of each tls listener, by its index in
	// listen (nil for the others); clientCert the certificate the realm
	// shows a TLS next hop that asks for one.
	tlsServer  []*tls.Config
	clientCert *tls.Certificate
}

func (p *realmPolicy) trusts(a netip.Addr) bool {
	a = a.Unmap()
	for _, pr := range p.trusted {
		if pr.Contains(a) {
			return true
		}
	}
	return false
}

type realm struct {
	idx    int
	name   string
	dir    Direction
	ua     *sipgo.UserAgent
	srv    *sipgo.Server
	client *sipgo.Client
	// udp are the UDP sockets, each read by its own reader, which notes
	// each datagram's kernel receive time (stampedConn).
	udp []*stampedConn
	tcp []*idleListener
	tls []net.Listener
	// first listener per transport: where our outgoing requests leave from
	// and what Via/Record-Route advertise.
	ep map[string]endpoint // "UDP" | "TCP" | "TLS"
}

type endpoint struct {
	host  string
	port  int
	laddr sip.Addr // bound address (UDP requests leave from it)
}

var setGlobalsOnce sync.Once

// acceptedLinger is how long INVITE transactions outlive their 2xx.
const acceptedLinger = time.Second

// setSipgoGlobals sets sipgo's process-wide knobs once, before any UA exists.
func (e *Edge) setSipgoGlobals() {
	setGlobalsOnce.Do(func() {
		sip.SetDefaultLogger(e.sipgoLogger(""))
		// Read whole datagrams up to the IP limit so an oversized one is
		// seen (and dropped by size) instead of truncated into garbage.
		sip.TransportBufferReadSize = 65535
		// sipgo refuses UDP sends above UDPMTUSize-200. Each realm enforces
		// its own udp.max_size before sending; responses are relayed as big
		// as they came.
		sip.UDPMTUSize = 65535 + 200
		// Completed transactions linger this long, not 32 s (see
		// Config.TransactionLinger). Timer K and I are T4 (5 s) already.
		sip.Timer_D = e.static.linger
		sip.Timer_J = e.static.linger
		// After a 2xx (RFC 6026 Accepted) the proxy core does the INVITE
		// transactions' remaining job: a retransmitted 2xx is relayed as a
		// stray response, a retransmitted INVITE is dropped
		// (Edge.answeredBefore). Each holds the INVITE and its responses, the
		// largest messages of a call: free them soon.
		sip.Timer_L = min(e.static.linger, acceptedLinger)
		sip.Timer_M = min(e.static.linger, acceptedLinger)
	})
}

// New binds every listener of cfg and returns an edge that is not serving yet.
func New(cfg Config, chains Chains, opt Options) (*Edge, error) {
	cfg.ApplyDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("sip: config: %w", err)
	}
	log := opt.Logger
	if log == nil {
		log = slog.Default()
	}
	e := &Edge{
		log:     log,
		m:       newMetrics(opt.Registry),
		records: opt.Records,
		ended:   opt.Ended,
		ours:    make(map[string]bool),
		static: staticConfig{
			userAgent:      cfg.UserAgent,
			maxMessageSize: cfg.MaxMessageSize,
			linger:         cfg.TransactionLinger,
			listen:         [2][]ListenConfig{cfg.Realms.Inside.Listen, cfg.Realms.Outside.Listen},
			dialTLS:        [2]TLSClientConfig{cfg.Realms.Inside.TLS, cfg.Realms.Outside.TLS},
		},
	}
	if cfg.UserAgent != "" {
		e.serverHdr = sip.NewHeader("Server", cfg.UserAgent)
		e.uaHdr = sip.NewHeader("User-Agent", cfg.UserAgent)
	}
	e.dialogs = newDialogs(e.m.dialogs)
	e.acks = newAckFilter(64 * sip.T1) // timer H: how long a UAC retransmits its ACK
	e.cancelWait = 64 * sip.T1
	e.arrivals = newCallSet(10 * time.Second)
	e.admitted = newCallSet(16 * time.Second) // INVITE retransmissions stop after 32 s
	e.refused = newCallSet(16 * time.Second)
	e.setSipgoGlobals()
	g, err := e.buildGeneration(cfg, chains)
	if err != nil {
		return nil, err
	}
	e.gen.Store(g)
	e.media = media.NewScheduler()
	if opt.Registry != nil {
		opt.Registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "stirgate_announcements_active",
			Help: "Announcements playing now (at most sip.max_announcements).",
		}, func() float64 { return float64(min(e.announcing.Load(), int64(e.gen.Load().maxAnnouncements))) }))
	}
	e.adm = newAdmission(g.overload, e.m.admitRatio.Set)
	e.udpTx = newUDPTxLayer(e)
	e.request, e.send = e.startClientTx, e.sendRequest
	e.stopped = make(chan struct{})

	parser := sip.NewParser()
	parser.MaxMessageLength = cfg.MaxMessageSize
	e.parser = parser
	for i, rc := range []RealmConfig{cfg.Realms.Inside, cfg.Realms.Outside} {
		r, err := e.newRealm(i, rc, parser)
		if err != nil {
			e.Close()
			return nil, err
		}
		e.realms[i] = r
	}
	return e, nil
}

func (e *Edge) buildGeneration(cfg Config, chains Chains) (*generation, error) {
	o := cfg.Overload
	g := &generation{inviteTimeout: cfg.InviteTimeout, maxAnnouncements: cfg.MaxAnnouncements, chains: [2]Chain{chains.Inside, chains.Outside},
		overload: overloadPolicy{on: o.Mode == "on", target: o.TargetWait, interval: o.Interval, retryAfter: o.RetryAfter, exempt: map[string]bool{}}}
	for _, n := range o.ExemptNumbers {
		g.overload.exempt[n] = true
	}
	for i, rc := range []RealmConfig{cfg.Realms.Inside, cfg.Realms.Outside} {
		nh, err := ParseNextHop(rc.NextHop)
		if err != nil {
			return nil, err
		}
		p := realmPolicy{nextHop: nh, nextHopText: nh.String(), udpMax: rc.UDP.MaxSize, oversizeTCP: rc.UDP.Oversize == "tcp", socketBuffer: rc.UDP.SocketBuffer}
		for _, t := range rc.Trusted {
			pr, err := parsePrefix(t)
			if err != nil {
				return nil, err
			}
			p.trusted = append(p.trusted, pr)
		}
		if p.media, err = e.buildMedia(rc.Media); err != nil {
			return nil, err
		}
		if err := p.loadTLS(rc, realmNames[i]); err != nil {
			return nil, err
		}
		g.realms[i] = p
	}
	return g, nil
}

func (e *Edge) newRealm(idx int, rc RealmConfig, parser *sip.Parser) (*realm, error) {
	r := &realm{idx: idx, name: "inside", dir: Outbound, ep: make(map[string]endpoint)}
	if idx == outside {
		r.name, r.dir = "outside", Inbound
	}
	sipgoLog := e.sipgoLogger(r.name)

	dialTLS, err := clientTLS(rc.TLS)
	if err != nil {
		return nil, fmt.Errorf("sip: realms.%s.%w", r.name, err)
	}
	// The client certificate follows reloads: a renewed one is shown from
	// the next connection on.
	dialTLS.Certificates = nil
	dialTLS.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
		if c := e.gen.Load().realms[idx].clientCert; c != nil {
			return c, nil
		}
		return &tls.Certificate{}, nil // none: the server decides
	}
	ua, err := sipgo.NewUA(
		sipgo.WithUserAgenTLSConfig(dialTLS),
		sipgo.WithUserAgent(e.static.userAgent),
		sipgo.WithUserAgentParser(parser),
		sipgo.WithUserAgentTransactionLayerOptions(
			sip.WithTransactionLayerLogger(sipgoLog),
			sip.WithTransactionLayerUnhandledResponseHandler(func(res *sip.Response) { e.strayResponse(r, res) }),
		),
		sipgo.WithUserAgentTransportLayerOptions(
			sip.WithTransportLayerLogger(sipgoLog),
		),
	)
	if err != nil {
		return nil, fmt.Errorf("sip: realm %s: %w", r.name, err)
	}
	r.ua = ua
	if r.srv, err = sipgo.NewServer(ua, sipgo.WithServerLogger(sipgoLog)); err != nil {
		return nil, fmt.Errorf("sip: realm %s: %w", r.name, err)
	}
	if r.client, err = sipgo.NewClient(ua, sipgo.WithClientLogger(sipgoLog)); err != nil {
		return nil, fmt.Errorf("sip: realm %s: %w", r.name, err)
	}
	r.srv.OnNoRoute(func(req *sip.Request, tx sip.ServerTransaction) { e.serve(r, req, tx) })

	for i, l := range rc.Listen {
		ap := netip.MustParseAddrPort(l.Addr) // validated
		var bound netip.AddrPort
		switch l.Transport {
		case "udp":
			c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(ap))
			if err != nil {
				return r, fmt.Errorf("sip: realms.%s.listen[%d]: %w", r.name, i, err)
			}
			r.udp = append(r.udp, newStampedConn(c))
			bound = c.LocalAddr().(*net.UDPAddr).AddrPort()
			setSocketBuffer(c, rc.UDP.SocketBuffer)
		case "tcp":
			ln, err := net.ListenTCP("tcp", net.TCPAddrFromAddrPort(ap))
			if err != nil {
				return r, fmt.Errorf("sip: realms.%s.listen[%d]: %w", r.name, i, err)
			}
			r.tcp = append(r.tcp, &idleListener{Listener: ln, idle: l.IdleTimeout})
			bound = ln.Addr().(*net.TCPAddr).AddrPort()
		case "tls":
			ln, err := net.ListenTCP("tcp", net.TCPAddrFromAddrPort(ap))
			if err != nil {
				return r, fmt.Errorf("sip: realms.%s.listen[%d]: %w", r.name, i, err)
			}
			initial := e.gen.Load().realms[idx].tlsServer[i]
			r.tls = append(r.tls, &tlsListener{Listener: ln, e: e, r: r, idle: l.IdleTimeout, config: func() *tls.Config {
				// The generation in force; the first one's when a reload
				// changed the listeners (they need a restart).
				if ts := e.gen.Load().realms[idx].tlsServer; i < len(ts) && ts[i] != nil {
					return ts[i]
				}
				return initial
			}})
			bound = ln.Addr().(*net.TCPAddr).AddrPort()
		}
		host, port := bound.Addr().Unmap().String(), int(bound.Port())
		if l.Advertise != "" {
			h, p, _ := sip.ParseAddr(l.Advertise)
			host, port = h, p
		}
		tp := strings.ToUpper(l.Transport)
		if _, ok := r.ep[tp]; !ok {
			r.ep[tp] = endpoint{host: host, port: port, laddr: sip.Addr{IP: net.IP(bound.Addr().Unmap().AsSlice()), Port: port}}
		}
		e.ours[joinHostPort(host, port)] = true
		e.ours[bound.String()] = true
	}
	return r, nil
}

// sipgoLogger is the logger handed to sipgo for realm (or "" for its
// process-wide default logger).
func (e *Edge) sipgoLogger(realm string) *slog.Logger {
	return slog.New(&sipgoLogHandler{
		next:    e.log.Handler(),
		realm:   realm,
		dropped: func(realm, reason string) { e.m.dropped.WithLabelValues(realm, reason).Inc() },
	}).With("realm", realm, "component", "sipgo")
}

// ListenAddrs returns the bound listener addresses of a realm ("inside" or
// "outside") as transport -> ip:port. Tests use it with port 0 configs.
func (e *Edge) ListenAddrs(realmName string) map[string]string {
	out := make(map[string]string)
	for _, r := range e.realms {
		if r == nil || r.name != realmName {
			continue
		}
		for tp, ep := range r.ep {
			out[tp] = joinHostPort(ep.host, ep.port)
		}
	}
	return out
}

// Serve starts every listener and returns when ctx is done (listeners stay
// open until Close, so a drain can still receive BYEs).
func (e *Edge) Serve(ctx context.Context) error {
	errc := make(chan error, 16)
	for _, r := range e.realms {
		for _, c := range r.udp {
			go func() { errc <- e.readUDP(r, c) }()
		}
		for _, ln := range r.tcp {
			go func() { errc <- r.srv.ServeTCP(ln) }()
		}
		for _, ln := range r.tls {
			go func() { errc <- r.srv.ServeTLS(ln) }()
		}
	}
	e.serving.Store(true)
	e.log.Info("sip edge serving", "inside", e.ListenAddrs("inside"), "outside", e.ListenAddrs("outside"))
	go e.dialogs.sweep(ctx, dialogMaxAge)
	go e.udpTx.sweep(e.stopped)
	go e.adm.tick(e.stopped)
	select {
	case <-ctx.Done():
		return nil
	case err := <-errc:
		if err != nil && !errors.Is(err, net.ErrClosed) {
			return fmt.Errorf("sip: listener stopped: %w", err)
		}
		<-ctx.Done()
		return nil
	}
}

// Ready reports whether the edge serves and is not draining.
func (e *Edge) Ready() bool { return e.serving.Load() && !e.draining.Load() }

// Update is a configuration generation that Prepare has built and checked
// but not put in force. A reload prepares every part of its new generation
// (where each can still fail) and installs them only once all are
// accepted, so a refused reload changes nothing.
type Update struct {
	edge *Edge
	gen  *generation
	// NeedRestart are the settings that need new sockets: Install does not
	// apply them, so the caller can say so.
	NeedRestart []string
}

// Prepare validates cfg and builds the generation that serves it with
// chains, without changing what serves now.
func (e *Edge) Prepare(cfg Config, chains Chains) (*Update, error) {
	cfg.ApplyDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("sip: config: %w", err)
	}
	g, err := e.buildGeneration(cfg, chains)
	if err != nil {
		return nil, err
	}
	u := &Update{edge: e, gen: g}
	if cfg.UserAgent != e.static.userAgent {
		u.NeedRestart = append(u.NeedRestart, "sip.user_agent")
	}
	if cfg.MaxMessageSize != e.static.maxMessageSize {
		u.NeedRestart = append(u.NeedRestart, "sip.max_message_size")
	}
	if cfg.TransactionLinger != e.static.linger {
		u.NeedRestart = append(u.NeedRestart, "sip.transaction_linger")
	}
	for i, rc := range []RealmConfig{cfg.Realms.Inside, cfg.Realms.Outside} {
		if !slices.EqualFunc(rc.Listen, e.static.listen[i], sameSocket) {
			u.NeedRestart = append(u.NeedRestart, "sip.realms."+realmNames[i]+".listen")
		}
		if old := e.static.dialTLS[i]; rc.TLS.CA != old.CA || rc.TLS.ServerName != old.ServerName {
			u.NeedRestart = append(u.NeedRestart, "sip.realms."+realmNames[i]+".tls.ca/server_name")
		}
	}
	return u, nil
}

// Install swaps the prepared generation in: the next INVITE runs it, calls
// in flight finish on the one they started with. A changed
// udp.socket_buffer is applied to the realm's open UDP sockets. It cannot
// fail.
func (u *Update) Install() {
	old := u.edge.gen.Swap(u.gen)
	o := u.gen.overload
	u.edge.adm.set(o.target, o.interval, o.retryAfter, o.on)
	for i, r := range u.edge.realms {
		if r == nil || old == nil || old.realms[i].socketBuffer == u.gen.realms[i].socketBuffer {
			continue
		}
		for _, c := range r.udp {
			setSocketBuffer(c.UDPConn, u.gen.realms[i].socketBuffer)
		}
	}
}

// setSocketBuffer sets SO_RCVBUF and SO_SNDBUF of a UDP socket, best effort:
// the kernel caps both at net.core.rmem_max/wmem_max, and a socket already
// closed keeps nothing. Setting them on an open socket is safe while it reads.
func setSocketBuffer(c *net.UDPConn, size int) {
	_ = c.SetReadBuffer(size)
	_ = c.SetWriteBuffer(size)
}

// Drain makes new INVITEs get 503 and waits until in-flight transactions and
// confirmed dialogs have ended, or ctx is done.
func (e *Edge) Drain(ctx context.Context) error {
	e.draining.Store(true)
	e.m.draining.Set(1)
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		n, d := e.inflight.Load(), e.dialogs.count()
		if n == 0 && d == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("sip: drain: %d transactions and %d dialogs left: %w", n, d, ctx.Err())
		case <-t.C:
		}
	}
}

// Close stops every listener and transaction.
func (e *Edge) Close() {
	e.closing.Do(func() {
		e.serving.Store(false)
		close(e.stopped)
		if e.media != nil {
			e.media.Close() // announcements end: their callers get the rejection
		}
		for _, r := range e.realms {
			if r == nil {
				continue
			}
			if r.ua != nil {
				_ = r.ua.Close()
			}
			for _, c := range r.udp {
				_ = c.Close()
			}
			for _, ln := range r.tcp {
				_ = ln.Close()
			}
			for _, ln := range r.tls {
				_ = ln.Close()
			}
		}
	})
}

// filterUDP runs in the socket reader of sc before parsing, the cheap
// place for what must never reach the parser: it reports whether it took
// the datagram (an oversize one dropped, a 2xx ACK forwarded, a new INVITE
// refused for overload).
func (e *Edge) filterUDP(r *realm, sc *stampedConn, from net.Addr, data []byte) bool {
	if len(data) > e.static.maxMessageSize {
		e.m.dropped.WithLabelValues(r.name, "oversize").Inc()
		return true
	}
	e.socketWait(sc)
	if bytes.HasPrefix(data, ackPrefix) && e.fastAck(r, from, data) {
		return true
	}
	return bytes.HasPrefix(data, invitePrefix) && e.admitInvite(r, sc, from, data) == shed
}

var ackPrefix = []byte("ACK ")

// fastAck forwards the ACK of a 2xx to an initial INVITE straight from the
// socket reader: it is its own end-to-end transaction, and sipgo would
// build (and at once discard) a server transaction and a goroutine for it
// (~15% of the CPU at 1,000 calls/s, docs/sipgo.md row 10). It
// reports false for anything else (ACKs of non-2xx finals belong to sipgo's
// INVITE transaction; re-INVITE ACKs and unparsable datagrams take the
// normal path, which answers and counts them); sipgo then parses those
// again, a cost paid only off the common path.
func (e *Edge) fastAck(r *realm, from net.Addr, data []byte) bool {
	msg, err := e.parser.ParseSIP(data)
	if err != nil {
		return false
	}
	req, ok := msg.(*sip.Request)
	if !ok || !req.IsAck() || req.From() == nil || req.To() == nil || req.CallID() == nil || req.CSeq() == nil || req.Via() == nil ||
		req.CSeq().MethodName != sip.ACK {
		return false
	}
	if id, ok := e.dialogs.answered(req.CallID().Value()); !ok || !id.acknowledgedBy(req) {
		return false
	}
	req.SetTransport("UDP")
	req.SetSource(from.String())
	e.m.requests.WithLabelValues(r.name, "ACK").Inc()
	if !e.gen.Load().realms[r.idx].trusts(parseSource(req.Source()).Addr()) {
		e.m.dropped.WithLabelValues(r.name, "untrusted").Inc()
		return true
	}
	e.forwardAck(r, req)
	return true
}

func (e *Edge) peer(r *realm) *realm { return e.realms[1-r.idx] }

// isOurs reports whether host:port (port 0 meaning 5060) is one of our listeners.
func (e *Edge) isOurs(host string, port int) bool {
	if port == 0 {
		port = 5060
	}
	return e.ours[joinHostPort(host, port)]
}

func parseSource(s string) netip.AddrPort {
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		host, port, err2 := net.SplitHostPort(s)
		if err2 != nil {
			return netip.AddrPort{}
		}
		a, _ := netip.ParseAddr(host)
		p, _ := strconv.Atoi(port)
		return netip.AddrPortFrom(a, uint16(p))
	}
	return ap
}
