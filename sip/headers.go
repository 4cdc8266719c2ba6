package sip

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/emiago/sipgo/sip"
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

// Number reads the telephone number of a SIP or tel URI: the user part
// (or tel: number) without visual separators. It returns "" when the user
// part is not a number.
func Number(u *sip.Uri) string {
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
	var b strings.Builder
	for i := 0; i < len(user); i++ {
		c := user[i]
		switch {
		case c >= '0' && c <= '9':
			b.WriteByte(c)
		case c == '+' && b.Len() == 0:
		case c == '-' || c == '.' || c == '(' || c == ')' || c == ' ':
		default:
			return ""
		}
	}
	return b.String()
}

// callingNumber is the number of the first P-Asserted-Identity when present,
// else of From.
func callingNumber(req *sip.Request) string {
	for _, v := range headerValues(req, "P-Asserted-Identity") {
		var u sip.Uri
		var params sip.HeaderParams
		if _, err := sip.ParseAddressValue(v, &u, &params); err == nil {
			if n := Number(&u); n != "" {
				return n
			}
		}
	}
	if f := req.From(); f != nil {
		return Number(&f.Address)
	}
	return ""
}

func joinHostPort(host string, port int) string {
	return net.JoinHostPort(host, strconv.Itoa(port))
}
