package verify

import (
	"fmt"
	"strings"
)

// Bounds on what a trunk can make us parse.
const (
	MaxIdentityLen     = 8192 // bytes of one Identity header value
	MaxIdentityHeaders = 8    // Identity headers read per INVITE
)

// Identity is one parsed Identity header (RFC 8224 4.1, full form).
type Identity struct {
	JWS        string // header.payload.signature as received
	HeaderB64  string
	PayloadB64 string
	SigB64     string
	Info       string // the info URI, without angle brackets
	Alg        string // alg parameter, "" when absent
	Ppt        string // ppt parameter, "" when absent
}

// SigningInput is what the signature covers: header.payload as received.
func (id Identity) SigningInput() string { return id.JWS[:len(id.HeaderB64)+1+len(id.PayloadB64)] }

// ParseIdentity reads one Identity header value. Linear whitespace around
// separators and line folding are tolerated; the compact form (no header
// and payload) is refused because SHAKEN needs the full form.
func ParseIdentity(v string) (Identity, error) {
	if len(v) > MaxIdentityLen {
		return Identity{}, fail(438, ErrMalformed, "Identity header longer than %d bytes", MaxIdentityLen)
	}
	v = unfold(v)
	jws, rest, _ := strings.Cut(v, ";")
	jws = strings.TrimSpace(jws)
	var id Identity
	parts := strings.Split(jws, ".")
	if len(parts) != 3 {
		return Identity{}, fail(438, ErrMalformed, "Identity is not three base64url segments")
	}
	if parts[0] == "" || parts[1] == "" {
		return Identity{}, fail(438, ErrMalformed, "compact form Identity: SHAKEN needs the full form")
	}
	for _, p := range parts {
		if p == "" || !isBase64URL(p) {
			return Identity{}, fail(438, ErrMalformed, "Identity segment is not base64url")
		}
	}
	id.JWS, id.HeaderB64, id.PayloadB64, id.SigB64 = jws, parts[0], parts[1], parts[2]
	for rest != "" {
		var p string
		p, rest, _ = strings.Cut(rest, ";")
		name, val, _ := strings.Cut(p, "=")
		name = strings.ToLower(strings.TrimSpace(name))
		val = strings.TrimSpace(val)
		switch name {
		case "info":
			if !strings.HasPrefix(val, "<") || !strings.HasSuffix(val, ">") || len(val) < 3 {
				return Identity{}, fail(436, ErrMalformed, "info parameter is not <URI>")
			}
			if id.Info != "" {
				return Identity{}, fail(438, ErrMalformed, "info parameter twice")
			}
			id.Info = val[1 : len(val)-1]
		case "alg":
			id.Alg = strings.Trim(val, `"`)
		case "ppt":
			id.Ppt = strings.Trim(val, `"`)
		}
	}
	if id.Info == "" {
		return Identity{}, fail(438, ErrMalformed, "info parameter missing")
	}
	if strings.ContainsAny(id.Info, " \t<>\"") {
		return Identity{}, fail(436, ErrMalformed, "info URI has spaces or brackets")
	}
	return id, nil
}

// unfold removes line folding (CRLF followed by whitespace) and tabs.
func unfold(v string) string {
	if !strings.ContainsAny(v, "\r\n\t") {
		return v
	}
	r := strings.NewReplacer("\r\n", "", "\r", "", "\n", "", "\t", " ")
	return r.Replace(v)
}

func isBase64URL(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// Failure is a verification failure with its SIP status (RFC 8224 6.2.2).
type Failure struct {
	Code   int
	Kind   error // one of the sentinels in errors.go
	Detail string
}

func (f *Failure) Error() string { return fmt.Sprintf("%d %s: %s", f.Code, f.Kind, f.Detail) }
func (f *Failure) Unwrap() error { return f.Kind }

func fail(code int, kind error, format string, args ...any) *Failure {
	return &Failure{Code: code, Kind: kind, Detail: fmt.Sprintf(format, args...)}
}
