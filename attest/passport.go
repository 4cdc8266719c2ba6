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

	"github.com/stirgate/stirgate/attest/passport"
)

// Signer makes Identity header values with one key and one x5u. The JOSE
// header and the header parameters are constant for it: they are encoded
// once, and each signature only encodes the claims.
type Signer struct {
	key    *ecdsa.PrivateKey
	header string // base64url of the JOSE header, then "."
	params string // ";info=<x5u>;alg=ES256;ppt=shaken"
	x5u    string
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
		x5u:    x5u,
	}, nil
}

// X5U is the certificate URL the signer's PASSporTs carry.
func (s *Signer) X5U() string { return s.x5u }

// Sign returns the Identity header value (full form, RFC 8224 4.1) for c.
func (s *Signer) Sign(c passport.Claims) (string, error) {
	claims, err := appendClaims(make([]byte, 0, 160), c)
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

// appendClaims writes c with its keys in lexicographic order (RFC 8225 9,
// RFC 8588 6). Every value is checked first (canonical numbers, a UUID
// origid), so nothing needs escaping.
func appendClaims(b []byte, c passport.Claims) ([]byte, error) {
	if err := c.Check(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrClaims, err)
	}
	if _, err := uuid.Parse(c.OrigID); err != nil || len(c.OrigID) != 36 {
		return nil, fmt.Errorf("%w: origid %q is not a UUID", ErrClaims, c.OrigID)
	}
	b = append(b, `{"attest":"`...)
	b = append(b, c.Attest...)
	b = append(b, `","dest":{"tn":[`...)
	for i, d := range c.Dest {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, '"')
		b = append(b, d...)
		b = append(b, '"')
	}
	b = append(b, `]},"iat":`...)
	b = strconv.AppendInt(b, c.IAT, 10)
	b = append(b, `,"orig":{"tn":"`...)
	b = append(b, c.Orig...)
	b = append(b, `"},"origid":"`...)
	b = append(b, c.OrigID...)
	b = append(b, `"}`...)
	return b, nil
}
