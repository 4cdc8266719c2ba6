// Package sipwire reads SIP messages off a stream and takes them apart
// just enough for test peers and load generators: the start line, the
// headers in order (compact names expanded) and the body. It trusts its
// peer (stirgate, Kamailio): it is no validating parser, and nothing of
// stirgate itself uses it.
package sipwire

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// ReadFrame reads one message from a stream (RFC 3261 18.3: the header
// ends at an empty line, the body is Content-Length bytes). Empty lines
// before a message (CRLF keep-alives) are skipped.
func ReadFrame(r *bufio.Reader) ([]byte, error) {
	var head []byte
	length := -1
	for i := 0; ; i++ {
		if i > 500 {
			return nil, errors.New("sip frame: more than 500 header lines")
		}
		line, err := r.ReadString('\n')
		if err != nil {
			return nil, fmt.Errorf("sip frame: %w", err)
		}
		trimmed := strings.TrimRight(line, "\r\n")
		if trimmed == "" {
			if len(head) == 0 {
				continue // keep-alive
			}
			break
		}
		head = append(head, trimmed+"\r\n"...)
		name, value, ok := strings.Cut(trimmed, ":")
		if !ok {
			continue
		}
		if canonical(strings.TrimSpace(name)) == "Content-Length" {
			if length, err = strconv.Atoi(strings.TrimSpace(value)); err != nil || length < 0 || length > 1<<20 {
				return nil, fmt.Errorf("sip frame: Content-Length %q", value)
			}
		}
	}
	if length < 0 {
		return nil, errors.New("sip frame: no Content-Length on a stream")
	}
	body := make([]byte, length)
	if _, err := io.ReadFull(r, body); err != nil {
		return nil, fmt.Errorf("sip frame body: %w", err)
	}
	return append(append(head, "\r\n"...), body...), nil
}

// Header is one header line: its canonical name and its value.
type Header struct{ Name, Value string }

// Message is a parsed message.
type Message struct {
	First   string // the request line or the status line
	Headers []Header
	Body    []byte
}

// Parse splits raw into start line, headers and body. Folded header lines
// (a line starting with white space) are joined to the previous one.
func Parse(raw []byte) (Message, error) {
	head, body, found := bytes.Cut(raw, []byte("\r\n\r\n"))
	if !found {
		return Message{}, errors.New("sip: no empty line after the headers")
	}
	lines := strings.Split(string(head), "\r\n")
	m := Message{First: lines[0], Body: body, Headers: make([]Header, 0, len(lines)-1)}
	if !strings.Contains(m.First, "SIP/2.0") {
		return Message{}, fmt.Errorf("sip: start line %q", m.First)
	}
	for _, l := range lines[1:] {
		if l != "" && (l[0] == ' ' || l[0] == '\t') && len(m.Headers) > 0 {
			m.Headers[len(m.Headers)-1].Value += " " + strings.TrimSpace(l)
			continue
		}
		name, value, ok := strings.Cut(l, ":")
		if !ok {
			return Message{}, fmt.Errorf("sip: header line %q", l)
		}
		m.Headers = append(m.Headers, Header{canonical(strings.TrimSpace(name)), strings.TrimSpace(value)})
	}
	return m, nil
}

// Get returns the value of the first header named name ("" without one).
func (m Message) Get(name string) string {
	name = canonical(name)
	for _, h := range m.Headers {
		if h.Name == name {
			return h.Value
		}
	}
	return ""
}

// All returns the value of every header line named name, in order (a line
// holding a comma-separated list is one value).
func (m Message) All(name string) []string {
	name = canonical(name)
	var out []string
	for _, h := range m.Headers {
		if h.Name == name {
			out = append(out, h.Value)
		}
	}
	return out
}

// StatusCode is a response's code; 0 for a request.
func (m Message) StatusCode() int {
	rest, ok := strings.CutPrefix(m.First, "SIP/2.0 ")
	if !ok || len(rest) < 3 {
		return 0
	}
	n, err := strconv.Atoi(rest[:3])
	if err != nil {
		return 0
	}
	return n
}

// Method is a request's method; "" for a response.
func (m Message) Method() string {
	if m.StatusCode() != 0 {
		return ""
	}
	method, _, _ := strings.Cut(m.First, " ")
	return method
}

// CSeq returns the CSeq header's number and method.
func (m Message) CSeq() (int, string) {
	num, method, _ := strings.Cut(m.Get("CSeq"), " ")
	n, _ := strconv.Atoi(num)
	return n, strings.TrimSpace(method)
}

// URI returns the URI between < and > of a name-addr value (From, To,
// Contact, Record-Route), or the value itself without parameters.
func URI(v string) string {
	if i := strings.IndexByte(v, '<'); i >= 0 {
		if j := strings.IndexByte(v[i:], '>'); j > 0 {
			return v[i+1 : i+j]
		}
	}
	u, _, _ := strings.Cut(v, ";")
	return strings.TrimSpace(u)
}

var compact = map[string]string{
	"v": "Via", "f": "From", "t": "To", "i": "Call-ID", "m": "Contact", "l": "Content-Length",
	"c": "Content-Type", "k": "Supported", "y": "Identity", "e": "Content-Encoding", "s": "Subject",
}

var known = map[string]string{}

func init() {
	for _, n := range []string{"Via", "From", "To", "Call-ID", "CSeq", "Contact", "Content-Length", "Content-Type",
		"Record-Route", "Route", "Identity", "Max-Forwards", "Supported", "Require", "Reason", "Subject"} {
		known[strings.ToLower(n)] = n
	}
}

// canonical is name with compact forms expanded and the usual spelling of
// the common headers; other names in lower case (names are
// case-insensitive).
func canonical(name string) string {
	if full, ok := compact[strings.ToLower(name)]; ok && len(name) == 1 {
		return full
	}
	lower := strings.ToLower(name)
	if c, ok := known[lower]; ok {
		return c
	}
	return lower
}
