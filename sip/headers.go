package sip

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/emiago/sipgo/sip"

	"github.com/stirgate/stirgate/attest/passport"
)

// errHeaderValue is returned for header names or values we refuse to write.
var errHeaderValue = errors.New("sip: unsafe header")

// safeHeader builds a header for an outgoing message. It refuses control
// characters (CR, LF, NUL, ...) in the value and non-token names, so no input
// can inject a header or end the header section.
func safeHeader(name, value string) (sip.Header, error) {
	if !isToken(name) {
		return nil, fmt.Errorf("%w: name %q", errHeaderValue, name)
	}
	for i := 0; i < len(value); i++ {
		if c := value[i]; (c < 0x20 && c != '\t') || c == 0x7f {
			return nil, fmt.Errorf("%w: %s value has control character 0x%02x", errHeaderValue, name, c)
		}
	}
	return sip.NewHeader(name, value), nil
}

// isToken reports whether s is an RFC 3261 token (header names).
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("-.!%*_+`'~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// quotedText makes s safe inside a quoted-string: no controls, quotes or
// backslashes, bounded length.
func quotedText(s string) string {
	const max = 200
	var b strings.Builder
	for _, r := range s {
		if b.Len() >= max {
			break
		}
		switch {
		case r < 0x20 || r == 0x7f:
			b.WriteByte(' ')
		case r == '"' || r == '\\':
			b.WriteByte('\'')
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// compactNames maps the compact forms (RFC 3261 7.3.3, RFC 8224 for y) that
// sipgo does not map to their long names.
var compactNames = map[string]string{"y": "identity"}

// headerIs compares a header name with a long name, ignoring case and
// accepting the compact form.
func headerIs(h sip.Header, longName string) bool {
	n := h.Name()
	if strings.EqualFold(n, longName) {
		return true
	}
	if long, ok := compactNames[strings.ToLower(n)]; ok {
		return strings.EqualFold(long, longName)
	}
	return false
}

// headerList is what sipgo's requests and responses share for headers.
type headerList interface {
	Headers() []sip.Header
	RemoveHeader(name string) bool
}

// headerValues returns the values of every header with the long name (or its
// compact form), in order.
func headerValues(m headerList, longName string) []string {
	var out []string
	for _, h := range m.Headers() {
		if headerIs(h, longName) {
			out = append(out, h.Value())
		}
	}
	return out
}

// removeHeaders removes every header with the long name (or its compact
// form), whatever its case. sipgo's RemoveHeader is case sensitive and removes
// only the first.
func removeHeaders(m headerList, longName string) {
	for {
		var found sip.Header
		for _, h := range m.Headers() {
			if headerIs(h, longName) {
				found = h
				break
			}
		}
		if found == nil {
			return
		}
		m.RemoveHeader(found.Name())
	}
}

// Number reads the telephone number of a SIP or tel URI: the user part (or
// tel: number) without RFC 4904 user parameters, canonical per
// passport.Canonical (RFC 8224 8.3), the same rule the signer, the verifier
// and the policy lists apply. It returns "" when the user part is not a
// number ("alice", "++1...", more than 15 digits).
func Number(u *sip.Uri) string {
	tn, _ := passport.Canonical(userNumber(u))
	return tn
}

// userNumber is the user part of a SIP URI or the number of a tel URI, as
// written, without RFC 4904 user parameters.
func userNumber(u *sip.Uri) string {
	if u == nil {
		return ""
	}
	user := u.User
	if strings.EqualFold(u.Scheme, "tel") {
		user = u.Host
		if user == "" { // sipgo keeps a tel: number only in the raw text
			user = u.Raw()
		}
	}
	if i := strings.IndexByte(user, ';'); i >= 0 { // RFC 4904 user parameters
		user = user[:i]
	}
	return user
}

// paiNumber is the number of the first P-Asserted-Identity that has one.
func paiNumber(req *sip.Request) string {
	for _, v := range headerValues(req, "P-Asserted-Identity") {
		var u sip.Uri
		var params sip.HeaderParams
		if _, err := sip.ParseAddressValue(v, &u, &params); err == nil {
			if n := Number(&u); n != "" {
				return n
			}
		}
	}
	return ""
}

func fromNumber(req *sip.Request) string {
	if f := req.From(); f != nil {
		return Number(&f.Address)
	}
	return ""
}

// callingNumber is the number of the first P-Asserted-Identity when present,
// else of From.
func callingNumber(req *sip.Request) string {
	if n := paiNumber(req); n != "" {
		return n
	}
	return fromNumber(req)
}

// stripVerstat removes the verstat parameter (3GPP TS 24.229) from From and
// every P-Asserted-Identity: only stirgate's verification may set it.
func stripVerstat(req *sip.Request) {
	drop := func(p *sip.HeaderParams) { p.Remove("verstat") }
	if f := req.From(); f != nil && f.Address.UriParams.Has("verstat") {
		editFrom(req, drop)
	}
	pais := headerValues(req, "P-Asserted-Identity")
	changed := false
	for i, v := range pais {
		if strings.Contains(strings.ToLower(v), "verstat") {
			pais[i] = editNameAddr(v, drop)
			changed = true
		}
	}
	if changed {
		replacePAI(req, pais)
	}
}

func replacePAI(req *sip.Request, values []string) {
	removeHeaders(req, "P-Asserted-Identity")
	for _, v := range values {
		req.AppendHeader(sip.NewHeader("P-Asserted-Identity", v))
	}
}

// editNameAddr parses a name-addr header value ("Name" <sip:...>;params),
// lets edit change a private copy of its URI parameters and writes it back;
// an unparsable value is returned unchanged.
func editNameAddr(v string, edit func(params *sip.HeaderParams)) string {
	var u sip.Uri
	var params sip.HeaderParams
	display, err := sip.ParseAddressValue(v, &u, &params)
	if err != nil {
		return v
	}
	u.UriParams = u.UriParams.Clone()
	edit(&u.UriParams)
	out := "<" + u.String() + ">"
	if display != "" {
		out = "\"" + quotedText(display) + "\" " + out
	}
	if len(params) > 0 {
		out += ";" + params.ToString(';')
	}
	return out
}

// editFrom applies edit to a copy of the From URI's parameters.
func editFrom(req *sip.Request, edit func(params *sip.HeaderParams)) {
	f := req.From()
	if f == nil {
		return
	}
	nf := sip.HeaderClone(f).(*sip.FromHeader)
	nf.Address.UriParams = nf.Address.UriParams.Clone()
	edit(&nf.Address.UriParams)
	req.ReplaceHeader(nf)
}

func joinHostPort(host string, port int) string {
	return net.JoinHostPort(host, strconv.Itoa(port))
}

// setVerstat puts verstat on the first P-Asserted-Identity URI, or on From
// when there is none (3GPP TS 24.229 7.2A.20).
func setVerstat(req *sip.Request, v Verstat) error {
	switch v {
	case VerstatPassed, VerstatFailed, VerstatNoTN:
	default:
		return fmt.Errorf("%w: verstat %q", errHeaderValue, v)
	}
	add := func(p *sip.HeaderParams) { p.Add("verstat", string(v)) }
	pais := headerValues(req, "P-Asserted-Identity")
	if len(pais) == 0 {
		editFrom(req, add)
		return nil
	}
	pais[0] = editNameAddr(pais[0], add)
	replacePAI(req, pais)
	return nil
}
