package certs

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestCheckURL(t *testing.T) {
	def := FetchPolicy{}
	http := FetchPolicy{AllowHTTP: true, Ports: []int{80, 443, 8080}}
	query := FetchPolicy{AllowQuery: true}
	hosts := FetchPolicy{
		AllowHosts: []string{"cr.example.com", "*.sti.example.net", "[2606:4700::1]", "192.0.2.10"},
		DenyHosts:  []string{"bad.sti.example.net", "*.evil.sti.example.net"},
	}
	cases := []struct {
		name string
		p    FetchPolicy
		in   string
		want string // normalised URL; "" = refused
	}{
		// scheme
		{"https", def, "https://cr.example.com/sp.pem", "https://cr.example.com/sp.pem"},
		{"upper-case scheme", def, "HTTPS://cr.example.com/sp.pem", "https://cr.example.com/sp.pem"},
		{"http refused by default", def, "http://cr.example.com/sp.pem", ""},
		{"http allowed", http, "http://cr.example.com/sp.pem", "http://cr.example.com/sp.pem"},
		{"ftp", http, "ftp://cr.example.com/sp.pem", ""},
		{"file", def, "file:///etc/passwd", ""},
		{"no scheme", def, "cr.example.com/sp.pem", ""},
		{"scheme-relative", def, "//cr.example.com/sp.pem", ""},
		{"opaque", def, "https:cr.example.com/sp.pem", ""},
		{"empty", def, "", ""},
		{"too long", def, "https://cr.example.com/" + strings.Repeat("a", 3000), ""},
		// ports
		{"default https port", def, "https://cr.example.com:443/sp.pem", "https://cr.example.com/sp.pem"},
		{"8443", def, "https://cr.example.com:8443/sp.pem", "https://cr.example.com:8443/sp.pem"},
		{"other port", def, "https://cr.example.com:8080/sp.pem", ""},
		{"port 22", def, "https://cr.example.com:22/sp.pem", ""},
		{"http default port 80 not listed", FetchPolicy{AllowHTTP: true}, "http://cr.example.com/sp.pem", ""},
		{"http port listed", http, "http://cr.example.com:8080/sp.pem", "http://cr.example.com:8080/sp.pem"},
		{"leading zero port", def, "https://cr.example.com:0443/sp.pem", ""},
		{"empty port", def, "https://cr.example.com:/sp.pem", ""},
		{"port overflow", def, "https://cr.example.com:65979/sp.pem", ""},
		{"bad port", def, "https://cr.example.com:https/sp.pem", ""},
		// userinfo, query, fragment
		{"userinfo", def, "https://user@cr.example.com/sp.pem", ""},
		{"userinfo with password", def, "https://user:pw@cr.example.com/sp.pem", ""},
		{"@ trick", def, "https://cr.example.com@evil.com/sp.pem", ""},
		{"query", def, "https://cr.example.com/sp.pem?x=1", ""},
		{"empty query", def, "https://cr.example.com/sp.pem?", ""},
		{"query allowed", query, "https://cr.example.com/sp.pem?x=1", "https://cr.example.com/sp.pem?x=1"},
		{"fragment", def, "https://cr.example.com/sp.pem#frag", ""},
		{"empty fragment", query, "https://cr.example.com/sp.pem#", ""},
		// host names
		{"upper-case host", def, "https://CR.Example.COM/sp.pem", "https://cr.example.com/sp.pem"},
		{"trailing dot", def, "https://cr.example.com./sp.pem", "https://cr.example.com/sp.pem"},
		{"punycode IDN", def, "https://xn--bcher-kva.example/sp.pem", "https://xn--bcher-kva.example/sp.pem"},
		{"unicode IDN", def, "https://bücher.example/sp.pem", ""},
		{"percent-encoded IDN", def, "https://b%C3%BCcher.example/sp.pem", ""},
		{"no host", def, "https:///sp.pem", ""},
		{"empty label", def, "https://cr..example.com/sp.pem", ""},
		{"space", def, "https://cr example.com/sp.pem", ""},
		{"control", def, "https://cr.example.com/\x00", ""},
		{"underscore", def, "https://cr_1.example.com/sp.pem", "https://cr_1.example.com/sp.pem"},
		// IP literals
		{"IPv4 literal", def, "https://192.0.2.1/sp.pem", "https://192.0.2.1/sp.pem"},
		{"short IPv4", def, "https://127.1/sp.pem", ""},
		{"hex IPv4", def, "https://0x7f.0.0.1/sp.pem", ""},
		{"decimal IPv4", def, "https://2130706433/sp.pem", ""},
		{"octal IPv4", def, "https://0177.0.0.1/sp.pem", ""},
		{"IPv6 literal", def, "https://[2606:4700:0::1]:8443/sp.pem", "https://[2606:4700::1]:8443/sp.pem"},
		{"IPv6 upper case", def, "https://[2606:4700::ABCD]/sp.pem", "https://[2606:4700::abcd]/sp.pem"},
		{"IPv6 zone", def, "https://[fe80::1%25eth0]/sp.pem", ""},
		{"IPv6 unbracketed", def, "https://2606:4700::1/sp.pem", ""},
		{"IPv4 in brackets", def, "https://[192.0.2.1]/sp.pem", ""},
		{"IPv4-mapped literal", def, "https://[::ffff:192.0.2.1]/sp.pem", "https://[::ffff:192.0.2.1]/sp.pem"},
		// allow / deny lists
		{"allowed exact", hosts, "https://cr.example.com/sp.pem", "https://cr.example.com/sp.pem"},
		{"allowed exact, case", hosts, "https://CR.EXAMPLE.COM./sp.pem", "https://cr.example.com/sp.pem"},
		{"not allowed", hosts, "https://other.example.com/sp.pem", ""},
		{"subdomain of an exact entry", hosts, "https://a.cr.example.com/sp.pem", ""},
		{"wildcard", hosts, "https://a.sti.example.net/sp.pem", "https://a.sti.example.net/sp.pem"},
		{"wildcard deep", hosts, "https://a.b.sti.example.net/sp.pem", "https://a.b.sti.example.net/sp.pem"},
		{"wildcard apex", hosts, "https://sti.example.net/sp.pem", ""},
		{"wildcard suffix trick", hosts, "https://asti.example.net/sp.pem", ""},
		{"denied exact", hosts, "https://bad.sti.example.net/sp.pem", ""},
		{"denied exact, case", hosts, "https://BAD.sti.example.net./sp.pem", ""},
		{"denied wildcard", hosts, "https://x.evil.sti.example.net/sp.pem", ""},
		{"allowed IPv6", hosts, "https://[2606:4700:0:0::1]/sp.pem", "https://[2606:4700::1]/sp.pem"},
		{"allowed IPv4", hosts, "https://192.0.2.10/sp.pem", "https://192.0.2.10/sp.pem"},
		{"IP never matches a wildcard", FetchPolicy{AllowHosts: []string{"*.2.10"}}, "https://192.0.2.10/sp.pem", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			u, err := tc.p.CheckURL(tc.in)
			if tc.want == "" {
				if err == nil {
					t.Fatalf("accepted as %s", u)
				}
				if !errors.Is(err, ErrURLPolicy) {
					t.Fatalf("error does not wrap ErrURLPolicy: %v", err)
				}
				if strings.Contains(err.Error(), "pw@") {
					t.Fatalf("error leaks userinfo: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if u.String() != tc.want {
				t.Fatalf("got %s, want %s", u, tc.want)
			}
			// Normalised URLs pass again, unchanged.
			u2, err := tc.p.CheckURL(u.String())
			if err != nil || u2.String() != u.String() {
				t.Fatalf("re-check of %s: %v %v", u, u2, err)
			}
		})
	}
}

func TestFetchPolicyValidate(t *testing.T) {
	good := []FetchPolicy{
		{},
		{AllowHosts: []string{"*.example.com", "EXAMPLE.org.", "[::1]", "192.0.2.1"}, Ports: []int{1, 65535}},
		{CacheMin: time.Hour, CacheMax: time.Hour},
	}
	for i, p := range good {
		if err := p.Validate(); err != nil {
			t.Errorf("good %d: %v", i, err)
		}
	}
	bad := []FetchPolicy{
		{Ports: []int{0}},
		{Ports: []int{65536}},
		{Timeout: -1},
		{MaxBody: -1},
		{NegativeTTL: -1},
		{BreakerFailures: -1},
		{CacheMin: 2 * time.Hour, CacheMax: time.Hour},
		{CacheMin: 48 * time.Hour}, // above the default max
		{AllowHosts: []string{"*"}},
		{AllowHosts: []string{"*.1.2.3.4"}},
		{DenyHosts: []string{"bad host"}},
		{DenyHosts: []string{"bücher.example"}},
		{DenyHosts: []string{""}},
		{AllowAddrs: []netip.Prefix{{}}},
	}
	for i, p := range bad {
		if err := p.Validate(); err == nil {
			t.Errorf("bad %d (%+v) accepted", i, p)
		}
	}
}

func TestCheckAddr(t *testing.T) {
	refused := []string{
		// IPv4 special-purpose
		"0.0.0.0", "0.1.2.3", "10.0.0.1", "10.255.255.255", "100.64.0.1", "100.127.255.254",
		"127.0.0.1", "127.255.255.254", "169.254.169.254", "172.16.0.1", "172.31.255.255",
		"192.0.0.8", "192.0.2.1", "192.88.99.1", "192.168.1.1", "198.18.0.1", "198.19.255.255",
		"198.51.100.7", "203.0.113.9", "224.0.0.1", "239.255.255.250", "240.0.0.1", "255.255.255.255",
		// IPv6 special-purpose
		"::", "::1", "::127.0.0.1", "64:ff9b::7f00:1", "64:ff9b:1::1", "100::1", "2001::1", "2001:2::1",
		"2001:10::1", "2001:20::1", "2001:db8::1", "2002:7f00:1::1", "3fff::1", "5f00::1", "fc00::1", "fd12:3456::1",
		"fe80::1", "fe80::1%eth0", "fec0::1", "ff02::1", "ff05::1:3",
		// IPv4-mapped forms
		"::ffff:127.0.0.1", "::ffff:10.0.0.1", "::ffff:169.254.169.254", "::ffff:0.0.0.0", "::ffff:255.255.255.255",
		"::ffff:0:127.0.0.1",
	}
	allowed := []string{
		"8.8.8.8", "1.1.1.1", "100.63.255.255", "100.128.0.0", "172.15.255.255", "172.32.0.0",
		"192.0.3.1", "192.169.0.1", "198.17.255.255", "198.20.0.0", "223.255.255.255", "11.0.0.1",
		"2606:4700:4700::1111", "2001:4860:4860::8888", "2a00:1450::1", "::ffff:8.8.8.8", "2001:db9::1",
	}
	for _, s := range refused {
		a := netip.MustParseAddr(s)
		err := FetchPolicy{}.CheckAddr(a)
		if !errors.Is(err, ErrAddressDenied) {
			t.Errorf("%s: %v, want refused", s, err)
		}
	}
	for _, s := range allowed {
		if err := (FetchPolicy{}).CheckAddr(netip.MustParseAddr(s)); err != nil {
			t.Errorf("%s: %v", s, err)
		}
	}
	if err := (FetchPolicy{}).CheckAddr(netip.Addr{}); !errors.Is(err, ErrAddressDenied) {
		t.Errorf("zero address: %v", err)
	}
	// AllowAddrs overrides, and covers the IPv4-mapped form too.
	lab := FetchPolicy{AllowAddrs: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("fd00::/8")}}
	for _, s := range []string{"127.0.0.1", "127.3.2.1", "::ffff:127.0.0.1", "fd12::1"} {
		if err := lab.CheckAddr(netip.MustParseAddr(s)); err != nil {
			t.Errorf("lab %s: %v", s, err)
		}
	}
	for _, s := range []string{"::1", "10.0.0.1", "fc00::1", "169.254.169.254"} {
		if err := lab.CheckAddr(netip.MustParseAddr(s)); err == nil {
			t.Errorf("lab %s allowed", s)
		}
	}
	// The error names the range.
	err := FetchPolicy{}.CheckAddr(netip.MustParseAddr("169.254.169.254"))
	if err == nil || !strings.Contains(err.Error(), "link-local") || !strings.Contains(err.Error(), "169.254.0.0/16") {
		t.Errorf("error: %v", err)
	}
}

// FuzzCheckURL: x5u URLs come from the network. Never panic; whatever is
// accepted is an absolute http(s) URL without userinfo or fragment, on an
// allowed port, and is a fixed point of CheckURL.
func FuzzCheckURL(f *testing.F) {
	for _, s := range []string{
		"https://cr.example.com/sp.pem", "HTTPS://CR.example.com.:8443/a/b?c", "http://127.0.0.1:80/x",
		"https://[::ffff:1.2.3.4]/", "https://[fe80::1%25en0]/", "https://u:p@h/", "https://h/#f",
		"https://0x7f.1/", "https://xn--bcher-kva.example/", "https://bücher.example/", "https://h:0443/",
		"https://a.sti.example.net/x", "https://%41.example/",
	} {
		f.Add(s)
	}
	p := FetchPolicy{AllowHTTP: true, AllowQuery: true, Ports: []int{80, 443, 8443}, DenyHosts: []string{"*.evil.example"}}
	f.Fuzz(func(t *testing.T, raw string) {
		u, err := p.CheckURL(raw)
		if err != nil {
			if !errors.Is(err, ErrURLPolicy) {
				t.Fatalf("error without ErrURLPolicy: %v", err)
			}
			return
		}
		if u.Scheme != "https" && u.Scheme != "http" {
			t.Fatalf("scheme %q", u.Scheme)
		}
		if u.User != nil || u.Fragment != "" || u.Hostname() == "" || strings.HasSuffix(u.Hostname(), ".evil.example") {
			t.Fatalf("accepted %q as %#v", raw, u)
		}
		again, err := p.CheckURL(u.String())
		if err != nil {
			t.Fatalf("%q normalised to %q which is refused: %v", raw, u, err)
		}
		if again.String() != u.String() {
			t.Fatalf("not a fixed point: %q → %q → %q", raw, u, again)
		}
	})
}
