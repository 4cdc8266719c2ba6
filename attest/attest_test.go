package attest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"

	"github.com/stirgate/stirgate/attest/passport"
)

const testX5U = "https://cr.example.net/sp.pem"

func testKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func testService(t testing.TB, key *ecdsa.PrivateKey, mutate func(*Config)) *Service {
	t.Helper()
	cfg := Config{
		Enabled: true, Key: "k", Cert: "c", X5U: testX5U,
		Customers: []Customer{
			{Name: "acme", Sources: []string{"192.0.2.0/24"}, Numbers: []string{"+1 202 555 0100", "1202556*", "12025570000..12025570099"}, TrustPAI: true},
			{Name: "relay", Sources: []string{"198.51.100.7"}, Gateway: true},
			{Name: "strict", Sources: []string{"203.0.113.0/24"}, Numbers: []string{"12025558888"}, UnknownNumber: "reject", OrigID: "9f2a7c1e-6b1d-4e8a-9a55-0c3f5e2d7b10"},
			{Name: "selfsigner", Sources: []string{"203.0.114.1"}, SignsItself: true},
		},
	}
	if mutate != nil {
		mutate(&cfg)
	}
	cfg.ApplyDefaults()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	signer, err := NewSigner(key, cfg.X5U)
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(cfg, signer)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// decodeIdentity verifies an Identity header value with key the way an
// independent verifier would (golang-jwt parser, ES256 only) and returns the
// JOSE header and the claims.
func decodeIdentity(t *testing.T, key *ecdsa.PrivateKey, identity string) (map[string]any, map[string]any) {
	t.Helper()
	jws, params, ok := strings.Cut(identity, ";")
	if !ok || params != "info=<"+testX5U+">;alg=ES256;ppt=shaken" {
		t.Fatalf("Identity parameters = %q", params)
	}
	tok, err := jwt.Parse(jws, func(*jwt.Token) (any, error) { return &key.PublicKey, nil },
		jwt.WithValidMethods([]string{"ES256"}), jwt.WithIssuedAt())
	if err != nil {
		t.Fatalf("signature does not verify: %v", err)
	}
	return tok.Header, tok.Claims.(jwt.MapClaims)
}

// pbx1 is a client certificate acme names in withTLS.
var (
	pbx1SPKI = "3F1A0B2C3D4E5F60718293A4B5C6D7E8F90A1B2C3D4E5F60718293A4B5C6D7E8"
	pbx1     = &Peer{Subject: "CN=pbx1.example.net", DNSNames: []string{"pbx1.example.net"}, SPKI: "0000"}
)

// withTLS gives acme TLS identities: a SAN, a subject and an SPKI.
func withTLS(c *Config) {
	c.Customers[0].TLSIdentities = []string{"dns:pbx1.example.net", "subject:CN=pbx2.example.net,O=Example", "spki:" + pbx1SPKI}
}

func TestDecide(t *testing.T) {
	src := netip.MustParseAddr
	tests := []struct {
		name       string
		mutate     func(*Config)
		call       Call
		wantAttest passport.Level // "" = unsigned
		wantOrig   string
		wantCode   int // refusal code, 0 = none
		wantCust   string
		wantKeep   bool
	}{
		{"A: customer's exact number", nil, Call{Source: src("192.0.2.10"), FromTN: "12025550100", RURITN: "12025550199"}, passport.LevelA, "12025550100", 0, "acme", false},
		{"A: prefix", nil, Call{Source: src("192.0.2.10"), FromTN: "12025561234", RURITN: "12025550199"}, passport.LevelA, "12025561234", 0, "acme", false},
		{"A: range", nil, Call{Source: src("192.0.2.10"), FromTN: "12025570042", RURITN: "12025550199"}, passport.LevelA, "12025570042", 0, "acme", false},
		{"B: just past the range", nil, Call{Source: src("192.0.2.10"), FromTN: "12025570100", RURITN: "12025550199"}, passport.LevelB, "12025570100", 0, "acme", false},
		{"B: number not theirs", nil, Call{Source: src("192.0.2.10"), FromTN: "14155550100", RURITN: "12025550199"}, passport.LevelB, "14155550100", 0, "acme", false},
		{"A via trusted PAI", nil, Call{Source: src("192.0.2.10"), FromTN: "14155550100", PAITN: "12025550100", RURITN: "12025550199"}, passport.LevelA, "12025550100", 0, "acme", false},
		{"PAI of an untrusted source ignored", func(c *Config) { c.Customers[0].TrustPAI = false }, Call{Source: src("192.0.2.10"), FromTN: "14155550100", PAITN: "12025550100", RURITN: "12025550199"}, passport.LevelB, "14155550100", 0, "acme", false},
		{"C: gateway customer", nil, Call{Source: src("198.51.100.7"), FromTN: "12025550100", RURITN: "12025550199"}, passport.LevelC, "12025550100", 0, "relay", false},
		{"C: unknown source, never A", nil, Call{Source: src("127.0.0.1"), FromTN: "12025550100", RURITN: "12025550199"}, passport.LevelC, "12025550100", 0, "", false},
		{"unknown source rejected", func(c *Config) { c.UnknownSource = "reject" }, Call{Source: src("127.0.0.1"), FromTN: "12025550100", RURITN: "12025550199"}, "", "", 403, "", false},
		{"unknown number rejected", nil, Call{Source: src("203.0.113.5"), FromTN: "12025550100", RURITN: "12025550199"}, "", "", 403, "strict", false},
		{"unknown number C", func(c *Config) { c.Customers[0].UnknownNumber = "C" }, Call{Source: src("192.0.2.10"), FromTN: "14155550100", RURITN: "12025550199"}, passport.LevelC, "14155550100", 0, "acme", false},
		{"anonymous caller: unsigned", nil, Call{Source: src("192.0.2.10"), FromTN: "", RURITN: "12025550199"}, "", "", 0, "acme", false},
		{"anonymous caller: rejected", func(c *Config) { c.NoNumber = "reject" }, Call{Source: src("192.0.2.10"), RURITN: "12025550199"}, "", "", 403, "acme", false},
		{"no called number: unsigned", nil, Call{Source: src("192.0.2.10"), FromTN: "12025550100"}, "", "", 0, "acme", false},
		{"too long to be E.164: unsigned", nil, Call{Source: src("192.0.2.10"), FromTN: "1202555010012345", RURITN: "12025550199"}, "", "", 0, "acme", false},
		{"called number from To", func(c *Config) { c.CalledNumber = "to" }, Call{Source: src("192.0.2.10"), FromTN: "12025550100", RURITN: "", ToTN: "12025550199"}, passport.LevelA, "12025550100", 0, "acme", false},
		{"Identity from inside refused", nil, Call{Source: src("192.0.2.10"), FromTN: "12025550100", RURITN: "12025550199", Identities: 1}, "", "", 403, "acme", false},
		{"Identity from inside replaced", func(c *Config) { c.IdentityFromInside = "replace" }, Call{Source: src("192.0.2.10"), FromTN: "12025550100", RURITN: "12025550199", Identities: 1}, passport.LevelA, "12025550100", 0, "acme", false},
		{"pass: a customer that signs itself", func(c *Config) { c.IdentityFromInside = "pass" }, Call{Source: src("203.0.114.1"), FromTN: "12025550100", RURITN: "12025550199", Identities: 1}, "", "", 0, "selfsigner", true},
		{"pass: anyone else refused", func(c *Config) { c.IdentityFromInside = "pass" }, Call{Source: src("192.0.2.10"), FromTN: "12025550100", RURITN: "12025550199", Identities: 1}, "", "", 403, "acme", false},
		// Mutual TLS: the certificate names the customer, wherever the call comes from.
		{"A: certificate SAN, any source", withTLS, Call{Source: src("127.0.0.1"), FromTN: "12025550100", RURITN: "12025550199", TLS: pbx1}, passport.LevelA, "12025550100", 0, "acme", false},
		{"A: certificate SPKI", withTLS, Call{Source: src("127.0.0.1"), FromTN: "12025550100", RURITN: "12025550199", TLS: &Peer{Subject: "CN=other", SPKI: strings.ToLower(pbx1SPKI)}}, passport.LevelA, "12025550100", 0, "acme", false},
		{"A: certificate subject", withTLS, Call{Source: src("127.0.0.1"), FromTN: "12025550100", RURITN: "12025550199", TLS: &Peer{Subject: "CN=pbx2.example.net,O=Example", SPKI: "00"}}, passport.LevelA, "12025550100", 0, "acme", false},
		{"C: its source without the certificate", withTLS, Call{Source: src("192.0.2.10"), FromTN: "12025550100", RURITN: "12025550199"}, passport.LevelC, "12025550100", 0, "acme", false},
		{"C: its source with a certificate not its own", withTLS, Call{Source: src("192.0.2.10"), FromTN: "12025550100", RURITN: "12025550199", TLS: &Peer{Subject: "CN=intruder", SPKI: "00"}}, passport.LevelC, "12025550100", 0, "acme", false},
		{"B: unauthenticated B caps A", func(c *Config) { withTLS(c); c.Unauthenticated = "B" }, Call{Source: src("192.0.2.10"), FromTN: "12025550100", RURITN: "12025550199"}, passport.LevelB, "12025550100", 0, "acme", false},
		{"unauthenticated reject", func(c *Config) { withTLS(c); c.Unauthenticated = "reject" }, Call{Source: src("192.0.2.10"), FromTN: "12025550100", RURITN: "12025550199"}, "", "", 403, "acme", false},
		{"customer without tls_identities: source is enough", nil, Call{Source: src("192.0.2.10"), FromTN: "12025550100", RURITN: "12025550199", TLS: &Peer{Subject: "CN=x", SPKI: "00"}}, passport.LevelA, "12025550100", 0, "acme", false},
	}
	key := testKey(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := testService(t, key, tt.mutate)
			before := time.Now().Unix()
			d, err := s.Decide(tt.call)
			var r *Refusal
			if tt.wantCode != 0 {
				if !errors.As(err, &r) || r.Code != tt.wantCode {
					t.Fatalf("err = %v, want refusal %d", err, tt.wantCode)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			wantBy := BySource
			if tt.call.Source.String() == "127.0.0.1" { // no customer's source: found by certificate
				wantBy = ByTLS
			}
			if tt.wantCust != "" && d.IdentifiedBy != wantBy {
				t.Errorf("identified by %q, want %q", d.IdentifiedBy, wantBy)
			}
			if d.Customer != tt.wantCust || d.Keep != tt.wantKeep || d.Attest != tt.wantAttest {
				t.Fatalf("decision = %+v", d)
			}
			if tt.wantAttest == "" {
				if d.Identity != "" {
					t.Fatalf("unsigned call got Identity %q", d.Identity)
				}
				return
			}
			hdr, claims := decodeIdentity(t, key, d.Identity)
			if hdr["alg"] != "ES256" || hdr["typ"] != "passport" || hdr["ppt"] != "shaken" || hdr["x5u"] != testX5U || len(hdr) != 4 {
				t.Errorf("JOSE header = %v", hdr)
			}
			if claims["attest"] != string(tt.wantAttest) {
				t.Errorf("attest = %v, want %s", claims["attest"], tt.wantAttest)
			}
			if orig := claims["orig"].(map[string]any)["tn"]; orig != tt.wantOrig {
				t.Errorf("orig.tn = %v, want %s", orig, tt.wantOrig)
			}
			dest := claims["dest"].(map[string]any)["tn"].([]any)
			if len(dest) != 1 || dest[0] != "12025550199" {
				t.Errorf("dest.tn = %v", dest)
			}
			iat := int64(claims["iat"].(float64))
			if iat < before || iat > time.Now().Unix() {
				t.Errorf("iat = %d, not now", iat)
			}
			origid, _ := claims["origid"].(string)
			if _, err := uuid.Parse(origid); err != nil || origid != d.OrigID {
				t.Errorf("origid = %q (decision %q)", origid, d.OrigID)
			}
		})
	}
}

func TestOrigIDPerCustomerOrPerCall(t *testing.T) {
	s := testService(t, testKey(t), nil)
	strict := Call{Source: netip.MustParseAddr("203.0.113.5"), FromTN: "12025558888", RURITN: "12025550199"}
	d, err := s.Decide(strict)
	if err != nil || d.OrigID != "9f2a7c1e-6b1d-4e8a-9a55-0c3f5e2d7b10" {
		t.Fatalf("configured origid not used: %+v %v", d, err)
	}
	acme := Call{Source: netip.MustParseAddr("192.0.2.10"), FromTN: "12025550100", RURITN: "12025550199"}
	d1, _ := s.Decide(acme)
	d2, _ := s.Decide(acme)
	if d1.OrigID == d2.OrigID {
		t.Fatal("origid repeated for two calls of a customer without a fixed one")
	}
}

func TestClaimsAreCanonicalJSON(t *testing.T) {
	p := passport.Claims{Attest: passport.LevelA, Orig: "12025550100", Dest: []string{"12025550199", "12025550198"}, IAT: 1700000000, OrigID: "9f2a7c1e-6b1d-4e8a-9a55-0c3f5e2d7b10"}
	b, err := appendClaims(nil, p)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"attest":"A","dest":{"tn":["12025550199","12025550198"]},"iat":1700000000,"orig":{"tn":"12025550100"},"origid":"9f2a7c1e-6b1d-4e8a-9a55-0c3f5e2d7b10"}`
	if string(b) != want {
		t.Fatalf("claims\n%s\nwant\n%s", b, want)
	}
	if !json.Valid(b) {
		t.Fatal("invalid JSON")
	}
	bad := []passport.Claims{
		{Attest: "D", Orig: "1", Dest: []string{"2"}, OrigID: p.OrigID},
		{Attest: passport.LevelA, Orig: "1\"x", Dest: []string{"2"}, OrigID: p.OrigID},
		{Attest: passport.LevelA, Orig: "1", Dest: []string{"2\\"}, OrigID: p.OrigID},
		{Attest: passport.LevelA, Orig: "1", Dest: nil, OrigID: p.OrigID},
		{Attest: passport.LevelA, Orig: "1", Dest: []string{"2"}, OrigID: "not-a-uuid"},
	}
	for _, bp := range bad {
		if _, err := appendClaims(nil, bp); !errors.Is(err, ErrClaims) {
			t.Errorf("%+v: err = %v, want ErrClaims", bp, err)
		}
	}
}

func TestSignerRefusesOtherKeys(t *testing.T) {
	k384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if _, err := NewSigner(k384, testX5U); !errors.Is(err, ErrKey) {
		t.Fatalf("P-384 key: err = %v", err)
	}
	if _, err := NewSigner(testKey(t), "ftp://x/y.pem"); err == nil {
		t.Fatal("accepted a non-http x5u")
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*Config)
		want   string
	}{
		{"ok", func(*Config) {}, ""},
		{"no key", func(c *Config) { c.Key = "" }, "key:"},
		{"x5u scheme", func(c *Config) { c.X5U = "file:///etc/passwd" }, "x5u:"},
		{"x5u with ;", func(c *Config) { c.X5U = "https://a/b;c" }, "x5u:"},
		{"mode", func(c *Config) { c.IdentityFromInside = "ignore" }, "identity_from_inside:"},
		{"bad source", func(c *Config) { c.Customers[0].Sources = []string{"x"} }, "customers[0].sources[0]:"},
		{"bad number", func(c *Config) { c.Customers[0].Numbers = []string{"12ab"} }, "customers[0].numbers[0]:"},
		{"bad range", func(c *Config) { c.Customers[0].Numbers = []string{"1299..1200"} }, "customers[0].numbers[0]:"},
		{"bad origid", func(c *Config) { c.Customers[0].OrigID = "x" }, "customers[0].origid:"},
		{"dup name", func(c *Config) { c.Customers = append(c.Customers, c.Customers[0]) }, "customers[1].name:"},
		{"unknown_number", func(c *Config) { c.Customers[0].UnknownNumber = "A" }, "customers[0].unknown_number:"},
		{"tls identity kind", func(c *Config) { c.Customers[0].TLSIdentities = []string{"cn:pbx1"} }, "customers[0].tls_identities[0]:"},
		{"tls identity spki", func(c *Config) { c.Customers[0].TLSIdentities = []string{"spki:abc"} }, "customers[0].tls_identities[0]: \"spki:abc\": spki: wants the 64 hex digits"},
		{"tls identities without sources", func(c *Config) { c.Customers[0].Sources, c.Customers[0].TLSIdentities = nil, []string{"dns:pbx1"} }, ""},
		{"no sources, no identities", func(c *Config) { c.Customers[0].Sources = nil }, "customers[0].sources:"},
		{"unauthenticated A", func(c *Config) { c.Unauthenticated = "A" }, "unauthenticated:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Config{Enabled: true, Key: "k", Cert: "c", X5U: testX5U, Customers: []Customer{{Name: "a", Sources: []string{"10.0.0.0/8"}}}}
			tt.mutate(&c)
			c.ApplyDefaults()
			err := c.Validate()
			if (err == nil) != (tt.want == "") || (err != nil && !strings.Contains(err.Error(), tt.want)) {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
		})
	}
}

// BenchmarkSign is the cost of one signature through the signer, next to a
// raw P-256 ecdsa.Sign of the same digest size in the same run:
//
//	go test ./attest -run '^$' -bench 'Sign' -benchmem
func BenchmarkSign(b *testing.B) {
	key := testKey(b)
	s, err := NewSigner(key, testX5U)
	if err != nil {
		b.Fatal(err)
	}
	p := passport.Claims{Attest: passport.LevelA, Orig: "12025550100", Dest: []string{"12025550199"}, IAT: time.Now().Unix(), OrigID: uuid.NewString()}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Sign(p); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkRawECDSASignP256(b *testing.B) {
	key := testKey(b)
	digest := sha256.Sum256([]byte(strings.Repeat("x", 300)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ecdsa.SignASN1(rand.Reader, key, digest[:]); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecide(b *testing.B) {
	s := testService(b, testKey(b), nil)
	c := Call{Source: netip.MustParseAddr("192.0.2.10"), FromTN: "12025550100", RURITN: "12025550199"}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Decide(c); err != nil {
			b.Fatal(err)
		}
	}
}
