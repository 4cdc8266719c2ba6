package integration

// Kamailio with its tls module (Debian package kamailio-tls-modules) as a
// SIP-over-TLS trunk for issue 16 (interop/kamailio-tls.cfg.tmpl): it
// answers calls arriving over TLS (optionally verifying or requiring a
// client certificate, optionally verifying Identity with secsipid) and can
// relay calls it gets over UDP to a TLS destination, as a TLS client. Every
// request is logged with its transport, whether it carried Identity and
// the peer certificate's subject, for the tests to assert on. A missing
// Kamailio or module skips these tests, or fails them when CI=true.

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/stirgate/stirgate/integration/internal/sipwire"
)

const kamailioTLSDebs = kamailioDebs + " kamailio-tls-modules"

// requireKamailioTLS returns the kamailio binary and its modules directory,
// which must also hold tls.so and the modules kamailio-tls.cfg.tmpl loads.
func requireKamailioTLS(t testing.TB) (bin, modules string) {
	t.Helper()
	bin, modules = requireKamailio(t)
	var missing []string
	for _, m := range []string{"tls.so", "tm.so", "tmx.so", "sl.so", "rr.so", "pv.so", "xlog.so", "textops.so", "siputils.so"} {
		if _, err := os.Stat(filepath.Join(modules, m)); err != nil {
			missing = append(missing, m)
		}
	}
	if len(missing) == 0 {
		return bin, modules
	}
	msg := fmt.Sprintf("kamailio modules %s not found in %s", strings.Join(missing, ", "), modules)
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s (CI=true): install the Debian packages %s", msg, kamailioTLSDebs)
	}
	t.Skipf("%s; install the Debian packages %s", msg, kamailioTLSDebs)
	return "", ""
}

// kamailioTLSConfig says how to run the TLS trunk. Zero values are
// defaults; only PKI is required.
type kamailioTLSConfig struct {
	PKI *tlsPKI

	Port    int // UDP and TCP on 127.0.0.1 (0: a free port)
	TLSPort int // TLS on 127.0.0.1 (0: a free port)

	// Server certificate and key Kamailio presents (default PKI.Server),
	// e.g. one signed by PKI.OtherCA for an untrusted trunk.
	Cert, Key string
	// ClientCA: the CAs client certificates must chain to (default ca.pem).
	ClientCA string
	// VerifyClient: "none" (default: no client certificate asked for),
	// "optional" (asked for, verified when sent), "required" (a client
	// without a valid certificate fails the handshake).
	VerifyClient string
	// Method: the tls module's method, default "TLSv1.2+".
	Method string

	// RelayTo, host:port: initial INVITEs arriving over UDP on RelayPort
	// are record-routed and sent there over TLS ("" = no relay).
	RelayTo   string
	RelayPort int // 0: a free port (when RelayTo is set)
	// RelayCA: the CAs RelayTo's certificate must chain to (default
	// ca.pem). RelayCert/RelayKey: the client certificate Kamailio
	// presents there (default the server certificate, which is also good
	// for client auth when it comes from the PKI).
	RelayCA, RelayCert, RelayKey string

	// Verify checks the Identity of each initial INVITE with secsipid as
	// kamailio.cfg.tmpl does (200 / 438 / 428 and STIRGATE-IT lines, read
	// with Verdicts and Count); Expire, Timeout, LibOpts as there.
	Verify          bool
	Expire, Timeout int
	LibOpts         []string
}

// kamailioTLS is a running TLS trunk. The embedded kamailio gives Addr
// (UDP/TCP), Stop, Log, Verdicts, Count and waitVerdicts.
type kamailioTLS struct {
	*kamailio
	TLS kamailioTLSConfig // as run: ports and paths filled in
}

// render returns kamailio.cfg and the tls module's domain file.
func (c kamailioTLSConfig) render(t testing.TB, modules, tlsConfigPath string) (cfg, domains string) {
	t.Helper()
	yes := map[bool]string{true: "yes", false: "no"}
	for _, p := range []string{c.Cert, c.Key, c.ClientCA, c.RelayCA, c.RelayCert, c.RelayKey, tlsConfigPath} {
		if strings.ContainsAny(p, "\"\n\r") {
			t.Fatalf("kamailio tls: path %q: no quotes or newlines", p)
		}
	}
	var verify, require bool
	switch c.VerifyClient {
	case "none":
	case "optional":
		verify = true
	case "required":
		verify, require = true, true
	default:
		t.Fatalf("kamailio tls: VerifyClient %q: want none, optional or required", c.VerifyClient)
	}
	dom := strings.NewReplacer(
		"__METHOD__", c.Method,
		"__CERT__", c.Cert, "__KEY__", c.Key, "__CLIENT_CA__", c.ClientCA,
		"__VERIFY__", yes[verify], "__REQUIRE__", yes[require],
		"__RELAY_CERT__", c.RelayCert, "__RELAY_KEY__", c.RelayKey, "__RELAY_CA__", c.RelayCA,
	).Replace(string(readFileBytes(t, filepath.Join("interop", "kamailio-tls-domains.cfg.tmpl"))))

	var defines, libopts []string
	relayHost, relayPort := loopback, "0"
	if c.RelayTo != "" {
		defines = append(defines, "#!define WITH_RELAY")
		h, p, err := net.SplitHostPort(c.RelayTo)
		if err != nil || net.ParseIP(h) == nil {
			t.Fatalf("kamailio tls: RelayTo %q: want ip:port", c.RelayTo)
		}
		relayHost, relayPort = h, p
	}
	if c.Verify {
		defines = append(defines, "#!define WITH_SECSIPID")
	}
	for _, o := range c.LibOpts {
		if strings.ContainsAny(o, "\"\n\r") {
			t.Fatalf("kamailio libopt %q: no quotes or newlines", o)
		}
		libopts = append(libopts, fmt.Sprintf("modparam(\"secsipid\", \"libopt\", \"%s\")", o))
	}
	main := strings.NewReplacer(
		"__DEFINES__", strings.Join(defines, "\n"),
		"__PORT__", strconv.Itoa(c.Port),
		"__TLS_PORT__", strconv.Itoa(c.TLSPort),
		"__MODULES_DIR__", modules,
		"__TLS_CONFIG__", tlsConfigPath,
		"__RELAY_PORT__", strconv.Itoa(c.RelayPort),
		"__RELAY_HOST__", relayHost,
		"__RELAY_TLS_PORT__", relayPort,
		"__EXPIRE__", strconv.Itoa(c.Expire),
		"__TIMEOUT__", strconv.Itoa(c.Timeout),
		"__LIBOPTS__", strings.Join(libopts, "\n"),
	).Replace(string(readFileBytes(t, filepath.Join("interop", "kamailio-tls.cfg.tmpl"))))
	for name, out := range map[string]string{"kamailio-tls.cfg.tmpl": main, "kamailio-tls-domains.cfg.tmpl": dom} {
		if strings.Contains(out, "__") {
			t.Fatalf("%s: placeholder left after rendering:\n%s", name, out)
		}
	}
	return main, dom
}

// startKamailioTLS runs Kamailio with kamailio-tls.cfg.tmpl the way
// startKamailio runs the UDP/TCP trunk (foreground, own process group,
// stderr to a log file, pid and runtime files in a temp dir, stopped by
// PID at cleanup) and waits (bounded) until its UDP, TCP, TLS and relay
// ports are bound. Ports left 0 are chosen free; should another process
// take one before Kamailio binds it ("Address already in use"), Kamailio is
// started again on new ports, at most three times.
func startKamailioTLS(t testing.TB, cfg kamailioTLSConfig) *kamailioTLS {
	t.Helper()
	bin, modules := requireKamailioTLS(t)
	if cfg.PKI == nil {
		t.Fatal("startKamailioTLS: PKI is required")
	}
	def := func(s *string, v string) {
		if *s == "" {
			*s = v
		}
	}
	def(&cfg.Cert, cfg.PKI.Server.CertPath)
	def(&cfg.Key, cfg.PKI.Server.KeyPath)
	def(&cfg.ClientCA, cfg.PKI.CA.CertPath)
	def(&cfg.VerifyClient, "none")
	def(&cfg.Method, "TLSv1.2+")
	def(&cfg.RelayCA, cfg.PKI.CA.CertPath)
	def(&cfg.RelayCert, cfg.Cert)
	def(&cfg.RelayKey, cfg.Key)
	if cfg.Expire == 0 {
		cfg.Expire = 60
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 3
	}
	fixedPorts := cfg.Port != 0 || cfg.TLSPort != 0 || cfg.RelayPort != 0
	for attempt := 1; ; attempt++ {
		c := cfg
		if c.Port == 0 {
			c.Port = freePort(t)
		}
		if c.TLSPort == 0 {
			c.TLSPort = freePort(t)
		}
		if c.RelayTo != "" && c.RelayPort == 0 {
			c.RelayPort = freePort(t)
		}
		k, err := runKamailioTLS(t, bin, modules, c)
		if err == nil {
			return k
		}
		if fixedPorts || attempt == 3 || !strings.Contains(k.Log(), "Address already in use") {
			t.Fatalf("kamailio tls: %v\n%s", err, tail(k.Log(), 40))
		}
		t.Logf("kamailio tls: a port was taken before Kamailio bound it (attempt %d); starting again on other ports", attempt)
	}
}

// runKamailioTLS starts one Kamailio and waits for its ports; on error the
// returned value still has the log.
func runKamailioTLS(t testing.TB, bin, modules string, cfg kamailioTLSConfig) (*kamailioTLS, error) {
	t.Helper()
	dir, err := os.MkdirTemp(t.TempDir(), "kamailio-tls-")
	if err != nil {
		t.Fatal(err)
	}
	cfgPath, tlsPath := filepath.Join(dir, "kamailio.cfg"), filepath.Join(dir, "tls.cfg")
	main, dom := cfg.render(t, modules, tlsPath)
	if err := os.WriteFile(cfgPath, []byte(main), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(tlsPath, []byte(dom), 0o644); err != nil {
		t.Fatal(err)
	}
	k := &kamailio{t: t, cfg: kamailioConfig{Port: cfg.Port, Expire: cfg.Expire, Timeout: cfg.Timeout, LibOpts: cfg.LibOpts},
		dir: dir, logPath: filepath.Join(dir, "kamailio.log"), done: make(chan struct{})}
	kt := &kamailioTLS{kamailio: k, TLS: cfg}
	k.launch(t, bin, cfgPath, modules, "128", "16", "kamailio tls", 80)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	type bound struct {
		tr   string
		port int
	}
	waits := []bound{{"udp", cfg.Port}, {"tcp", cfg.Port}, {"tcp", cfg.TLSPort}}
	if cfg.RelayTo != "" {
		waits = append(waits, bound{"udp", cfg.RelayPort})
	}
	for _, w := range waits {
		if err := waitBound(ctx, w.tr, w.port, k.done); err != nil {
			return kt, err
		}
	}
	return kt, nil
}

// TLSAddr is Kamailio's TLS listener, ip:port.
func (k *kamailioTLS) TLSAddr() string { return hostPort(k.TLS.TLSPort) }

// RelayAddr is the UDP listener whose INVITEs are relayed over TLS.
func (k *kamailioTLS) RelayAddr() string { return hostPort(k.TLS.RelayPort) }

// kamailioTLSRequest is one STIRGATE-TLS line: a request Kamailio got.
type kamailioTLSRequest struct {
	Method, CallID string
	Proto          string // tls | tcp | udp
	Identity       bool   // an Identity header was present
	Act            string // answer | relay | route (in-dialog, loose-routed)
	Src, Dst       string
	TLSVersion     string // e.g. TLSv1.3; "-" when not over TLS
	Verified       string // 1: the client certificate verified; 0; "-"
	// The client certificate's subject CN, first DNS SAN, first URI SAN
	// and issuer CN; <null> without a certificate (or such a name), "-"
	// when not over TLS.
	PeerCN, PeerDNS, PeerURI, PeerIssuer string
	Line                                 string
}

var tlsRequestRE = regexp.MustCompile(`STIRGATE-TLS req=(\S+) ci=(\S+) proto=(\S+) identity=(yes|no) act=(\S+) src=(\S+) dst=(\S+) tls=(\S+) verified=(\S+) peer_cn=(.*?) peer_dns=(\S+) peer_uri=(\S+) peer_issuer=(.*)$`)

// Requests parses the request lines logged so far.
func (k *kamailioTLS) Requests() []kamailioTLSRequest {
	var out []kamailioTLSRequest
	sc := bufio.NewScanner(strings.NewReader(k.Log()))
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for sc.Scan() {
		m := tlsRequestRE.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		out = append(out, kamailioTLSRequest{Method: m[1], CallID: m[2], Proto: m[3], Identity: m[4] == "yes", Act: m[5],
			Src: m[6], Dst: m[7], TLSVersion: m[8], Verified: m[9], PeerCN: m[10], PeerDNS: m[11], PeerURI: m[12], PeerIssuer: m[13],
			Line: sc.Text()})
	}
	return out
}

// kamailioTLSReply is one STIRGATE-TLS-REPLY line: a reply to a relayed
// request.
type kamailioTLSReply struct {
	Status         int
	Method, CallID string // Method: the CSeq method
	Proto, Src     string
	Line           string
}

var tlsReplyRE = regexp.MustCompile(`STIRGATE-TLS-REPLY status=(\d+) req=(\S+) ci=(\S+) proto=(\S+) src=(\S+)`)

// Replies parses the reply lines logged so far.
func (k *kamailioTLS) Replies() []kamailioTLSReply {
	var out []kamailioTLSReply
	sc := bufio.NewScanner(strings.NewReader(k.Log()))
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for sc.Scan() {
		m := tlsReplyRE.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		code, _ := strconv.Atoi(m[1])
		out = append(out, kamailioTLSReply{Status: code, Method: m[2], CallID: m[3], Proto: m[4], Src: m[5], Line: sc.Text()})
	}
	return out
}

var tlsFailRE = regexp.MustCompile(`STIRGATE-TLS-FAIL status=(\d+) req=\S+ ci=(\S+)`)

// RelayFailures returns, by Call-ID, the final status of each relayed
// INVITE that failed (a 408 is Kamailio's own: the TLS side never
// answered, e.g. after a failed handshake).
func (k *kamailioTLS) RelayFailures() map[string]int {
	out := map[string]int{}
	for _, m := range tlsFailRE.FindAllStringSubmatch(k.Log(), -1) {
		code, _ := strconv.Atoi(m[1])
		out[m[2]] = code
	}
	return out
}

// waitRequests waits (bounded) until at least n request lines are logged
// (Kamailio writes its log asynchronously to the SIP exchange) and returns
// them.
func (k *kamailioTLS) waitRequests(n int, bound time.Duration) []kamailioTLSRequest {
	deadline := time.Now().Add(bound)
	var rs []kamailioTLSRequest
	for i := 0; i < 400 && time.Now().Before(deadline); i++ {
		if rs = k.Requests(); len(rs) >= n {
			return rs
		}
		time.Sleep(25 * time.Millisecond)
	}
	return rs
}

// ---------------------------------------------------------------------------
// SIP over one TLS connection, as raw text: the PBX or trunk side of the
// tests without a SIP stack in between.

// sipTLSConn is a client TLS connection carrying SIP messages.
type sipTLSConn struct {
	conn   *tls.Conn
	r      *bufio.Reader
	parser *sip.Parser
}

// dialSIPTLS connects and completes the TLS handshake (bounded).
func dialSIPTLS(addr string, cfg *tls.Config) (*sipTLSConn, error) {
	d := &net.Dialer{Timeout: 5 * time.Second}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := (&tls.Dialer{NetDialer: d, Config: cfg}).DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("tls dial %s: %w", addr, err)
	}
	tc := c.(*tls.Conn)
	return &sipTLSConn{conn: tc, r: bufio.NewReader(tc), parser: sip.NewParser()}, nil
}

func (c *sipTLSConn) Close() error { return c.conn.Close() }

// LocalAddr is the client side ip:port, for Via and Contact.
func (c *sipTLSConn) LocalAddr() string { return c.conn.LocalAddr().String() }

// Send writes one message.
func (c *sipTLSConn) Send(msg string) error {
	c.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c.conn, msg); err != nil {
		return fmt.Errorf("send: %w", err)
	}
	return nil
}

// Read returns the next SIP message within bound, skipping CRLF
// keep-alives.
func (c *sipTLSConn) Read(bound time.Duration) (sip.Message, error) {
	c.conn.SetReadDeadline(time.Now().Add(bound))
	raw, err := sipwire.ReadFrame(c.r)
	if err != nil {
		return nil, err
	}
	msg, err := c.parser.ParseSIP(raw)
	if err != nil {
		return nil, fmt.Errorf("parse %q: %w", raw, err)
	}
	return msg, nil
}

// Response returns the next final response within bound. Provisional
// responses to the same request are skipped; anything else (a request, a
// retransmitted answer to an earlier request) is an error: a test on one
// connection expects exactly the answers to what it sent.
func (c *sipTLSConn) Response(method string, cseq int, bound time.Duration) (*sip.Response, error) {
	for range 20 {
		m, err := c.Read(bound)
		if err != nil {
			return nil, err
		}
		res, ok := m.(*sip.Response)
		if !ok || res.CSeq() == nil || string(res.CSeq().MethodName) != method || int(res.CSeq().SeqNo) != cseq {
			return nil, fmt.Errorf("waiting for the answer to %d %s, got:\n%s", cseq, method, m)
		}
		if res.StatusCode >= 200 {
			return res, nil
		}
	}
	return nil, errors.New("20 provisional responses without a final one")
}

// Quiet reads for d and returns an error if any message arrives (CRLF
// keep-alives aside): e.g. a 200 retransmitted after its ACK.
func (c *sipTLSConn) Quiet(d time.Duration) error {
	m, err := c.Read(d)
	if err == nil {
		return fmt.Errorf("unexpected message:\n%s", m)
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return nil
	}
	return err
}

// tlsUAC is a caller over one TLS connection: INVITE, ACK, re-INVITE and
// BYE as raw text, the in-dialog requests to the answer's Contact.
type tlsUAC struct {
	c      *sipTLSConn
	target string // ip:port of the peer, for the Request-URI
	n      int
}

// tlsDialog is what the caller keeps of an answered call.
type tlsDialog struct {
	CallID, FromTag string
	To              string // the To header value with the callee's tag
	Contact         string // the callee's Contact URI
	CSeq            int
}

// invite sends an INVITE with SDP (and Identity when identity != "") and
// returns the final response and the dialog.
func (u *tlsUAC) invite(callID, identity string) (*sip.Response, tlsDialog, error) {
	u.n++
	d := tlsDialog{CallID: callID, FromTag: fmt.Sprintf("uac%d", u.n), CSeq: 1}
	local := u.c.LocalAddr()
	body := "v=0\r\no=pbx 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 30000 RTP/AVP 0\r\na=sendrecv\r\n"
	hdr := ""
	if identity != "" {
		hdr = "Identity: " + identity + "\r\n"
	}
	msg := fmt.Sprintf("INVITE sip:+15559870002@%s;transport=tls SIP/2.0\r\n"+
		"Via: SIP/2.0/TLS %s;branch=z9hG4bK-tls-%s-%d;rport\r\nMax-Forwards: 70\r\n"+
		"From: <sip:+15551230001@127.0.0.1>;tag=%s\r\nTo: <sip:+15559870002@127.0.0.1>\r\n"+
		"Call-ID: %s\r\nCSeq: 1 INVITE\r\nContact: <sip:pbx@%s;transport=tls>\r\n%s"+
		"Content-Type: application/sdp\r\nContent-Length: %d\r\n\r\n%s",
		u.target, local, callID, u.n, d.FromTag, callID, local, hdr, len(body), body)
	if err := u.c.Send(msg); err != nil {
		return nil, d, err
	}
	res, err := u.c.Response("INVITE", 1, 10*time.Second)
	if err != nil {
		return nil, d, fmt.Errorf("INVITE %s: %w", callID, err)
	}
	if to := res.To(); to != nil {
		d.To = to.Value()
	}
	if ct := res.Contact(); ct != nil {
		d.Contact = ct.Address.String()
	}
	return res, d, nil
}

// inDialog sends method (ACK, BYE, INVITE) in the dialog; for all but ACK
// it returns the final response.
func (u *tlsUAC) inDialog(d *tlsDialog, method string) (*sip.Response, error) {
	u.n++
	local := u.c.LocalAddr()
	cseq := d.CSeq
	if method != "ACK" {
		d.CSeq++
		cseq = d.CSeq
	}
	body, ct := "", ""
	if method == "INVITE" {
		body = "v=0\r\no=pbx 1 2 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 30000 RTP/AVP 0\r\na=sendonly\r\n"
		ct = "Content-Type: application/sdp\r\n"
	}
	msg := fmt.Sprintf("%s %s SIP/2.0\r\nVia: SIP/2.0/TLS %s;branch=z9hG4bK-tls-%s-%d;rport\r\nMax-Forwards: 70\r\n"+
		"From: <sip:+15551230001@127.0.0.1>;tag=%s\r\nTo: %s\r\nCall-ID: %s\r\nCSeq: %d %s\r\n"+
		"Contact: <sip:pbx@%s;transport=tls>\r\n%sContent-Length: %d\r\n\r\n%s",
		method, d.Contact, local, d.CallID, u.n, d.FromTag, d.To, d.CallID, cseq, method, local, ct, len(body), body)
	if err := u.c.Send(msg); err != nil {
		return nil, err
	}
	if method == "ACK" {
		return nil, nil
	}
	res, err := u.c.Response(method, cseq, 10*time.Second)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, d.CallID, err)
	}
	return res, nil
}

// ---------------------------------------------------------------------------
// A TLS UAS in the test: where Kamailio's relay sends, standing in for
// stirgate's outside listener.

// tlsUAS accepts TLS connections (verifying client certificates as its
// config says) and answers INVITE 200 with SDP, BYE and others 200, ACK
// nothing. It records every request with the connection's peer CN.
type tlsUAS struct {
	ln   net.Listener
	wg   sync.WaitGroup
	mu   sync.Mutex
	reqs []uasRequest
	errs []string // handshake and read errors, by connection
}

type uasRequest struct {
	Method, CallID string
	PeerCN         string // client certificate CN ("" without one)
	Conn           string // the connection's remote address
}

func startTLSUAS(t testing.TB, cfg *tls.Config) *tlsUAS {
	t.Helper()
	ln, err := tls.Listen("tcp", net.JoinHostPort(loopback, "0"), cfg)
	if err != nil {
		t.Fatal(err)
	}
	u := &tlsUAS{ln: ln}
	u.wg.Add(1)
	go u.accept()
	t.Cleanup(u.close)
	return u
}

func (u *tlsUAS) Addr() string { return u.ln.Addr().String() }

func (u *tlsUAS) close() {
	u.ln.Close()
	u.wg.Wait()
}

func (u *tlsUAS) accept() {
	defer u.wg.Done()
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for {
		c, err := u.ln.Accept()
		if err != nil {
			return
		}
		conns = append(conns, c)
		u.wg.Add(1)
		go u.serve(c.(*tls.Conn))
	}
}

func (u *tlsUAS) fail(format string, a ...any) {
	u.mu.Lock()
	u.errs = append(u.errs, fmt.Sprintf(format, a...))
	u.mu.Unlock()
}

func (u *tlsUAS) serve(c *tls.Conn) {
	defer u.wg.Done()
	defer c.Close()
	c.SetDeadline(time.Now().Add(60 * time.Second))
	if err := c.Handshake(); err != nil {
		u.fail("handshake from %s: %v", c.RemoteAddr(), err)
		return
	}
	cn := ""
	if pc := c.ConnectionState().PeerCertificates; len(pc) > 0 {
		cn = pc[0].Subject.CommonName
	}
	r, parser := bufio.NewReader(c), sip.NewParser()
	for range 10000 {
		raw, err := sipwire.ReadFrame(r)
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				u.fail("read from %s: %v", c.RemoteAddr(), err)
			}
			return
		}
		msg, err := parser.ParseSIP(raw)
		if err != nil {
			u.fail("parse from %s: %v", c.RemoteAddr(), err)
			return
		}
		req, ok := msg.(*sip.Request)
		if !ok {
			continue
		}
		u.mu.Lock()
		u.reqs = append(u.reqs, uasRequest{Method: string(req.Method), CallID: req.CallID().Value(), PeerCN: cn, Conn: c.RemoteAddr().String()})
		u.mu.Unlock()
		if req.IsAck() {
			continue
		}
		req.SetSource(c.RemoteAddr().String())
		var body []byte
		if req.IsInvite() {
			body = []byte("v=0\r\no=uas 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 31000 RTP/AVP 0\r\na=sendrecv\r\n")
		}
		res := sip.NewResponseFromRequest(req, 200, "OK", body)
		if req.IsInvite() {
			res.AppendHeader(sip.NewHeader("Contact", "<sip:uas@"+u.Addr()+";transport=tls>"))
			res.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
		}
		if _, err := io.WriteString(c, res.String()); err != nil {
			u.fail("write to %s: %v", c.RemoteAddr(), err)
			return
		}
	}
}

// Requests returns the requests received so far.
func (u *tlsUAS) Requests() []uasRequest {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]uasRequest(nil), u.reqs...)
}

// Errors returns the connection errors so far.
func (u *tlsUAS) Errors() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]string(nil), u.errs...)
}

// ---------------------------------------------------------------------------
// Tests

// tlsTrunkCall runs one call over its own TLS connection to Kamailio:
// INVITE (with identity when not "") -> 200 with a To-tag, an SDP answer and
// a TLS Contact -> ACK -> re-INVITE -> 200 -> ACK -> BYE -> 200, then
// nothing more for a second: no 200 retransmitted after its ACK (Kamailio's
// first retransmission would come 0.5 s after the 200).
func tlsTrunkCall(t *testing.T, k *kamailioTLS, cfg *tls.Config, callID, identity string) {
	t.Helper()
	c, err := dialSIPTLS(k.TLSAddr(), cfg)
	if err != nil {
		t.Fatalf("%s: %v", callID, err)
	}
	defer c.Close()
	u := &tlsUAC{c: c, target: k.TLSAddr()}
	res, d, err := u.invite(callID, identity)
	if err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != 200 {
		t.Fatalf("%s: INVITE answered %d %s, want 200", callID, res.StatusCode, res.Reason)
	}
	if tag, _ := res.To().Params.Get("tag"); tag == "" {
		t.Errorf("%s: 200 without a To-tag: %s", callID, res.To().Value())
	}
	if ct := res.ContentType(); ct == nil || ct.Value() != "application/sdp" || !strings.Contains(string(res.Body()), "m=audio ") {
		t.Errorf("%s: 200 without an SDP answer:\n%s", callID, res)
	}
	wantContact := "sip:" + k.TLSAddr() + ";transport=tls"
	if d.Contact != wantContact {
		t.Errorf("%s: 200 Contact %q, want %q", callID, d.Contact, wantContact)
	}
	for _, m := range []string{"ACK", "INVITE", "ACK", "BYE"} {
		res, err := u.inDialog(&d, m)
		if err != nil {
			t.Fatal(err)
		}
		if res != nil && res.StatusCode != 200 {
			t.Errorf("%s: %s answered %d %s, want 200", callID, m, res.StatusCode, res.Reason)
		}
	}
	if err := c.Quiet(time.Second); err != nil {
		t.Errorf("%s: after the call: %v", callID, err)
	}
}

// requestsOf returns the logged requests of one call.
func requestsOf(rs []kamailioTLSRequest, callID string) []kamailioTLSRequest {
	var out []kamailioTLSRequest
	for _, r := range rs {
		if r.CallID == callID {
			out = append(out, r)
		}
	}
	return out
}

// TestKamailioTLSTrunkAnswers proves the TLS trunk without stirgate: a Go
// TLS client calls Kamailio over TLS (INVITE, ACK, re-INVITE, BYE on one
// connection) and Kamailio logs each request as arrived over TLS, with or
// without Identity, with the client certificate's subject. With client
// certificates required, a client without one, with an expired one or
// with one from another CA fails the handshake and no request is
// processed; a Kamailio presenting a certificate of another CA is refused
// by the client.
func TestKamailioTLSTrunkAnswers(t *testing.T) {
	requireKamailioTLS(t)
	pki := newTLSPKI(t, "")
	pbx := pki.Client(t, "pbx1", "pbx1.example.net")
	const identity = "eyJhbGciOiJFUzI1NiJ9.e30.c2ln;info=<http://127.0.0.1:1/sp.pem>;alg=ES256;ppt=shaken"

	t.Run("optional", func(t *testing.T) {
		k := startKamailioTLS(t, kamailioTLSConfig{PKI: pki, VerifyClient: "optional"})
		tlsTrunkCall(t, k, pki.ClientConfig(pbx), "tls-cert@test", identity)
		tlsTrunkCall(t, k, pki.ClientConfig(nil), "tls-nocert@test", "")
		rs := k.waitRequests(10, 5*time.Second)
		for _, call := range []struct {
			id, cn, dns, uri, issuer, verified string
			identity                           bool
		}{
			{"tls-cert@test", "pbx1.example.net", "pbx1.example.net", "sip:pbx1.example.net", "stirgate test TLS CA", "1", true},
			{"tls-nocert@test", "<null>", "<null>", "<null>", "<null>", "0", false},
		} {
			got := requestsOf(rs, call.id)
			var methods []string
			for i, r := range got {
				methods = append(methods, r.Method)
				if r.Proto != "tls" || r.Act != "answer" || r.Verified != call.verified || !strings.HasPrefix(r.TLSVersion, "TLSv1.") ||
					r.PeerCN != call.cn || r.PeerDNS != call.dns || r.PeerURI != call.uri || r.PeerIssuer != call.issuer {
					t.Errorf("%s: logged %s\nwant proto=tls act=answer verified=%s peer_cn=%s peer_dns=%s peer_uri=%s peer_issuer=%s",
						call.id, r.Line, call.verified, call.cn, call.dns, call.uri, call.issuer)
				}
				if want := call.identity && i == 0; r.Identity != want {
					t.Errorf("%s: identity=%v logged for %s, want %v", call.id, r.Identity, r.Method, want)
				}
			}
			if strings.Join(methods, " ") != "INVITE ACK INVITE ACK BYE" {
				t.Errorf("%s: Kamailio logged %q, want INVITE ACK INVITE ACK BYE", call.id, methods)
			}
		}
	})

	t.Run("required", func(t *testing.T) {
		k := startKamailioTLS(t, kamailioTLSConfig{PKI: pki, VerifyClient: "required"})
		tlsTrunkCall(t, k, pki.ClientConfig(pbx), "tls-required-ok@test", identity)

		refused := []struct {
			name  string
			cert  *tlsCert
			alert string // the TLS alert Kamailio (OpenSSL) sends
		}{
			{"no certificate", nil, "certificate required"},
			{"expired", pki.ExpiredClient(t, "pbx-expired", "pbx1.example.net"), "expired certificate"},
			{"other CA", pki.ForeignClient(t, "pbx-foreign", "pbx1.example.net"), "unknown certificate authority"},
		}
		for i, tc := range refused {
			callID := fmt.Sprintf("tls-refused-%d@test", i)
			err := func() error {
				c, err := dialSIPTLS(k.TLSAddr(), pki.ClientConfig(tc.cert))
				if err != nil {
					return err
				}
				defer c.Close()
				// TLS 1.3: the client's handshake ends before the server
				// has checked its certificate; the alert comes on read.
				u := &tlsUAC{c: c, target: k.TLSAddr()}
				res, _, err := u.invite(callID, identity)
				if err == nil {
					return fmt.Errorf("answered %d", res.StatusCode)
				}
				return err
			}()
			if err == nil || !strings.Contains(err.Error(), tc.alert) {
				t.Errorf("%s: %v, want a TLS alert %q", tc.name, err, tc.alert)
			}
		}
		rs := k.waitRequests(5, 5*time.Second)
		if got := requestsOf(rs, "tls-required-ok@test"); len(got) != 5 || got[0].PeerCN != "pbx1.example.net" || got[0].Verified != "1" {
			t.Errorf("required, valid client: logged %v", got)
		}
		for i := range refused {
			if got := requestsOf(rs, fmt.Sprintf("tls-refused-%d@test", i)); len(got) > 0 {
				t.Errorf("%s: Kamailio processed a request: %s", refused[i].name, got[0].Line)
			}
		}
	})

	t.Run("verify identity", func(t *testing.T) {
		requireSecsipidx(t)
		ipki := newInteropPKI(t)
		cs := startCertServer(t, ipki.Dir)
		k := startKamailioTLS(t, kamailioTLSConfig{PKI: pki, VerifyClient: "required", Verify: true,
			LibOpts: []string{"CertVerify=5", "CertCAFile=" + ipki.Path("root.pem")}})
		id := secsipidxSign(t, ipki.Path("sp.key"), cs.URL("sp.pem"), "A", "15551230001", "15559870002")
		tlsTrunkCall(t, k, pki.ClientConfig(pbx), "tls-verify-ok@test", id)
		for _, tc := range []struct {
			callID, identity string
			want             int
		}{
			{"tls-verify-tampered@test", tamper(id), 438},
			{"tls-verify-missing@test", "", 428},
		} {
			c, err := dialSIPTLS(k.TLSAddr(), pki.ClientConfig(pbx))
			if err != nil {
				t.Fatal(err)
			}
			u := &tlsUAC{c: c, target: k.TLSAddr()}
			res, _, err := u.invite(tc.callID, tc.identity)
			c.Close()
			if err != nil {
				t.Fatal(err)
			}
			if res.StatusCode != tc.want {
				t.Errorf("%s: answered %d, want %d", tc.callID, res.StatusCode, tc.want)
			}
		}
		k.waitVerdicts(3, 5*time.Second)
		got := map[string]string{}
		for _, v := range k.Verdicts() {
			got[v.CallID] = v.Result
			if !strings.Contains(v.Line, "proto=tls") {
				t.Errorf("verdict not over TLS: %s", v.Line)
			}
		}
		want := map[string]string{"tls-verify-ok@test": "ok", "tls-verify-tampered@test": "fail", "tls-verify-missing@test": "missing"}
		for id, w := range want {
			if got[id] != w {
				t.Errorf("%s: verdict %q, want %q", id, got[id], w)
			}
		}
	})

	// Many handshakes, each connection then used: the guard on
	// tcp_children=1 in kamailio-tls.cfg.tmpl (with several TCP workers
	// Kamailio 5.6.3 + OpenSSL 3 corrupted memory and died within a few
	// hundred handshakes here).
	t.Run("handshakes", func(t *testing.T) {
		k := startKamailioTLS(t, kamailioTLSConfig{PKI: pki, VerifyClient: "required"})
		const workers, each = 4, 100
		errs := make(chan error, workers)
		for w := range workers {
			go func() {
				errs <- func() error {
					for i := range each {
						c, err := dialSIPTLS(k.TLSAddr(), pki.ClientConfig(pbx))
						if err != nil {
							return fmt.Errorf("handshake %d/%d: %w", w, i, err)
						}
						if i%2 == 1 {
							c.Close() // a connection that only shook hands
							continue
						}
						err = c.Send(fmt.Sprintf("OPTIONS sip:%s;transport=tls SIP/2.0\r\nVia: SIP/2.0/TLS %s;branch=z9hG4bK-hs-%d-%d\r\n"+
							"Max-Forwards: 70\r\nFrom: <sip:pbx@127.0.0.1>;tag=hs%d\r\nTo: <sip:%s>\r\nCall-ID: hs-%d-%d@test\r\n"+
							"CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n", k.TLSAddr(), c.LocalAddr(), w, i, i, k.TLSAddr(), w, i))
						var res *sip.Response
						if err == nil {
							res, err = c.Response("OPTIONS", 1, 10*time.Second)
						}
						c.Close()
						if err != nil {
							return fmt.Errorf("connection %d/%d: OPTIONS: %w", w, i, err)
						}
						if res.StatusCode != 200 {
							return fmt.Errorf("connection %d/%d: OPTIONS answered %d", w, i, res.StatusCode)
						}
					}
					return nil
				}()
			}()
		}
		for range workers {
			if err := <-errs; err != nil {
				t.Error(err)
			}
		}
		for _, bad := range []string{"BUG:", "CRITICAL", "ALERT"} {
			if strings.Contains(k.Log(), bad) {
				t.Errorf("Kamailio logged %q after %d handshakes", bad, workers*each)
			}
		}
	})

	t.Run("untrusted server", func(t *testing.T) {
		bad := pki.Issue(t, tlsCertSpec{Name: "server-other", CN: "localhost", DNS: []string{"localhost"},
			IPs: []net.IP{net.IPv4(127, 0, 0, 1)}, Server: true, OtherCA: true})
		k := startKamailioTLS(t, kamailioTLSConfig{PKI: pki, Cert: bad.CertPath, Key: bad.KeyPath})
		_, err := dialSIPTLS(k.TLSAddr(), pki.ClientConfig(pbx))
		var unknown x509.UnknownAuthorityError
		if !errors.As(err, &unknown) {
			t.Errorf("client to a Kamailio with another CA's certificate: %v, want unknown authority", err)
		}
		if rs := k.Requests(); len(rs) != 0 {
			t.Errorf("Kamailio processed a request: %s", rs[0].Line)
		}
	})
}

// TestKamailioTLSRelaysToTLSPeer proves Kamailio as a TLS client (the
// inbound direction toward stirgate's outside realm): SIPp calls over UDP
// into Kamailio's relay port, Kamailio relays over TLS, presenting its
// certificate, to a Go TLS listener that requires a client certificate of
// the PKI; ACK and BYE follow Kamailio's Record-Route over the same TLS
// side. A relay target whose certificate is from another CA gets nothing:
// the handshake fails and SIPp's call fails.
func TestKamailioTLSRelaysToTLSPeer(t *testing.T) {
	requireSipp(t)
	requireKamailioTLS(t)
	pki := newTLSPKI(t, "")

	t.Run("trusted", func(t *testing.T) {
		uas := startTLSUAS(t, pki.ServerConfig())
		k := startKamailioTLS(t, kamailioTLSConfig{PKI: pki, RelayTo: uas.Addr()})
		const calls = 5
		res := runSipp(t, sippRun{Name: "uac-relay-tls", Scenario: "uac.xml", Remote: k.RelayAddr(),
			Calls: calls, Rate: 10, PauseMS: 50, Timeout: 30 * time.Second})
		res.require(t, calls)
		res.requireNoStray(t)

		byCall := map[string][]string{}
		conns := map[string]bool{}
		for _, r := range uas.Requests() {
			byCall[r.CallID] = append(byCall[r.CallID], r.Method)
			conns[r.Conn] = true
			if r.PeerCN != "localhost" {
				t.Errorf("%s %s over a connection with client certificate CN %q, want Kamailio's (localhost)", r.Method, r.CallID, r.PeerCN)
			}
		}
		if len(byCall) != calls {
			t.Errorf("the TLS peer saw %d calls, want %d: %v", len(byCall), calls, byCall)
		}
		for id, ms := range byCall {
			if strings.Join(ms, " ") != "INVITE ACK BYE" {
				t.Errorf("%s: the TLS peer got %v, want INVITE ACK BYE", id, ms)
			}
		}
		if len(conns) != 1 {
			t.Errorf("Kamailio used %d TLS connections, want 1 reused for every call", len(conns))
		}
		if errs := uas.Errors(); len(errs) > 0 {
			t.Errorf("TLS peer errors: %v", errs)
		}

		rs := k.waitRequests(3*calls, 5*time.Second)
		var relayed, routed int
		for _, r := range rs {
			switch {
			case r.Method == "INVITE" && r.Act == "relay" && r.Proto == "udp":
				relayed++
			case (r.Method == "ACK" || r.Method == "BYE") && r.Act == "route" && r.Proto == "udp":
				routed++
			default:
				t.Errorf("unexpected request line: %s", r.Line)
			}
		}
		if relayed != calls || routed != 2*calls {
			t.Errorf("Kamailio relayed %d INVITEs and routed %d ACK/BYE, want %d and %d", relayed, routed, calls, 2*calls)
		}
		var tlsOK int
		for _, r := range k.Replies() {
			if r.Status == 200 && r.Proto == "tls" && r.Src == uas.Addr() {
				tlsOK++
			}
		}
		if tlsOK != 2*calls {
			t.Errorf("Kamailio got %d 200s over TLS from the peer, want %d (INVITE and BYE per call)", tlsOK, 2*calls)
		}
	})

	t.Run("untrusted peer", func(t *testing.T) {
		bad := pki.Issue(t, tlsCertSpec{Name: "peer-other", CN: "localhost", DNS: []string{"localhost"},
			IPs: []net.IP{net.IPv4(127, 0, 0, 1)}, Server: true, OtherCA: true})
		cfg := pki.ServerConfig()
		cfg.Certificates = []tls.Certificate{bad.TLS()}
		uas := startTLSUAS(t, cfg)
		k := startKamailioTLS(t, kamailioTLSConfig{PKI: pki, RelayTo: uas.Addr()})
		res := runSipp(t, sippRun{Name: "uac-relay-untrusted", Scenario: "uac.xml", Remote: k.RelayAddr(),
			Calls: 1, Rate: 10, Timeout: 20 * time.Second})
		if res.Successful != 0 || res.Failed != 1 {
			t.Errorf("SIPp: %d successful, %d failed calls; want the call to fail", res.Successful, res.Failed)
		}
		if rs := uas.Requests(); len(rs) != 0 {
			t.Errorf("the untrusted peer received %v", rs)
		}
		if errs := uas.Errors(); len(errs) == 0 {
			t.Error("the untrusted peer saw no failed handshake")
		}
		rs := k.waitRequests(2, 5*time.Second)
		if len(rs) == 0 || rs[0].Method != "INVITE" || rs[0].Act != "relay" {
			t.Fatalf("Kamailio did not relay the INVITE: %v", rs)
		}
		if got := k.RelayFailures()[rs[0].CallID]; got != 408 {
			t.Errorf("relayed INVITE to the untrusted peer ended with %d, want Kamailio's 408", got)
		}
		if !strings.Contains(k.Log(), "certificate verify failed") {
			t.Error("Kamailio logged no certificate verification failure")
		}
	})
}
