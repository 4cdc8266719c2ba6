package integration

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"
)

// testPKI runs `stirgate certs init` into a temp dir and returns it.
func testPKI(t *testing.T, x5uBase string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "pki")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, stirgateBinary(t), "certs", "init", "--dir", dir, "--x5u-base", x5uBase).CombinedOutput()
	if err != nil {
		t.Fatalf("stirgate certs init: %v\n%s", err, out)
	}
	return dir
}

// attestYAML is an attest: section signing for one customer on loopback
// that owns the number SIPp calls from (+15551230001).
func attestYAML(pki, x5u string) string {
	return fmt.Sprintf(`attest:
  enabled: true
  key: %q
  cert: %q
  x5u: %q
  customers:
    - name: it-pbx
      sources: ["127.0.0.0/8"]
      numbers: ["+1 555 123 0001"]
      trust_pai: true
`, filepath.Join(pki, "sp.key"), filepath.Join(pki, "sp.pem"), x5u)
}

// identities reads the Identity header values of the INVITEs in a SIPp
// -trace_msg file.
func identities(t *testing.T, messagesLog string) []string {
	t.Helper()
	f, err := os.Open(messagesLog)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "Identity: "); ok {
			out = append(out, strings.TrimSpace(v))
		}
	}
	return out
}

// fetchX5U gets the chain from the x5u URL like a verifier and returns the
// leaf's public key, checking the repository's headers on the way.
func fetchX5U(t *testing.T, x5u string) *ecdsa.PublicKey {
	t.Helper()
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Get(x5u)
	if err != nil {
		t.Fatalf("GET x5u: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/pem-certificate-chain" || !strings.Contains(resp.Header.Get("Cache-Control"), "max-age=") {
		t.Fatalf("GET x5u: %s, Content-Type %q, Cache-Control %q", resp.Status, resp.Header.Get("Content-Type"), resp.Header.Get("Cache-Control"))
	}
	if strings.Contains(string(body), "PRIVATE KEY") {
		t.Fatal("the x5u repository served a private key")
	}
	block, rest := pem.Decode(body)
	if block == nil || !strings.Contains(string(rest), "BEGIN CERTIFICATE") {
		t.Fatal("x5u body is not a leaf followed by its chain")
	}
	leaf, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	pub, ok := leaf.PublicKey.(*ecdsa.PublicKey)
	if !ok {
		t.Fatalf("leaf key is %T", leaf.PublicKey)
	}
	return pub
}

// TestSignedCalls sends SIPp calls through the inside realm with signing on
// and checks, at the callee, what a verifier would: every INVITE carries one
// full-form Identity whose signature verifies with the certificate fetched
// from its x5u, and whose claims are what the call was.
func TestSignedCalls(t *testing.T) {
	requireSipp(t)
	const calls = 50
	cfg := newProxyConfig(t)
	x5u := fmt.Sprintf("http://%s/certs/sp.pem", hostPort(cfg.AdminPort))
	pki := testPKI(t, fmt.Sprintf("http://%s/certs/", hostPort(cfg.AdminPort)))
	cfg.Extra = attestYAML(pki, x5u)
	p := startProxy(t, cfg)

	start := time.Now()
	uas := startSipp(t, sippRun{Name: "uas", Scenario: "uas.xml", Port: cfg.TrunkPort, Calls: calls, Timeout: 60 * time.Second})
	uac := runSipp(t, sippRun{Name: "uac", Scenario: "uac.xml", Remote: cfg.InsideAddr(), Calls: calls, Rate: 50, Timeout: 60 * time.Second})
	uac.require(t, calls)
	res := uas.Wait(t)
	res.require(t, calls)
	end := time.Now()

	pub := fetchX5U(t, x5u)
	ids := identities(t, filepath.Join(res.Dir, "messages.log"))
	if len(ids) != calls {
		t.Fatalf("callee saw %d Identity headers in %d calls, want one per INVITE", len(ids), calls)
	}
	origids := map[string]bool{}
	for i, id := range ids {
		jws, params, ok := strings.Cut(id, ";")
		if !ok || params != "info=<"+x5u+">;alg=ES256;ppt=shaken" {
			t.Fatalf("Identity %d parameters %q", i, params)
		}
		tok, err := jwt.Parse(jws, func(*jwt.Token) (any, error) { return pub, nil }, jwt.WithValidMethods([]string{"ES256"}))
		if err != nil {
			t.Fatalf("Identity %d does not verify with the x5u certificate: %v", i, err)
		}
		if tok.Header["x5u"] != x5u || tok.Header["ppt"] != "shaken" || tok.Header["typ"] != "passport" {
			t.Errorf("Identity %d header %v", i, tok.Header)
		}
		c := tok.Claims.(jwt.MapClaims)
		if c["attest"] != "A" {
			t.Errorf("Identity %d attest %v, want A (the customer owns +15551230001)", i, c["attest"])
		}
		if orig := c["orig"].(map[string]any)["tn"]; orig != "15551230001" {
			t.Errorf("Identity %d orig.tn %v", i, orig)
		}
		if dest := c["dest"].(map[string]any)["tn"].([]any); len(dest) != 1 || dest[0] != "15559870002" {
			t.Errorf("Identity %d dest.tn %v", i, dest)
		}
		iat := time.Unix(int64(c["iat"].(float64)), 0)
		if iat.Before(start.Truncate(time.Second)) || iat.After(end) {
			t.Errorf("Identity %d iat %s outside the run %s..%s", i, iat, start, end)
		}
		origid, _ := c["origid"].(string)
		if _, err := uuid.Parse(origid); err != nil || origids[origid] {
			t.Errorf("Identity %d origid %q: not a fresh UUID", i, origid)
		}
		origids[origid] = true
	}
	// Traceback: every origid is in a call record with its customer.
	recorded := 0
	for _, l := range p.callLogLines() {
		for id := range origids {
			if strings.Contains(l, "origid="+id) && strings.Contains(l, "customer=it-pbx") && strings.Contains(l, "attest=A") {
				recorded++
			}
		}
	}
	if recorded != calls {
		t.Errorf("%d of %d origids found in call records with customer and attestation", recorded, calls)
	}
}

// TestKeyRotationOnSIGHUP rotates the signing key while SIPp calls flow,
// the way verifiers' caches allow: the new key and certificate under a new
// x5u URL, then SIGHUP. Every Identity verifies with the key published at
// its own x5u (the old URL keeps serving the old chain), the first calls
// carry the old x5u and the last the new. Before that, a new key under the
// old URL is refused: verifiers that cached the old certificate would
// reject every new signature.
func TestKeyRotationOnSIGHUP(t *testing.T) {
	requireSipp(t)
	const calls = 150 // 3 s at 50 calls/s
	cfg := newProxyConfig(t)
	base := fmt.Sprintf("http://%s/certs/", hostPort(cfg.AdminPort))
	x5u, x5uNext := base+"sp.pem", base+"sp-2.pem"
	pki := testPKI(t, base)
	next := testPKI(t, base)
	cfg.Extra = attestYAML(pki, x5u)
	p := startProxy(t, cfg)
	path := p.cmd.Args[len(p.cmd.Args)-1]
	oldPub := fetchX5U(t, x5u)
	reload := func(extra string) {
		t.Helper()
		c := cfg
		c.Extra = extra
		if err := os.WriteFile(path, []byte(c.YAML()), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := p.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
	}

	reload(attestYAML(next, x5u))
	if !waitLog(t, p, "the signing key changed but the x5u URL did not") {
		t.Fatalf("a new key under the old x5u was not refused:\n%s", tail(p.Log(), 20))
	}
	if reloadGauge(t, p) != 0 || !fetchX5U(t, x5u).Equal(oldPub) {
		t.Fatal("the refused rotation changed the gauge or the published chain")
	}

	uas := startSipp(t, sippRun{Name: "uas", Scenario: "uas.xml", Port: cfg.TrunkPort, Calls: calls, Timeout: 60 * time.Second})
	uac := startSipp(t, sippRun{Name: "uac", Scenario: "uac.xml", Remote: cfg.InsideAddr(), Calls: calls, Rate: 50, Timeout: 60 * time.Second})
	time.Sleep(1500 * time.Millisecond) // about half the calls under the old key
	reload(attestYAML(next, x5uNext))
	uacRes := uac.Wait(t)
	uacRes.require(t, calls)
	res := uas.Wait(t)
	res.require(t, calls)
	if !strings.Contains(p.Log(), "config reloaded") {
		t.Fatalf("no successful reload in the log:\n%s", tail(p.Log(), 20))
	}

	keys := map[string]*ecdsa.PublicKey{x5u: fetchX5U(t, x5u), x5uNext: fetchX5U(t, x5uNext)}
	if !keys[x5u].Equal(oldPub) || keys[x5uNext].Equal(oldPub) {
		t.Fatal("after the rotation the old x5u must serve the old certificate and the new one the new")
	}
	ids := identities(t, filepath.Join(res.Dir, "messages.log"))
	infoOf := func(id string) string {
		_, params, _ := strings.Cut(id, ";info=<")
		u, _, _ := strings.Cut(params, ">")
		return u
	}
	verifies := func(id string) bool {
		pub := keys[infoOf(id)]
		jws, _, _ := strings.Cut(id, ";")
		_, err := jwt.Parse(jws, func(*jwt.Token) (any, error) { return pub, nil }, jwt.WithValidMethods([]string{"ES256"}))
		return pub != nil && err == nil
	}
	if len(ids) != calls || infoOf(ids[0]) != x5u || infoOf(ids[len(ids)-1]) != x5uNext {
		t.Fatalf("%d identities; first x5u %q, last %q; want %d from %s to %s", len(ids), infoOf(ids[0]), infoOf(ids[len(ids)-1]), calls, x5u, x5uNext)
	}
	for i, id := range ids {
		if !verifies(id) {
			t.Errorf("Identity %d does not verify with the key published at its x5u %s", i, infoOf(id))
		}
	}
}

// TestRefusesUnsafeKey: a key file others can read, or a certificate that
// does not match the key, stops stirgate at start with the path and the
// reason; no key material reaches the output.
func TestRefusesUnsafeKey(t *testing.T) {
	tests := []struct {
		name  string
		spoil func(t *testing.T, pki string)
		want  string
	}{
		{"world-readable key", func(t *testing.T, pki string) {
			if err := os.Chmod(filepath.Join(pki, "sp.key"), 0o644); err != nil {
				t.Fatal(err)
			}
		}, "sp.key"},
		{"certificate of another key", func(t *testing.T, pki string) {
			other := testPKI(t, "http://127.0.0.1/certs/")
			b, err := os.ReadFile(filepath.Join(other, "sp.pem"))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(pki, "sp.pem"), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}, "sp.pem"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := newProxyConfig(t)
			x5u := fmt.Sprintf("http://%s/certs/sp.pem", hostPort(cfg.AdminPort))
			pki := testPKI(t, x5u)
			tt.spoil(t, pki)
			cfg.Extra = attestYAML(pki, x5u)
			key, err := os.ReadFile(filepath.Join(pki, "sp.key"))
			if err != nil {
				t.Fatal(err)
			}
			path := writeConfig(t, cfg)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			out, err := exec.CommandContext(ctx, stirgateBinary(t), "serve", "--config", path).CombinedOutput()
			if err == nil || ctx.Err() != nil {
				t.Fatalf("stirgate started (err %v):\n%s", err, out)
			}
			if !strings.Contains(string(out), tt.want) {
				t.Errorf("output does not name %s:\n%s", tt.want, out)
			}
			body := strings.Join(strings.Split(strings.TrimSpace(string(key)), "\n")[1:2], "")
			if strings.Contains(string(out), body) {
				t.Errorf("key material in the output:\n%s", out)
			}
		})
	}
}
