package sipwire

import (
	"bufio"
	"slices"
	"strings"
	"testing"
)

func TestReadFrame(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     []string // frames in order
		wantErr  string   // after them
	}{
		{"two messages and keep-alives",
			"\r\n\r\nSIP/2.0 200 OK\r\nl: 2\r\n\r\nhi\r\n\r\nBYE sip:a SIP/2.0\r\nContent-Length: 0\r\n\r\n",
			[]string{"SIP/2.0 200 OK\r\nl: 2\r\n\r\nhi", "BYE sip:a SIP/2.0\r\nContent-Length: 0\r\n\r\n"}, "EOF"},
		{"no Content-Length", "SIP/2.0 200 OK\r\nTo: x\r\n\r\n", nil, "no Content-Length"},
		{"bad Content-Length", "SIP/2.0 200 OK\r\nContent-Length: -1\r\n\r\n", nil, "Content-Length"},
		{"short body", "SIP/2.0 200 OK\r\nContent-Length: 10\r\n\r\nabc", nil, "unexpected EOF"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := bufio.NewReader(strings.NewReader(tc.in))
			var got []string
			for range 10 {
				f, err := ReadFrame(r)
				if err != nil {
					if !strings.Contains(err.Error(), tc.wantErr) {
						t.Errorf("error %v, want one containing %q", err, tc.wantErr)
					}
					break
				}
				got = append(got, string(f))
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("frames %q, want %q", got, tc.want)
			}
		})
	}
}

func TestParse(t *testing.T) {
	raw := "SIP/2.0 180 Ringing\r\nv: SIP/2.0/TLS a;branch=z9hG4bK1\r\nVia: SIP/2.0/UDP b\r\nRecord-Route: <sip:p1;lr>\r\n" +
		"record-route: <sip:p2;lr>\r\nt: <sip:bob@b>;tag=9\r\ni: c1\r\nCSeq: 7 INVITE\r\nX-Long: one\r\n two\r\nl: 3\r\n\r\nabc"
	m, err := Parse([]byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	n, method := m.CSeq()
	for _, c := range []struct{ what, got, want string }{
		{"method", m.Method(), ""},
		{"Via", strings.Join(m.All("via"), "|"), "SIP/2.0/TLS a;branch=z9hG4bK1|SIP/2.0/UDP b"},
		{"Record-Route", strings.Join(m.All("Record-Route"), "|"), "<sip:p1;lr>|<sip:p2;lr>"},
		{"To", m.Get("To"), "<sip:bob@b>;tag=9"},
		{"Call-ID", m.Get("call-id"), "c1"},
		{"CSeq", method, "INVITE"},
		{"folded", m.Get("X-LONG"), "one two"},
		{"body", string(m.Body), "abc"},
		{"URI", URI(m.Get("To")), "sip:bob@b"},
		{"URI without brackets", URI("sip:a@b;tag=1"), "sip:a@b"},
	} {
		if c.got != c.want {
			t.Errorf("%s = %q, want %q", c.what, c.got, c.want)
		}
	}
	if m.StatusCode() != 180 || n != 7 {
		t.Errorf("status %d, CSeq %d; want 180, 7", m.StatusCode(), n)
	}
	req, err := Parse([]byte("INVITE sip:b SIP/2.0\r\ny: abc;info=<x>\r\n\r\n"))
	if err != nil || req.Method() != "INVITE" || req.StatusCode() != 0 || req.Get("Identity") != "abc;info=<x>" {
		t.Errorf("request: %+v, %v", req, err)
	}
	for _, bad := range []string{"SIP/2.0 200 OK\r\nTo: x\r\n", "HELLO\r\n\r\n", "SIP/2.0 200 OK\r\nno colon\r\n\r\n"} {
		if _, err := Parse([]byte(bad)); err == nil {
			t.Errorf("Parse(%q) = nil error", bad)
		}
	}
}
