package integration

// Interop with an independent STIR/SHAKEN implementation: secsipidx, the
// CLI of the secsipid library (Debian package secsipidx). See
// interop/README.md for the commands these helpers run and what secsipid
// checks. A missing secsipidx skips these tests, or fails them when CI=true.

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// requireTool returns the path of an executable, skipping the test when it
// is missing, or failing it under CI=true.
func requireTool(t testing.TB, name, debPackages string, candidates ...string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, c := range candidates {
		if st, err := os.Stat(c); err == nil && !st.IsDir() {
			return c
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s not found (CI=true): install the Debian packages %s", name, debPackages)
	}
	t.Skipf("%s not found; install the Debian packages %s", name, debPackages)
	return ""
}

// requireSecsipidx returns the secsipidx binary.
func requireSecsipidx(t testing.TB) string {
	t.Helper()
	return requireTool(t, "secsipidx", "secsipidx", "/usr/bin/secsipidx")
}

// ---------------------------------------------------------------------------
// A certificate repository: the x5u / info URLs point here.

// certServer serves the files of a directory at /certs/ on a loopback port
// and counts the requests per path.
type certServer struct {
	Base string // http://127.0.0.1:PORT/certs/
	dir  string
	srv  *http.Server

	mu   sync.Mutex
	hits map[string]int
}

func startCertServer(t testing.TB, dir string) *certServer {
	t.Helper()
	l, err := net.Listen("tcp", net.JoinHostPort(loopback, "0"))
	if err != nil {
		t.Fatalf("cert server: %v", err)
	}
	cs := &certServer{
		Base: fmt.Sprintf("http://%s/certs/", l.Addr()),
		dir:  dir,
		hits: map[string]int{},
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /certs/{name}", func(w http.ResponseWriter, r *http.Request) {
		name := r.PathValue("name")
		cs.mu.Lock()
		cs.hits[name]++
		dir := cs.dir
		cs.mu.Unlock()
		if strings.ContainsAny(name, `/\`) || strings.HasPrefix(name, ".") || strings.HasSuffix(name, ".key") {
			http.NotFound(w, r)
			return
		}
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/pem-certificate-chain")
		w.Write(b)
	})
	cs.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go cs.srv.Serve(l)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		cs.srv.Shutdown(ctx)
	})
	return cs
}

// SetDir changes the directory served.
func (cs *certServer) SetDir(dir string) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	cs.dir = dir
}

// URL is the address of a file served from the directory.
func (cs *certServer) URL(name string) string { return cs.Base + name }

// Hits is how many requests asked for name.
func (cs *certServer) Hits(name string) int {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	return cs.hits[name]
}

// ---------------------------------------------------------------------------
// A test STI PKI made here, independent of stirgate's `certs init`, so that
// the harness test proves secsipidx and Kamailio without stirgate.

// interopPKI is root -> intermediate -> SP leaf, all P-256, in a directory:
// root.pem, ca.pem, sp.pem (leaf + intermediate), sp-leaf.pem, sp.key,
// plus the variants below signed with the same SP key.
type interopPKI struct {
	Dir string
}

// oidTNAuthList is the TN Authorization List extension (RFC 8226).
var oidTNAuthList = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 1, 26}

// pkiVariant is a leaf certificate file written next to sp.pem.
type pkiVariant struct {
	File             string
	NotBefore        time.Time
	NotAfter         time.Time
	CriticalTNAuth   bool
	IssuerIsStranger bool // signed by an intermediate under another root
}

func newInteropPKI(t testing.TB, variants ...pkiVariant) interopPKI {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "interop-pki")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	newKey := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	serial := int64(1)
	create := func(tmpl *x509.Certificate, parent *x509.Certificate, pub *ecdsa.PublicKey, signer *ecdsa.PrivateKey) *x509.Certificate {
		serial++
		tmpl.SerialNumber = big.NewInt(serial)
		if parent == nil {
			parent = tmpl
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, signer)
		if err != nil {
			t.Fatalf("interop PKI: %v", err)
		}
		c, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	ca := func(name string, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (*x509.Certificate, *ecdsa.PrivateKey) {
		k := newKey()
		tmpl := &x509.Certificate{
			Subject:               pkix.Name{Organization: []string{"stirgate interop"}, CommonName: name},
			NotBefore:             now.Add(-time.Hour),
			NotAfter:              now.Add(10 * 365 * 24 * time.Hour),
			KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
			BasicConstraintsValid: true,
			IsCA:                  true,
		}
		signer := parentKey
		if signer == nil {
			signer = k
		}
		return create(tmpl, parent, &k.PublicKey, signer), k
	}
	root, rootKey := ca("interop Test Root", nil, nil)
	inter, interKey := ca("interop Test Intermediate", root, rootKey)
	strangerRoot, strangerRootKey := ca("stranger Root", nil, nil)
	stranger, strangerKey := ca("stranger Intermediate", strangerRoot, strangerRootKey)

	spKey := newKey()
	// TNAuthList with one SPC "TEST01": SEQUENCE { [0] EXPLICIT IA5String }
	tnAuth := []byte{0x30, 0x0a, 0xa0, 0x08, 0x16, 0x06, 'T', 'E', 'S', 'T', '0', '1'}
	leaf := func(v pkiVariant) []byte {
		issuer, issuerKey := inter, interKey
		if v.IssuerIsStranger {
			issuer, issuerKey = stranger, strangerKey
		}
		if v.NotBefore.IsZero() {
			v.NotBefore = now.Add(-time.Hour)
		}
		if v.NotAfter.IsZero() {
			v.NotAfter = now.Add(365 * 24 * time.Hour)
		}
		tmpl := &x509.Certificate{
			Subject:               pkix.Name{Organization: []string{"stirgate interop SP"}, CommonName: "SHAKEN TEST01"},
			NotBefore:             v.NotBefore,
			NotAfter:              v.NotAfter,
			KeyUsage:              x509.KeyUsageDigitalSignature,
			BasicConstraintsValid: true,
			ExtraExtensions:       []pkix.Extension{{Id: oidTNAuthList, Critical: v.CriticalTNAuth, Value: tnAuth}},
		}
		c := create(tmpl, issuer, &spKey.PublicKey, issuerKey)
		return append(pemCert(c), pemCert(issuer)...)
	}
	write := func(name string, b []byte) {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("root.pem", pemCert(root))
	write("ca.pem", pemCert(inter))
	chain := leaf(pkiVariant{})
	write("sp.pem", chain)
	blk, _ := pem.Decode(chain)
	write("sp-leaf.pem", pem.EncodeToMemory(blk))
	keyDER, err := x509.MarshalECPrivateKey(spKey)
	if err != nil {
		t.Fatal(err)
	}
	write("sp.key", pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}))
	for _, v := range variants {
		write(v.File, leaf(v))
	}
	return interopPKI{Dir: dir}
}

func pemCert(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}

func (p interopPKI) Path(name string) string { return filepath.Join(p.Dir, name) }

// ---------------------------------------------------------------------------
// secsipidx

// runTool runs a command (bounded) and returns its exit code and combined
// output; a start failure or the time bound fails the test.
func runTool(t testing.TB, bound time.Duration, name string, args ...string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), bound)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.WaitDelay = 2 * time.Second
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("%s %s: killed after %s\n%s", name, strings.Join(args, " "), bound, out)
	}
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("%s: %v", name, err)
	}
	return cmd.ProcessState.ExitCode(), string(out)
}

// secsipidxSign returns a full Identity header value signed by secsipidx
// (-sign-full: iat is now; secsipidx ignores -iat in this mode).
func secsipidxSign(t testing.TB, key, x5u, attest, orig, dest string) string {
	t.Helper()
	bin := requireSecsipidx(t)
	code, out := runTool(t, 20*time.Second, bin, "-sign-full", "-k", key, "-x5u", x5u,
		"-attest", attest, "-orig-tn", orig, "-dest-tn", dest)
	id := strings.TrimSpace(out)
	if code != 0 || !strings.Contains(id, ";info=<") {
		t.Fatalf("secsipidx -sign-full: exit %d\n%s", code, out)
	}
	return id
}

// secsipidxSignAt signs a PASSporT with a given iat (-sign, the compact
// form) and appends the parameters -sign-full would write.
func secsipidxSignAt(t testing.TB, key, x5u, attest, orig, dest string, iat int64) string {
	t.Helper()
	bin := requireSecsipidx(t)
	code, out := runTool(t, 20*time.Second, bin, "-sign", "-k", key, "-x5u", x5u,
		"-attest", attest, "-orig-tn", orig, "-dest-tn", dest, "-iat", strconv.FormatInt(iat, 10))
	jws := strings.TrimSpace(out)
	if code != 0 || strings.Count(jws, ".") != 2 {
		t.Fatalf("secsipidx -sign: exit %d\n%s", code, out)
	}
	return jws + ";info=<" + x5u + ">;alg=ES256;ppt=shaken"
}

// secsipidCode names the libsecsipid return codes (secsipid.go,
// SJWTRetErr*, v1.2.0).
var secsipidCode = map[int]string{
	0:    "ok",
	-1:   "generic error (e.g. no public key given)",
	-101: "certificate invalid (chain verification)",
	-102: "certificate format",
	-103: "certificate expired",
	-104: "certificate not yet valid",
	-105: "certificate processing",
	-106: "no CA file",
	-107: "CA file unreadable",
	-108: "no intermediate CA file",
	-109: "intermediate CA file unreadable",
	-110: "no CRL file",
	-111: "CRL file unreadable",
	-112: "certificate revoked",
	-114: "certificate key not EC",
	-151: "private key invalid",
	-152: "private key format / not EC",
	-201: "JWT header parse",
	-202: "JWT header alg",
	-203: "JWT header ppt",
	-204: "JWT header typ",
	-205: "JWT header x5u differs from info",
	-231: "payload parse",
	-232: "payload iat missing or older than expire",
	-251: "signature invalid",
	-252: "signature hashing",
	-253: "signature size",
	-254: "signature failure",
	-301: "SIP header parse (e.g. no parameters)",
	-302: "SIP header alg",
	-303: "SIP header ppt or info",
	-304: "SIP header empty",
	-401: "invalid URL",
	-402: "HTTP GET failed",
	-403: "HTTP status not 200",
	-404: "HTTP body read",
	-451: "file read",
}

// secsipidFromExit maps secsipidx's exit status back to the libsecsipid
// code: the CLI exits with the (negative) code, which the OS keeps modulo
// 256 (-251 -> 5, -403 -> 109); no two codes collide.
func secsipidFromExit(status int) int {
	if status == 0 {
		return 0
	}
	for c := range secsipidCode {
		if c != 0 && (c%256+256)%256 == status {
			return c
		}
	}
	return status - 256
}

// secsipidCheck is one secsipidx -check run.
type secsipidCheck struct {
	Identity   string
	PubKey     string // -fpubkey: a PEM file, or an http(s) URL (fetched)
	Expire     int    // -expire: seconds after iat the PASSporT is stale
	CertVerify int    // -cert-verify bit flags (1 time, 4 -ca-file, 8 -ca-inter)
	CAFile     string // -ca-file
	CAInter    string // -ca-inter
}

// secsipidResult is what secsipidx said.
type secsipidResult struct {
	OK     bool
	Code   int // libsecsipid code: 0, or the exit status read as a negative byte
	Output string
	Args   []string
}

func (r secsipidResult) String() string {
	return fmt.Sprintf("code %d (%s), output %q, args %q", r.Code, secsipidCode[r.Code], strings.TrimSpace(r.Output), r.Args)
}

// run writes the Identity to a file and runs secsipidx -check on it.
func (c secsipidCheck) run(t testing.TB) secsipidResult {
	t.Helper()
	bin := requireSecsipidx(t)
	f := filepath.Join(t.TempDir(), "identity.txt")
	if err := os.WriteFile(f, []byte(c.Identity), 0o644); err != nil {
		t.Fatal(err)
	}
	args := []string{"-check", "-fidentity", f, "-fpubkey", c.PubKey, "-expire", strconv.Itoa(c.Expire), "-timeout", "3"}
	if c.CertVerify != 0 {
		args = append(args, "-cert-verify", strconv.Itoa(c.CertVerify))
	}
	if c.CAFile != "" {
		args = append(args, "-ca-file", c.CAFile)
	}
	if c.CAInter != "" {
		args = append(args, "-ca-inter", c.CAInter)
	}
	code, out := runTool(t, 20*time.Second, bin, args...)
	res := secsipidResult{Output: out, Args: append([]string{bin}, args...)}
	res.Code = secsipidFromExit(code)
	last := strings.TrimSpace(out)
	if i := strings.LastIndex(last, "\n"); i >= 0 {
		last = last[i+1:]
	}
	res.OK = code == 0 && last == "ok"
	if code == 0 && !res.OK {
		t.Fatalf("secsipidx exited 0 without saying ok: %s", res)
	}
	return res
}

// infoParam returns the info URL of a full Identity header value.
func infoParam(t testing.TB, identity string) string {
	t.Helper()
	_, params, _ := strings.Cut(identity, ";")
	for p := range strings.SplitSeq(params, ";") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(p), "info="); ok {
			return strings.TrimSuffix(strings.TrimPrefix(v, "<"), ">")
		}
	}
	t.Fatalf("no info parameter in %q", identity)
	return ""
}

// secsipidxServer is `secsipidx -http-srv`: POST an Identity value to
// /v1/check and it verifies it with the certificate it downloads from the
// header's info URL (no -fpubkey): the verifier side of secsipid end to end.
type secsipidxServer struct {
	URL     string
	cmd     *exec.Cmd
	logPath string
	done    chan struct{}
}

func startSecsipidxServer(t testing.TB, expire, certVerify int, caFile string) *secsipidxServer {
	t.Helper()
	bin := requireSecsipidx(t)
	port := freePort(t)
	dir := t.TempDir()
	args := []string{"-http-srv", hostPort(port), "-expire", strconv.Itoa(expire), "-timeout", "3"}
	if certVerify != 0 {
		args = append(args, "-cert-verify", strconv.Itoa(certVerify))
	}
	if caFile != "" {
		args = append(args, "-ca-file", caFile)
	}
	s := &secsipidxServer{URL: "http://" + hostPort(port) + "/v1/check", logPath: filepath.Join(dir, "secsipidx.log"), done: make(chan struct{})}
	f, err := os.Create(s.logPath)
	if err != nil {
		t.Fatal(err)
	}
	s.cmd = exec.Command(bin, args...)
	s.cmd.Stdout, s.cmd.Stderr = f, f
	if err := s.cmd.Start(); err != nil {
		f.Close()
		t.Fatalf("start secsipidx server: %v", err)
	}
	go func() { s.cmd.Wait(); f.Close(); close(s.done) }()
	t.Cleanup(func() {
		s.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-s.done:
		case <-time.After(5 * time.Second):
			s.cmd.Process.Kill()
			<-s.done
		}
		if t.Failed() {
			t.Logf("secsipidx %s log:\n%s", strings.Join(args, " "), tail(readFile(s.logPath), 40))
		}
	})
	if err := waitBound(context.Background(), "tcp", port, s.done); err != nil {
		t.Fatalf("secsipidx server: %v\n%s", err, readFile(s.logPath))
	}
	return s
}

// Check posts the Identity value; ok is true for 200 "OK". reason is the
// server's last log line about it.
func (s *secsipidxServer) Check(t testing.TB, identity string) (ok bool, reason string) {
	t.Helper()
	before := len(readFile(s.logPath))
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Post(s.URL, "text/plain", strings.NewReader(identity))
	if err != nil {
		t.Fatalf("secsipidx /v1/check: %v", err)
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	resp.Body.Close()
	log := readFile(s.logPath)
	if len(log) >= before {
		reason = strings.TrimSpace(log[before:])
	}
	ok = resp.StatusCode == http.StatusOK && strings.TrimSpace(string(body)) == "OK"
	return ok, fmt.Sprintf("%s %q; log: %s", resp.Status, bytes.TrimSpace(body), reason)
}

// tamper flips one character of the signature of a full Identity value.
func tamper(identity string) string {
	jws, params, _ := strings.Cut(identity, ";")
	i := strings.LastIndex(jws, ".") + 5
	c := byte('A')
	if jws[i] == 'A' {
		c = 'B'
	}
	return jws[:i] + string(c) + jws[i+1:] + ";" + params
}

// passportClaims decodes the payload of an Identity value (no verification).
func passportClaims(t testing.TB, identity string) map[string]any {
	t.Helper()
	jws, _, _ := strings.Cut(identity, ";")
	parts := strings.Split(jws, ".")
	if len(parts) != 3 {
		t.Fatalf("Identity %q: not a compact JWS", identity)
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatalf("Identity payload: %v", err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("Identity payload: %v", err)
	}
	return m
}

// ---------------------------------------------------------------------------
// Tests

// TestSecsipidxVerifiesSecsipidxHeader proves the harness without stirgate:
// secsipidx signs, secsipidx verifies with the certificate fetched from the
// info URL (our HTTP server), and every kind of bad header is refused with
// the libsecsipid code that names it, so a pass elsewhere means something.
func TestSecsipidxVerifiesSecsipidxHeader(t *testing.T) {
	requireSecsipidx(t)
	now := time.Now()
	pki := newInteropPKI(t,
		pkiVariant{File: "expired.pem", NotBefore: now.Add(-48 * time.Hour), NotAfter: now.Add(-24 * time.Hour)},
		pkiVariant{File: "critical.pem", CriticalTNAuth: true},
		pkiVariant{File: "stranger.pem", IssuerIsStranger: true},
	)
	cs := startCertServer(t, pki.Dir)
	key := pki.Path("sp.key")
	x5u := cs.URL("sp.pem")
	id := secsipidxSign(t, key, x5u, "A", "12025550199", "12025550100")
	if got := infoParam(t, id); got != x5u {
		t.Fatalf("secsipidx wrote info=<%s>, want %s", got, x5u)
	}

	accept := []struct {
		name string
		c    secsipidCheck
	}{
		{"key fetched from info", secsipidCheck{Identity: id, PubKey: infoParam(t, id), Expire: 60}},
		{"local leaf file", secsipidCheck{Identity: id, PubKey: pki.Path("sp-leaf.pem"), Expire: 60}},
		{"chain to root, times checked", secsipidCheck{Identity: id, PubKey: x5u, Expire: 60, CertVerify: 5, CAFile: pki.Path("root.pem")}},
		{"leaf only, intermediate from -ca-inter", secsipidCheck{Identity: id, PubKey: pki.Path("sp-leaf.pem"), Expire: 60, CertVerify: 13, CAFile: pki.Path("root.pem"), CAInter: pki.Path("ca.pem")}},
	}
	for _, tc := range accept {
		t.Run("accept/"+tc.name, func(t *testing.T) {
			if res := tc.c.run(t); !res.OK {
				t.Fatalf("secsipidx refused a header it signed: %s", res)
			}
		})
	}
	if cs.Hits("sp.pem") == 0 {
		t.Error("secsipidx never fetched sp.pem from the certificate server")
	}

	stale := secsipidxSignAt(t, key, x5u, "A", "12025550199", "12025550100", now.Unix()-120)
	mismatch := strings.Replace(id, "info=<"+x5u+">", "info=<"+cs.URL("copy.pem")+">", 1)
	if err := os.WriteFile(pki.Path("copy.pem"), readFileBytes(t, pki.Path("sp.pem")), 0o644); err != nil {
		t.Fatal(err)
	}
	signedWith := func(file string) string {
		return secsipidxSign(t, key, cs.URL(file), "A", "12025550199", "12025550100")
	}
	reject := []struct {
		name string
		c    secsipidCheck
		code int
	}{
		{"tampered signature", secsipidCheck{Identity: tamper(id), PubKey: x5u, Expire: 60}, -251},
		{"iat older than expire", secsipidCheck{Identity: stale, PubKey: x5u, Expire: 60}, -232},
		{"x5u differs from info", secsipidCheck{Identity: mismatch, PubKey: cs.URL("copy.pem"), Expire: 60}, -205},
		{"certificate 404", secsipidCheck{Identity: id, PubKey: cs.URL("missing.pem"), Expire: 60}, -403},
		{"chain without the CA file", secsipidCheck{Identity: id, PubKey: x5u, Expire: 60, CertVerify: 5}, -106},
		{"chain to another root", secsipidCheck{Identity: signedWith("stranger.pem"), PubKey: cs.URL("stranger.pem"), Expire: 60, CertVerify: 5, CAFile: pki.Path("root.pem")}, -101},
		{"expired certificate", secsipidCheck{Identity: signedWith("expired.pem"), PubKey: cs.URL("expired.pem"), Expire: 60, CertVerify: 5, CAFile: pki.Path("root.pem")}, -103},
		{"critical TNAuthList", secsipidCheck{Identity: signedWith("critical.pem"), PubKey: cs.URL("critical.pem"), Expire: 60, CertVerify: 5, CAFile: pki.Path("root.pem")}, -101},
	}
	for _, tc := range reject {
		t.Run("reject/"+tc.name, func(t *testing.T) {
			res := tc.c.run(t)
			if res.OK || res.Code != tc.code {
				t.Fatalf("want code %d (%s), got %s", tc.code, secsipidCode[tc.code], res)
			}
		})
	}
	// The stale header verifies with a window that covers it: only iat
	// made the difference.
	if res := (secsipidCheck{Identity: stale, PubKey: x5u, Expire: 600}).run(t); !res.OK {
		t.Errorf("stale header with expire 600: %s", res)
	}

	t.Run("server fetches from info", func(t *testing.T) {
		srv := startSecsipidxServer(t, 60, 5, pki.Path("root.pem"))
		before := cs.Hits("sp.pem")
		if ok, why := srv.Check(t, id); !ok {
			t.Fatalf("secsipidx server refused: %s", why)
		}
		if cs.Hits("sp.pem") != before+1 {
			t.Errorf("sp.pem fetched %d times for one check, want 1", cs.Hits("sp.pem")-before)
		}
		if ok, why := srv.Check(t, tamper(id)); ok {
			t.Fatalf("secsipidx server accepted a tampered header: %s", why)
		}
		if ok, why := srv.Check(t, mismatch); ok {
			t.Fatalf("secsipidx server accepted x5u != info: %s", why)
		}
	})
}

func readFileBytes(t testing.TB, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// stirgateSign runs `stirgate sign` and returns the Identity value.
func stirgateSign(t testing.TB, args ...string) string {
	t.Helper()
	code, out := runTool(t, 30*time.Second, stirgateBinary(t), append([]string{"sign"}, args...)...)
	id := strings.TrimSpace(out)
	if code != 0 || strings.Count(id, "\n") != 0 || !strings.Contains(id, ";info=<") {
		t.Fatalf("stirgate sign %s: exit %d\n%s", strings.Join(args, " "), code, out)
	}
	return id
}

// TestSecsipidxVerifiesStirgateSign: what `stirgate sign` prints verifies in
// secsipidx, with the certificate fetched from its x5u and the chain checked
// against the root of `stirgate certs init`, for every attestation level;
// its --iat is what secsipid's freshness window sees.
func TestSecsipidxVerifiesStirgateSign(t *testing.T) {
	requireSecsipidx(t)
	stirgateBinary(t)

	// The x5u repository is our HTTP server serving the certs init dir.
	cs := startCertServer(t, t.TempDir())
	pki := testPKI(t, cs.Base)
	cs.SetDir(pki)
	x5u := cs.URL("sp.pem")
	key := filepath.Join(pki, "sp.key")
	root := filepath.Join(pki, "root.pem")

	for _, level := range []string{"A", "B", "C"} {
		t.Run("attest "+level, func(t *testing.T) {
			id := stirgateSign(t, "--key", key, "--x5u", x5u, "--attest", level, "--orig", "12025550199", "--dest", "12025550100")
			if got := infoParam(t, id); got != x5u {
				t.Fatalf("info=<%s>, want the x5u %s", got, x5u)
			}
			c := passportClaims(t, id)
			if c["attest"] != level {
				t.Errorf("attest %v, want %s", c["attest"], level)
			}
			checks := []secsipidCheck{
				{Identity: id, PubKey: infoParam(t, id), Expire: 60},
				{Identity: id, PubKey: infoParam(t, id), Expire: 60, CertVerify: 5, CAFile: root},
			}
			for _, chk := range checks {
				if res := chk.run(t); !res.OK {
					t.Errorf("secsipidx refused stirgate's header: %s\nIdentity: %s", res, id)
				}
			}
			if res := (secsipidCheck{Identity: tamper(id), PubKey: x5u, Expire: 60}).run(t); res.OK || res.Code != -251 {
				t.Errorf("tampered stirgate header: want -251, got %s", res)
			}
		})
	}

	t.Run("iat and origid", func(t *testing.T) {
		const origid = "123e4567-e89b-12d3-a456-426614174000"
		iat := time.Now().Unix() - 120
		id := stirgateSign(t, "--key", key, "--x5u", x5u, "--attest", "A", "--orig", "12025550199", "--dest", "12025550100",
			"--origid", origid, "--iat", strconv.FormatInt(iat, 10))
		c := passportClaims(t, id)
		if c["origid"] != origid || c["iat"] != float64(iat) {
			t.Errorf("claims %v: want origid %s and iat %d", c, origid, iat)
		}
		if res := (secsipidCheck{Identity: id, PubKey: x5u, Expire: 60}).run(t); res.OK || res.Code != -232 {
			t.Errorf("iat 120 s old with expire 60: want -232 (stale), got %s", res)
		}
		if res := (secsipidCheck{Identity: id, PubKey: x5u, Expire: 600, CertVerify: 5, CAFile: root}).run(t); !res.OK {
			t.Errorf("iat 120 s old with expire 600: %s", res)
		}
	})

	t.Run("secsipidx server, x5u served by stirgate", func(t *testing.T) {
		cfg := newProxyConfig(t)
		base := fmt.Sprintf("http://%s/certs/", hostPort(cfg.AdminPort))
		pki := testPKI(t, base)
		x5u := base + "sp.pem"
		cfg.Extra = attestYAML(pki, x5u)
		startProxy(t, cfg)
		srv := startSecsipidxServer(t, 60, 5, filepath.Join(pki, "root.pem"))
		id := stirgateSign(t, "--key", filepath.Join(pki, "sp.key"), "--x5u", x5u, "--attest", "A", "--orig", "12025550199", "--dest", "12025550100")
		if ok, why := srv.Check(t, id); !ok {
			t.Fatalf("secsipidx (cert from stirgate's repository) refused: %s\nIdentity: %s", why, id)
		}
		if ok, why := srv.Check(t, tamper(id)); ok {
			t.Fatalf("secsipidx accepted a tampered header: %s", why)
		}
	})
}
