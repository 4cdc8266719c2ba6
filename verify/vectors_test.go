package verify

// Public test vectors from signalwire/libstirshaken (MIT), copied byte for
// byte into testdata/libstirshaken; README.md there names every file's
// original path and commit.
//
// What the vectors show about us: every PASSporT libstirshaken publishes
// carries "orig" and "dest" as JSON *strings* holding an encoded object
// ("orig":"{\"tn\":\"01256789999\"}"), and the inner dest.tn is a string, not
// an array. RFC 8225 5.2.1 makes orig a JSON object {"tn": <string>} and dest
// a JSON object whose "tn" is an array of strings; RFC 8588 and ATIS-1000074
// 5.2.3 require the same for SHAKEN. So DecodeClaims is right to refuse them
// (438, ErrClaims), even though the signatures are genuine and the chains
// verify. Because the verifier checks claims before it fetches or checks a
// certificate, no published vector reaches the credential stage through
// Service.Verify; the credential expectations (pool credentials accept the
// chain, TNAuthList-enforcing credentials refuse it: the SP certificate's
// TNAuthList extension is a bare IA5String URI, not a TNAuthorizationList) are
// tested against the Credentials directly.

import (
	"context"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/stirgate/stirgate/certs"
)

const lsDir = "testdata/libstirshaken"

func lsRead(t testing.TB, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(lsDir, name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// lsCert parses the one PEM certificate in a testdata file.
func lsCert(t testing.TB, name string) *x509.Certificate {
	t.Helper()
	blk, _ := pem.Decode([]byte(lsRead(t, name)))
	if blk == nil || blk.Type != "CERTIFICATE" {
		t.Fatalf("%s: no PEM certificate", name)
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return c
}

func lsPool(t testing.TB, names ...string) *x509.CertPool {
	t.Helper()
	p := x509.NewCertPool()
	for _, n := range names {
		p.AddCert(lsCert(t, n))
	}
	return p
}

// lsLineAfter returns the line that follows the line equal to label in a
// libstirshaken reference text file (passport.txt, spc_token*.txt).
func lsLineAfter(t testing.TB, name, label string) string {
	t.Helper()
	lines := strings.Split(lsRead(t, name), "\n")
	for i, l := range lines {
		if l == label {
			for _, v := range lines[i+1:] {
				if v != "" {
					return v
				}
			}
		}
	}
	t.Fatalf("%s: no %q", name, label)
	return ""
}

// lsAnySource serves the same chain for any x5u (the vectors' x5u hosts are
// long gone, and no network is used).
type lsAnySource []*x509.Certificate

func (s lsAnySource) Chain(context.Context, string) ([]*x509.Certificate, error) { return s, nil }

// lsTNAuthCredentials is poolCredentials plus what production requires of
// the leaf: a well-formed TNAuthList holding an SPC.
type lsTNAuthCredentials struct{ poolCredentials }

func (c lsTNAuthCredentials) Check(chain []*x509.Certificate, iat, now time.Time) (Credential, error) {
	cred, err := c.poolCredentials.Check(chain, iat, now)
	if err != nil {
		return Credential{}, err
	}
	l, err := certs.TNAuthListOf(chain[0])
	if err != nil {
		return Credential{}, fmt.Errorf("TNAuthList: %w", err)
	}
	if len(l.SPCs) == 0 {
		return Credential{}, errors.New("TNAuthList holds no SPC")
	}
	cred.SPC = l.SPCs[0]
	if len(l.TNs) > 0 || len(l.Ranges) > 0 {
		cred.Covers = l.Covers
	}
	return cred, nil
}

// lsPASSporT is one signed PASSporT published by libstirshaken.
type lsPASSporT struct {
	name     string
	source   string // original path (see README.md)
	identity string // as published: an Identity header value, or a bare JWS
	bare     bool   // identity is a bare JWS, without info/alg/ppt parameters

	// Decoded values, as libstirshaken encoded them.
	x5u    string
	attest string
	orig   string // the orig claim: a JSON string holding an object
	dest   string // the dest claim: likewise
	origTN string // tn inside orig
	destTN string // tn inside dest (a string, not an array)
	iat    int64
	origid string

	// The certificate whose key signed it, and that certificate's root.
	leaf, root string
}

func lsPASSporTs(t testing.TB) []lsPASSporT {
	const (
		x5uCloud = "http://shaken.signalwire.cloud/sp.pem"
		x5uCom   = "http://shaken.signalwire.com/sp.pem"
		orig     = `{"tn":"01256789999"}`
		dest     = `{"tn":"01256500600"}`
	)
	return []lsPASSporT{
		{
			name: "passport.txt JWS", source: "test/ref/sp/passport.txt",
			identity: lsLineAfter(t, "passport.txt", "PASSporT signed is:"), bare: true,
			x5u: x5uCloud, attest: "A", orig: orig, dest: dest, origTN: "01256789999", destTN: "01256500600",
			iat: 1603458131, origid: "ref", leaf: "sp.pem", root: "ca.pem",
		},
		{
			name: "passport.txt Identity header", source: "test/ref/sp/passport.txt",
			identity: lsLineAfter(t, "passport.txt", "SIP Identity Header with PASSporT is:"),
			x5u:      x5uCloud, attest: "A", orig: orig, dest: dest, origTN: "01256789999", destTN: "01256500600",
			iat: 1603458131, origid: "ref", leaf: "sp.pem", root: "ca.pem",
		},
		{
			// The same JWS is embedded in test/stir_shaken_test_14.c, which
			// serves it with sp_test14.pem (same key, other CA).
			name: "passport.txt JWS, test_14 chain", source: "test/ref/sp/passport.txt + test/stir_shaken_test_14.c",
			identity: lsLineAfter(t, "passport.txt", "PASSporT signed is:"), bare: true,
			x5u: x5uCloud, attest: "A", orig: orig, dest: dest, origTN: "01256789999", destTN: "01256500600",
			iat: 1603458131, origid: "ref", leaf: "sp_test14.pem", root: "480434bb.0",
		},
		{
			name: "older test_14 JWS", source: "test/stir_shaken_test_14.c (earlier version)",
			identity: strings.TrimSpace(lsRead(t, "passport_test14_old.jws")), bare: true,
			x5u: x5uCom, attest: "A", orig: orig, dest: dest, origTN: "01256789999", destTN: "01256500600",
			iat: 1599258938, origid: "ref", leaf: "sp.pem", root: "ca.pem",
		},
	}
}

// header returns the Identity header value: bare JWSs get the parameters
// libstirshaken's own Identity header adds (passport.txt shows one).
func (v lsPASSporT) header() string {
	if !v.bare {
		return v.identity
	}
	return v.identity + ";info=<" + v.x5u + ">;alg=ES256;ppt=shaken"
}

func lsWantFailure(t *testing.T, err error, code int, kind error) {
	t.Helper()
	var f *Failure
	if !errors.As(err, &f) || f.Code != code || !errors.Is(err, kind) {
		t.Fatalf("error %v, want %d %v", err, code, kind)
	}
}

// TestVectorLibstirshakenDecode decodes each published PASSporT: the JOSE
// header is a valid SHAKEN header; the claims are string-typed and refused.
func TestVectorLibstirshakenDecode(t *testing.T) {
	for _, v := range lsPASSporTs(t) {
		t.Run(v.name, func(t *testing.T) {
			if v.bare {
				// RFC 8224 4.1: info is mandatory in the Identity header.
				_, err := ParseIdentity(v.identity)
				lsWantFailure(t, err, 438, ErrMalformed)
			}
			id, err := ParseIdentity(v.header())
			if err != nil {
				t.Fatal(err)
			}
			if id.Info != v.x5u || id.Alg != "ES256" || id.Ppt != "shaken" {
				t.Fatalf("parameters %+v", id)
			}
			if id.JWS != strings.SplitN(v.identity, ";", 2)[0] {
				t.Fatalf("JWS %q", id.JWS)
			}

			h, err := DecodeHeader(id.HeaderB64)
			if err != nil {
				t.Fatal(err)
			}
			if h != (Header{Alg: "ES256", Typ: "passport", Ppt: "shaken", X5U: v.x5u}) {
				t.Fatalf("header %+v", h)
			}

			// What libstirshaken put in the claims, decoded without our checks.
			b, err := base64.RawURLEncoding.DecodeString(id.PayloadB64)
			if err != nil {
				t.Fatal(err)
			}
			var raw struct {
				Attest string `json:"attest"`
				Orig   any    `json:"orig"`
				Dest   any    `json:"dest"`
				IAT    int64  `json:"iat"`
				OrigID string `json:"origid"`
			}
			if err := json.Unmarshal(b, &raw); err != nil {
				t.Fatal(err)
			}
			if raw.Attest != v.attest || raw.IAT != v.iat || raw.OrigID != v.origid || raw.Orig != v.orig || raw.Dest != v.dest {
				t.Fatalf("claims %+v", raw)
			}
			var inOrig, inDest struct{ TN any }
			if json.Unmarshal([]byte(v.orig), &inOrig) != nil || json.Unmarshal([]byte(v.dest), &inDest) != nil ||
				inOrig.TN != v.origTN || inDest.TN != v.destTN {
				t.Fatalf("inner orig %+v dest %+v", inOrig, inDest)
			}

			// RFC 8225 5.2.1 / RFC 8588: orig must be an object, not a string.
			_, err = DecodeClaims(id.PayloadB64)
			lsWantFailure(t, err, 438, ErrClaims)
			if !strings.Contains(err.Error(), "orig missing or not an object") {
				t.Fatalf("refused for another reason: %v", err)
			}
		})
	}
}

// TestVectorLibstirshakenSignature shows the vectors are intact: each
// signature verifies (ES256, R||S over header.payload as received) with the
// key of the certificate libstirshaken serves for it.
func TestVectorLibstirshakenSignature(t *testing.T) {
	for _, v := range lsPASSporTs(t) {
		t.Run(v.name, func(t *testing.T) {
			id, err := ParseIdentity(v.header())
			if err != nil {
				t.Fatal(err)
			}
			sig, err := base64.RawURLEncoding.DecodeString(id.SigB64)
			if err != nil || len(sig) != 64 {
				t.Fatalf("signature: %d bytes, %v", len(sig), err)
			}
			key := lsCert(t, v.leaf).PublicKey.(*ecdsa.PublicKey)
			if err := jwt.SigningMethodES256.Verify(id.SigningInput(), sig, key); err != nil {
				t.Fatalf("signature does not verify with %s: %v", v.leaf, err)
			}
			// And a flipped payload byte does not.
			bad := []byte(id.SigningInput())
			bad[len(id.HeaderB64)+5] ^= 1
			if jwt.SigningMethodES256.Verify(string(bad), sig, key) == nil {
				t.Fatal("tampered input verifies")
			}
		})
	}
}

// TestVectorLibstirshakenVerify runs the published PASSporTs through
// Service.Verify with the clock frozen at their iat, the reference chain
// served for any x5u, and either credentials: all are refused at the claims,
// 438, before any certificate is fetched (so never 437, even with TNAuthList
// required).
func TestVectorLibstirshakenVerify(t *testing.T) {
	for _, v := range lsPASSporTs(t) {
		chain := []*x509.Certificate{lsCert(t, v.leaf)}
		pool := poolCredentials{lsPool(t, v.root)}
		creds := []struct {
			name string
			c    Credentials
		}{{"pool", pool}, {"TNAuthList required", lsTNAuthCredentials{pool}}}
		for _, cr := range creds {
			iat := time.Unix(v.iat, 0)
			cfg := Config{Enabled: true, TrustRoots: []string{"x"}}
			cfg.ApplyDefaults()
			s := New(cfg, lsAnySource(chain), cr.c, NewMemoryReplay(), func() time.Time { return iat })

			t.Run(v.name+"/"+cr.name, func(t *testing.T) {
				if v.bare {
					vd := s.Verify(context.Background(), Input{Orig: v.origTN, Dest: v.destTN, Identities: []string{v.identity}})
					if vd.Passed || vd.Code != 438 || !errors.Is(vd.Kind, ErrMalformed) {
						t.Fatalf("bare JWS: %+v, want 438 malformed (no info)", vd)
					}
				}
				vd := s.Verify(context.Background(), Input{Orig: v.origTN, Dest: v.destTN, Identities: []string{v.header()}})
				if vd.Passed || vd.Code != 438 || !errors.Is(vd.Kind, ErrClaims) || vd.Verstat != VerstatFailed {
					t.Fatalf("verdict %+v, want 438 bad_claims", vd)
				}
			})
		}
	}
}

// TestVectorLibstirshakenChains checks the published certificates against
// the credentials: crypto/x509 at iat and now (poolCredentials), then with
// TNAuthList required as production does.
func TestVectorLibstirshakenChains(t *testing.T) {
	iat := time.Unix(1603458131, 0) // passport.txt
	tests := []struct {
		name     string
		leaf     string
		roots    []string
		at       time.Time
		poolOK   bool
		tnAuthIs error // with TNAuthList required (when poolOK)
	}{
		// TNAuthList extension = IA5String "http://190.102.98.199/sti-ca/...":
		// a URI where RFC 8226 9 wants a SEQUENCE of TNEntry.
		{"sp.pem under ca.pem", "sp.pem", []string{"ca.pem"}, iat, true, certs.ErrBadTNAuthList},
		// Likewise an IA5String URI ("ca.shaken.signalwire.com/.../TNAuthList").
		{"sp_test14.pem under 480434bb.0", "sp_test14.pem", []string{"480434bb.0"}, iat, true, certs.ErrBadTNAuthList},
		// Same key as the issuer, but not the issuer's name: no chain.
		{"sp.pem under 480434bb.0", "sp.pem", []string{"480434bb.0"}, iat, false, nil},
		{"sp.pem under 9d552661.pem", "sp.pem", []string{"9d552661.pem"}, iat, false, nil},
		{"sp_test14.pem under ca.pem", "sp_test14.pem", []string{"ca.pem"}, iat, false, nil},
		// Issued by "Wrong CA", published to test exactly this.
		{"wrongsp.pem under ca.pem", "wrongsp.pem", []string{"ca.pem", "480434bb.0"}, iat, false, nil},
		// Issued by "New CA" and valid for zero seconds in March 2020.
		{"new_sp.pem under ca.pem", "new_sp.pem", []string{"ca.pem"}, iat, false, nil},
		// Before the SP certificate's notBefore (2020-04-29T16:33:13Z).
		{"sp.pem before notBefore", "sp.pem", []string{"ca.pem"}, time.Date(2020, 4, 1, 0, 0, 0, 0, time.UTC), false, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			chain := []*x509.Certificate{lsCert(t, tt.leaf)}
			pool := poolCredentials{lsPool(t, tt.roots...)}
			cred, err := pool.Check(chain, tt.at, tt.at)
			if !tt.poolOK {
				if err == nil {
					t.Fatal("pool credentials accepted the chain")
				}
				return
			}
			if err != nil {
				t.Fatalf("pool credentials: %v", err)
			}
			if cred.Key == nil || !cred.Key.Equal(chain[0].PublicKey) {
				t.Fatal("credential key is not the leaf key")
			}
			_, err = lsTNAuthCredentials{pool}.Check(chain, tt.at, tt.at)
			if !errors.Is(err, tt.tnAuthIs) {
				t.Fatalf("TNAuthList required: %v, want %v", err, tt.tnAuthIs)
			}
			// The raw extension really is an IA5String (tag 0x16).
			for _, e := range chain[0].Extensions {
				if e.Id.Equal(certs.OIDTNAuthList) && (len(e.Value) == 0 || e.Value[0] != 0x16) {
					t.Fatalf("TNAuthList extension starts 0x%02x", e.Value[0])
				}
			}
		})
	}
}

// TestVectorLibstirshakenNotSHAKEN decodes the other JWT data libstirshaken
// publishes: the RFC 8225 Appendix A header and payload (no ppt, no attest,
// dest a URI) and SPC tokens (typ JWT). None is a SHAKEN PASSporT.
func TestVectorLibstirshakenNotSHAKEN(t *testing.T) {
	seg := func(jws string, i int) string { return strings.Split(jws, ".")[i] }
	spc := lsLineAfter(t, "spc_token.txt", "SPC token encoded:")
	spc1 := lsLineAfter(t, "spc_token_1.txt", "SPC token encoded:")
	spc13 := strings.TrimSpace(lsRead(t, "spc_token_test13.jwt"))
	tests := []struct {
		name       string
		header     string
		headerKind error
		claims     string
	}{
		// RFC 8225 Appendix A: {"alg":"ES256","typ":"passport","x5u":...}
		// lacks ppt "shaken"; its claims lack attest and origid (RFC 8588).
		{"RFC 8225 Appendix A", strings.TrimSpace(lsRead(t, "rfc8225_appendix_a.header.b64")), ErrMalformed,
			strings.TrimSpace(lsRead(t, "rfc8225_appendix_a.payload.b64"))},
		{"spc_token.txt", seg(spc, 0), ErrMalformed, seg(spc, 1)},
		{"spc_token_1.txt", seg(spc1, 0), ErrMalformed, seg(spc1, 1)},
		{"test_13 SPC token", seg(spc13, 0), ErrMalformed, seg(spc13, 1)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := DecodeHeader(tt.header)
			lsWantFailure(t, err, 438, tt.headerKind)
			_, err = DecodeClaims(tt.claims)
			lsWantFailure(t, err, 438, ErrClaims)
		})
	}

	// The RFC 8225 Appendix A values, decoded plainly.
	var h map[string]string
	b, _ := base64.RawURLEncoding.DecodeString(tests[0].header)
	if err := json.Unmarshal(b, &h); err != nil || h["alg"] != "ES256" || h["typ"] != "passport" || h["x5u"] != "https://cert.example.org/passport.cer" || h["ppt"] != "" {
		t.Fatalf("RFC 8225 header %v %v", h, err)
	}
	b, _ = base64.RawURLEncoding.DecodeString(tests[0].claims)
	if string(b) != `{"dest":{"uri":["sip:alice@example.com"]},"iat":1471375418,"orig":{"tn":"12155551212"}}` {
		t.Fatalf("RFC 8225 payload %s", b)
	}
}

// TestVectorLibstirshakenNonNumericTN: libstirshaken's tests 15, 16 and 18
// build PASSporTs with orig.tn "+80 2234" and dest.tn ["+90 2235"], signed
// with keys generated at run time, so no token is published. This rebuilds
// the header and claims from those parameters (libjwt's key order), with a
// placeholder signature: the claims are refused before any signature or
// certificate is looked at. RFC 8588 / ATIS-1000074 5.2.3: tn is the
// canonical form, digits only; "+" and spaces are not allowed.
func TestVectorLibstirshakenNonNumericTN(t *testing.T) {
	const x5u = "https://not.here.org/passport.cer"
	iat := time.Unix(1603458131, 0)
	hdr := b64(`{"alg":"ES256","ppt":"shaken","typ":"passport","x5u":"` + x5u + `"}`)
	claims := b64(fmt.Sprintf(`{"attest":"B","dest":{"tn":["+90 2235"]},"iat":%d,"orig":{"tn":"+80 2234"},"origid":"Just testing"}`, iat.Unix()))
	sig := base64.RawURLEncoding.EncodeToString(make([]byte, 64))
	identity := hdr + "." + claims + "." + sig + ";info=<" + x5u + ">;alg=ES256;ppt=shaken"

	_, err := DecodeClaims(claims)
	lsWantFailure(t, err, 438, ErrClaims)
	if !strings.Contains(err.Error(), "orig.tn") {
		t.Fatalf("refused for another reason: %v", err)
	}
	// With orig canonical, dest's "+90 2235" is refused as well.
	_, err = DecodeClaims(b64(fmt.Sprintf(`{"attest":"B","dest":{"tn":["+90 2235"]},"iat":%d,"orig":{"tn":"802234"},"origid":"Just testing"}`, iat.Unix())))
	lsWantFailure(t, err, 438, ErrClaims)

	chain := []*x509.Certificate{lsCert(t, "sp.pem")}
	cfg := Config{Enabled: true, TrustRoots: []string{"x"}}
	cfg.ApplyDefaults()
	s := New(cfg, lsAnySource(chain), poolCredentials{lsPool(t, "ca.pem")}, NewMemoryReplay(), func() time.Time { return iat })
	vd := s.Verify(context.Background(), Input{Orig: "802234", Dest: "902235", Identities: []string{identity}})
	if vd.Passed || vd.Code != 438 || !errors.Is(vd.Kind, ErrClaims) {
		t.Fatalf("verdict %+v, want 438 bad_claims", vd)
	}
}
