package verify

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math"

	"github.com/stirgate/stirgate/attest/passport"
)

// Header is the JOSE header of a SHAKEN PASSporT.
type Header struct {
	Alg, Typ, Ppt, X5U string
}

// decodeSegment base64url-decodes one JWS segment (padding tolerated) and
// refuses anything that is not one JSON object.
func decodeSegment(seg string, v any) error {
	b, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		b, err = base64.URLEncoding.DecodeString(seg)
		if err != nil {
			return err
		}
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errTrailing
	}
	return nil
}

var errTrailing = errors.New("data after the JSON object")

// DecodeHeader decodes and checks the JOSE header: alg ES256 (437 for any
// other), typ passport, ppt shaken, x5u present.
func DecodeHeader(seg string) (Header, error) {
	var raw map[string]any
	if err := decodeSegment(seg, &raw); err != nil {
		return Header{}, fail(438, ErrMalformed, "JOSE header is not a base64url JSON object")
	}
	str := func(k string) (string, bool) {
		s, ok := raw[k].(string)
		return s, ok
	}
	var h Header
	var ok bool
	if h.Alg, ok = str("alg"); !ok {
		return Header{}, fail(438, ErrMalformed, "JOSE header alg missing or not a string")
	}
	if h.Alg != "ES256" {
		return Header{}, fail(437, ErrAlg, "alg %q is not ES256", clip(h.Alg))
	}
	if h.Typ, ok = str("typ"); !ok || h.Typ != "passport" {
		return Header{}, fail(438, ErrMalformed, "JOSE header typ is not \"passport\"")
	}
	if h.Ppt, ok = str("ppt"); !ok || h.Ppt != "shaken" {
		return Header{}, fail(438, ErrMalformed, "JOSE header ppt is not \"shaken\"")
	}
	if h.X5U, ok = str("x5u"); !ok || h.X5U == "" {
		return Header{}, fail(438, ErrMalformed, "JOSE header x5u missing")
	}
	return h, nil
}

// DecodeClaims decodes the claims and checks that each is present and of
// its type (attest and origid strings, orig an object with a tn string,
// dest an object with a non-empty tn array of strings, iat a whole number),
// then that together they are a SHAKEN PASSporT (passport.Claims.Check:
// attest A/B/C, canonical numbers of 1 to 15 digits).
func DecodeClaims(seg string) (passport.Claims, error) {
	var raw map[string]any
	if err := decodeSegment(seg, &raw); err != nil {
		return passport.Claims{}, fail(438, ErrClaims, "claims are not a base64url JSON object")
	}
	var c passport.Claims
	attest, ok := raw["attest"].(string)
	if !ok {
		return passport.Claims{}, fail(438, ErrClaims, "attest missing or not a string")
	}
	c.Attest = passport.Level(attest)
	orig, ok := raw["orig"].(map[string]any)
	if !ok {
		return passport.Claims{}, fail(438, ErrClaims, "orig missing or not an object")
	}
	if c.Orig, ok = orig["tn"].(string); !ok {
		return passport.Claims{}, fail(438, ErrClaims, "orig.tn missing or not a string")
	}
	dest, ok := raw["dest"].(map[string]any)
	if !ok {
		return passport.Claims{}, fail(438, ErrClaims, "dest missing or not an object")
	}
	tns, ok := dest["tn"].([]any)
	if !ok || len(tns) == 0 {
		return passport.Claims{}, fail(438, ErrClaims, "dest.tn missing or not a non-empty array")
	}
	for _, t := range tns {
		s, ok := t.(string)
		if !ok {
			return passport.Claims{}, fail(438, ErrClaims, "dest.tn holds a non-string")
		}
		c.Dest = append(c.Dest, s)
	}
	n, ok := raw["iat"].(json.Number)
	if !ok {
		return passport.Claims{}, fail(438, ErrClaims, "iat missing or not a number")
	}
	f, err := n.Float64()
	if err != nil || f != math.Trunc(f) || f < 0 || f > 1<<40 {
		return passport.Claims{}, fail(438, ErrClaims, "iat is not a whole number of seconds")
	}
	c.IAT = int64(f)
	if c.OrigID, ok = raw["origid"].(string); !ok {
		return passport.Claims{}, fail(438, ErrClaims, "origid missing or not a string")
	}
	if err := c.Check(); err != nil {
		return passport.Claims{}, fail(438, ErrClaims, "%v", err)
	}
	return c, nil
}

// clip bounds attacker-supplied text in reasons.
func clip(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}
