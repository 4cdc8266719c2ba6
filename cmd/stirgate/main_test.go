package main

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/stirgate/stirgate/certs"
	"github.com/stirgate/stirgate/cmd/stirgate/admin"
	"github.com/stirgate/stirgate/sip"
	"github.com/stirgate/stirgate/sip/media"
	"github.com/stirgate/stirgate/verify"
)

func TestSignCommandOutputVerifies(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pki")
	if err := certs.InitPKI(certs.InitOptions{Dir: dir}); err != nil {
		t.Fatal(err)
	}
	s, err := certs.LoadSigner(filepath.Join(dir, "sp.key"), filepath.Join(dir, "sp.pem"), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	const x5u = "https://cr.example.net/sp.pem"
	out, err := sign(filepath.Join(dir, "sp.key"), x5u, "B", "+1 (202) 555-0199", "1-202-555-0100", "0b6a8a0e-2f8e-4a39-9a6b-6f0a1d2c3e4f", 1700000000)
	if err != nil {
		t.Fatal(err)
	}
	jws, params, _ := strings.Cut(out, ";")
	if params != "info=<"+x5u+">;alg=ES256;ppt=shaken" {
		t.Fatalf("params %q", params)
	}
	tok, err := jwt.Parse(jws, func(*jwt.Token) (any, error) { return &s.Key.PublicKey, nil },
		jwt.WithValidMethods([]string{"ES256"}), jwt.WithoutClaimsValidation())
	if err != nil {
		t.Fatal(err)
	}
	c := tok.Claims.(jwt.MapClaims)
	if c["attest"] != "B" || c["iat"].(float64) != 1700000000 || c["origid"] != "0b6a8a0e-2f8e-4a39-9a6b-6f0a1d2c3e4f" ||
		c["orig"].(map[string]any)["tn"] != "12025550199" || c["dest"].(map[string]any)["tn"].([]any)[0] != "12025550100" {
		t.Fatalf("claims %v", c)
	}
	for _, bad := range [][]string{
		{"", x5u, "A", "1", "2"},
		{filepath.Join(dir, "sp.key"), x5u, "D", "1", "2"},
		{filepath.Join(dir, "sp.key"), x5u, "A", "anonymous", "2"},
		{filepath.Join(dir, "root.pem"), x5u, "A", "1", "2"},
	} {
		if _, err := sign(bad[0], bad[1], bad[2], bad[3], bad[4], "", 0); err == nil {
			t.Errorf("sign(%q) accepted", bad)
		}
	}
}

func TestConfigCheck(t *testing.T) {
	if rc := run([]string{"config", "check", "../../configs/stirgate.yaml"}); rc != 0 {
		t.Fatalf("config check of the example = %d", rc)
	}
	if rc := run([]string{"config", "check", "does-not-exist.yaml"}); rc == 0 {
		t.Fatal("config check of a missing file succeeded")
	}
}

func TestVerifyCommandWithLocalCert(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pki")
	if err := certs.InitPKI(certs.InitOptions{Dir: dir}); err != nil {
		t.Fatal(err)
	}
	const x5u = "https://cr.example.net/sp.pem"
	id, err := sign(filepath.Join(dir, "sp.key"), x5u, "A", "12025550199", "12025550100", "", 0)
	if err != nil {
		t.Fatal(err)
	}
	trust := []string{filepath.Join(dir, "root.pem")}
	cert := filepath.Join(dir, "sp.pem")
	x := verify.X5UConfig{}
	v, err := verifyOnce(id, "+1 202 555 0199", "12025550100", trust, 0, cert, time.Minute, x)
	if err != nil || !v.Passed || v.Attest != "A" || v.SPC == "" {
		t.Fatalf("verdict %+v, %v", v, err)
	}
	v, err = verifyOnce(id, "12025550111", "12025550100", trust, 0, cert, time.Minute, x)
	if err != nil || v.Passed || v.Code != 438 {
		t.Fatalf("orig mismatch: %+v, %v", v, err)
	}
	v, err = verifyOnce(id, "12025550199", "12025550100", trust, time.Now().Add(time.Hour).Unix(), cert, time.Minute, x)
	if err != nil || v.Passed || v.Code != 403 {
		t.Fatalf("an hour later: %+v, %v", v, err)
	}
}

func TestAdminToken(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	const secret = "s3cret-token-0123456789"
	for _, tt := range []struct {
		name, path, want string
	}{
		{"none configured", "", ""},
		{"good", write("good", secret+"\n", 0o600), ""},
		{"world readable", write("open", secret, 0o644), "readable by group or others"},
		{"too short", write("short", "abc", 0o600), "at least 16"},
		{"two words", write("words", "abcdefgh ijklmnopq", 0o600), "without spaces"},
		{"missing", filepath.Join(dir, "nope"), "no such file"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tok, err := readAdminToken(tt.path)
			if tt.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				if tt.path != "" && tok != secret {
					t.Fatalf("token %q", tok)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "abcdefgh") {
				t.Fatalf("error shows the token: %v", err)
			}
		})
	}

	h := admin.RequireToken(secret, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "profile") }))
	for _, tt := range []struct {
		auth string
		want int
	}{
		{"", http.StatusUnauthorized},
		{"Bearer wrong-token-0123456789", http.StatusUnauthorized},
		{"Basic " + secret, http.StatusUnauthorized},
		{"Bearer " + secret, http.StatusOK},
		{"bearer " + secret, http.StatusOK},
	} {
		req := httptest.NewRequest(http.MethodGet, "/debug/pprof/heap", nil)
		if tt.auth != "" {
			req.Header.Set("Authorization", tt.auth)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != tt.want {
			t.Errorf("Authorization %q: %d, want %d", tt.auth, rec.Code, tt.want)
		}
	}
}

// TestExplain: the dry run says which stage rejects a call and forwards
// the others (exit 3 and 0), with the policy files of the config.
func TestExplain(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	write("policy.yaml", "lists:\n  - name: dnc\n    numbers: [\"+1 202 555 0199\"]\nrules:\n  - name: dnc\n    type: dnc\n    lists: [dnc]\n    action: {type: reject}\n")
	cfg := write("stirgate.yaml", `mode: production
sip:
  realms:
    inside: {listen: [{transport: udp, addr: "127.0.0.1:0"}], next_hop: "sip:127.0.0.1:5090", trusted: ["127.0.0.0/8"], udp: {oversize: reject}}
    outside: {listen: [{transport: udp, addr: "127.0.0.1:0"}], next_hop: "sip:127.0.0.1:5080", trusted: ["127.0.0.0/8"], udp: {oversize: reject}}
attest: {enabled: false}
policy: {files: [policy.yaml]}
`)
	inviteTo := func(name, callee string) string {
		return write(name, "INVITE sip:"+callee+"@127.0.0.1 SIP/2.0\nVia: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-1\n"+
			"From: <sip:+12025550100@127.0.0.1>;tag=1\nTo: <sip:"+callee+"@127.0.0.1>\nCall-ID: x@test\nCSeq: 1 INVITE\nContent-Length: 0\n\n")
	}
	for _, tt := range []struct {
		args []string
		want int
	}{
		{[]string{"explain", "--config", cfg, inviteTo("dnc.sip", "+12025550199")}, 3},
		{[]string{"explain", "--config", cfg, inviteTo("ok.sip", "+12025550142")}, 0},
		{[]string{"explain", "--config", cfg, "--realm", "outside", inviteTo("in.sip", "+12025550142")}, 0},
		{[]string{"explain", "--config", cfg, "--from", "nowhere", inviteTo("x.sip", "+12025550142")}, 2},
		{[]string{"explain", "--config", cfg, filepath.Join(dir, "missing.sip")}, 1},
	} {
		if got := run(tt.args); got != tt.want {
			t.Errorf("stirgate %s = %d, want %d", strings.Join(tt.args, " "), got, tt.want)
		}
	}
}

// TestExplainNamesAnnouncement: a dry run of a call rejected with an
// announcement says what the caller would hear, and how long.
func TestExplainNamesAnnouncement(t *testing.T) {
	a, err := media.NewAnnouncement(media.SITIntercept, nil, 1)
	if err != nil {
		t.Fatal(err)
	}
	rej := sip.Reject(603, "Decline", errors.New("rule dnc")).(*sip.Rejection)
	rej.Announce = a
	var b strings.Builder
	if code := printExplanation(&b, "inside", &sip.Call{DecidedBy: "policy"}, nil, rej); code != 3 {
		t.Errorf("exit %d, want 3", code)
	}
	if want := "announcement: intercept, 928ms of early media before the rejection"; !strings.Contains(b.String(), want) {
		t.Errorf("explanation:\n%s\nwant a line %q", b.String(), want)
	}
}
