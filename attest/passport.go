package attest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"
)

// Level is a SHAKEN attestation level (ATIS-1000074 5.2.3).
type Level string

const (
	LevelA Level = "A" // full: known customer, number it owns
	LevelB Level = "B" // partial: known customer, number not provably theirs
	LevelC Level = "C" // gateway: we know where the call entered, nothing more
)

// PASSporT is what one SHAKEN PASSporT asserts (RFC 8225, RFC 8588).
type PASSporT struct {
	Attest Level
	Orig   string   // canonical calling number
	Dest   []string // canonical called numbers
	IAT    int64    // issued at, Unix seconds
	OrigID string   // UUID (RFC 8588 origid)
}

// Signer makes Identity header values with one key and one x5u. The JOSE
// header and the header parameters are constant for it: they are encoded
// once, and each signature only encodes the claims.
type Signer struct {
	key    *ecdsa.PrivateKey
	header string // base64url of the JOSE header, then "."
	params string // ";info=<x5u>;alg=ES256;ppt=shaken"
}

// Errors of signing.
var (
	ErrKey    = errors.New("attest: signing key must be ECDSA P-256")
	ErrClaims = errors.New("attest: bad PASSporT claims")
)

// NewSigner prepares a signer for key and x5u (the URL of the certificate
// chain; it must already be validated as a URL).
func NewSigner(key *ecdsa.PrivateKey, x5u string) (*Signer, error) {
	if key == nil || key.Curve != elliptic.P256() {
		return nil, ErrKey
	}
	if err := checkX5U(x5u); err != nil {
		return nil, fmt.Errorf("attest: x5u: %w", err)
	}
	hdr, err := json.Marshal(struct {
		Alg string `json:"alg"`
		Ppt string `json:"ppt"`
		Typ string `json:"typ"`
		X5U string `json:"x5u"`
	}{"ES256", "shaken", "passport", x5u})
	if err != nil {
		return nil, fmt.Errorf("attest: header: %w", err)
	}
	return &Signer{
		key:    key,
		header: base64.RawURLEncoding.EncodeToString(hdr) + ".",
		params: ";info=<" + x5u + ">;alg=ES256;ppt=shaken",
	}, nil
}

// Sign returns the Identity header value (full form, RFC 8224 4.1) for p.
func (s *Signer) Sign(p PASSporT) (string, error) {
	claims, err := p.appendJSON(make([]byte, 0, 160))
	if err != nil {
		return "", err
	}
	buf := make([]byte, 0, len(s.header)+base64.RawURLEncoding.EncodedLen(len(claims))+1+86+len(s.params))
	buf = append(buf, s.header...)
	buf = base64.RawURLEncoding.AppendEncode(buf, claims)
	sig, err := jwt.SigningMethodES256.Sign(string(buf), s.key)
	if err != nil {
		return "", fmt.Errorf("attest: sign: %w", err)
	}
	buf = append(buf, '.')
	buf = base64.RawURLEncoding.AppendEncode(buf, sig)
	buf = append(buf, s.params...)
	return string(buf), nil
}

// appendJSON writes the claims with their keys in lexicographic order (RFC
// 8225 9, RFC 8588 6). Every value is checked, so nothing needs escaping.
func (p PASSporT) appendJSON(b []byte) ([]byte, error) {
	if p.Attest != LevelA && p.Attest != LevelB && p.Attest != LevelC {
		return nil, fmt.Errorf("%w: attest %q", ErrClaims, p.Attest)
	}
	if !IsTN(p.Orig) {
		return nil, fmt.Errorf("%w: orig %q", ErrClaims, p.Orig)
	}
	if len(p.Dest) == 0 {
		return nil, fmt.Errorf("%w: no dest", ErrClaims)
	}
	if _, err := uuid.Parse(p.OrigID); err != nil || len(p.OrigID) != 36 {
		return nil, fmt.Errorf("%w: origid %q", ErrClaims, p.OrigID)
	}
	b = append(b, `{"attest":"`...)
	b = append(b, p.Attest...)
	b = append(b, `","dest":{"tn":[`...)
	for i, d := range p.Dest {
		if !IsTN(d) {
			return nil, fmt.Errorf("%w: dest %q", ErrClaims, d)
		}
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, '"')
		b = append(b, d...)
		b = append(b, '"')
	}
	b = append(b, `]},"iat":`...)
	b = strconv.AppendInt(b, p.IAT, 10)
	b = append(b, `,"orig":{"tn":"`...)
	b = append(b, p.Orig...)
	b = append(b, `"},"origid":"`...)
	b = append(b, p.OrigID...)
	b = append(b, `"}`...)
	return b, nil
}

// IsTN reports whether s is a canonical telephone number as PASSporT
// carries it (RFC 8224 8.3): 1 to 15 digits.
func IsTN(s string) bool {
	if s == "" || len(s) > 15 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
