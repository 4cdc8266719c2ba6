package sip

import (
	"errors"
	"strings"
	"testing"

	"github.com/emiago/sipgo/sip"

	"github.com/stirgate/stirgate/attest/passport"
)

func TestNumber(t *testing.T) {
	tests := []struct{ uri, want string }{
		{"sip:+1-202-555-0100@example.net;user=phone", "12025550100"},
		{"sip:+12025550100;tgrp=TG-1;trunk-context=example.net@example.net", "12025550100"},
		{"tel:+1.202.555.0100", "12025550100"},
		{"tel:+12025550100;phone-context=example.net", "12025550100"},
		{"sip:(202)%20555@example.net", ""},
		{"sip:alice@example.net", ""},
		{"sip:example.net", ""},
		{"sip:1+2@example.net", ""},
		{"sip:++12025550100@example.net", ""},
		{"sip:1234567890123456@example.net", ""},
		{"tel:++12025550100", ""},
	}
	for _, tt := range tests {
		var u sip.Uri
		if err := sip.ParseUri(tt.uri, &u); err != nil {
			t.Fatalf("%s: %v", tt.uri, err)
		}
		if got := Number(&u); got != tt.want {
			t.Errorf("Number(%s) = %q, want %q", tt.uri, got, tt.want)
		}
	}
}

// TestNumberIsPassportCanonical: the edge reads a number from a URI's user
// part by the same rule the signer, the verifier and the policy lists use.
// Before, the edge's own loop accepted "++1..." and any number of digits,
// which attest and policy refused.
func TestNumberIsPassportCanonical(t *testing.T) {
	tests := []struct{ user, want string }{
		{"12025550100", "12025550100"},
		{"+1 (202) 555-0100", "12025550100"},
		{"+1.202.555.0100;npdi", "12025550100"},
		{"123456789012345", "123456789012345"},
		{"++12025550100", ""},
		{"+(+1)202", ""},
		{"1234567890123456", ""},
		{"+12025550100123456789", ""},
		{"1+2", ""},
		{"+", ""},
		{"()", ""},
	}
	for _, tt := range tests {
		got := Number(&sip.Uri{Scheme: "sip", User: tt.user, Host: "example.net"})
		if got != tt.want {
			t.Errorf("Number(sip:%s@example.net) = %q, want %q", tt.user, got, tt.want)
		}
		user, _, _ := strings.Cut(tt.user, ";")
		if tn, _ := passport.Canonical(user); got != tn {
			t.Errorf("Number(sip:%s@example.net) = %q, passport.Canonical = %q", tt.user, got, tn)
		}
	}
}

// TestCallNumbersRefuseWhatSignerRefuses: an INVITE from ++12025550100 is
// an anonymous call to every stage, not one from 12025550100; a PAI of 16
// digits is no number, so From is the calling number.
func TestCallNumbersRefuseWhatSignerRefuses(t *testing.T) {
	invite := func(from, pai string) *sip.Request {
		t.Helper()
		raw := "INVITE sip:+12025550199@example.net SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1;branch=z9hG4bK-1\r\n" +
			"From: <sip:" + from + "@example.net>;tag=1\r\nTo: <sip:+12025550199@example.net>\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n"
		if pai != "" {
			raw += "P-Asserted-Identity: <sip:" + pai + "@example.net>\r\n"
		}
		msg, err := sip.NewParser().ParseSIP([]byte(raw + "Content-Length: 0\r\n\r\n"))
		if err != nil {
			t.Fatal(err)
		}
		return msg.(*sip.Request)
	}
	tests := []struct {
		from, pai, wantOrig string
	}{
		{"+12025550100", "", "12025550100"},
		{"++12025550100", "", ""},
		{"1234567890123456", "", ""},
		{"+12025550100", "++14155550100", "12025550100"},
		{"+12025550100", "1234567890123456", "12025550100"},
		{"+12025550100", "+14155550100", "14155550100"},
	}
	for _, tt := range tests {
		c := newCall("outside", Inbound, invite(tt.from, tt.pai))
		if c.Orig != tt.wantOrig || c.Dest != "12025550199" {
			t.Errorf("From %s, PAI %q: Orig %q Dest %q, want Orig %q Dest 12025550199", tt.from, tt.pai, c.Orig, c.Dest, tt.wantOrig)
		}
	}
}

// BenchmarkNumber is the per-INVITE cost of reading the calling and called
// numbers from already parsed URIs (From, To, Request-URI, a PAI).
func BenchmarkNumber(b *testing.B) {
	uris := []sip.Uri{
		{Scheme: "sip", User: "+15551230001", Host: "127.0.0.1"},
		{Scheme: "sip", User: "15559870002", Host: "127.0.0.1"},
		{Scheme: "sip", User: "+1-555-987-0002", Host: "127.0.0.1"},
		{Scheme: "sip", User: "+15551230001;npdi", Host: "pbx.example.com"},
	}
	b.ReportAllocs()
	for b.Loop() {
		for i := range uris {
			if Number(&uris[i]) == "" {
				b.Fatal("no number")
			}
		}
	}
}

func TestSafeHeaderRefusesInjection(t *testing.T) {
	tests := []struct {
		name, value string
		ok          bool
	}{
		{"X-Label", "spam likely", true},
		{"X-Label", "a\tb", true},
		{"X-Label", "a\r\nVia: evil", false},
		{"X-Label", "a\nb", false},
		{"X-Label", "a\x00b", false},
		{"X Label", "v", false},
		{"X-Label:", "v", false},
		{"", "v", false},
	}
	for _, tt := range tests {
		_, err := safeHeader(tt.name, tt.value)
		if (err == nil) != tt.ok {
			t.Errorf("safeHeader(%q, %q) err = %v, want ok=%v", tt.name, tt.value, err, tt.ok)
		}
		if err != nil && !errors.Is(err, errHeaderValue) {
			t.Errorf("error %v is not errHeaderValue", err)
		}
	}
}

func TestRemoveHeadersAnyCaseAndCompact(t *testing.T) {
	raw := "INVITE sip:1@example.net SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1;branch=z9hG4bK-1\r\n" +
		"From: <sip:2@example.net>;tag=1\r\nTo: <sip:1@example.net>\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n" +
		"Identity: one\r\nIDENTITY: two\r\ny: three\r\nContent-Length: 0\r\n\r\n"
	msg, err := sip.NewParser().ParseSIP([]byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	req := msg.(*sip.Request)
	if got := headerValues(req, "Identity"); strings.Join(got, ",") != "one,two,three" {
		t.Fatalf("headerValues = %q", got)
	}
	removeHeaders(req, "Identity")
	if got := headerValues(req, "Identity"); len(got) != 0 {
		t.Fatalf("left after removeHeaders: %q", got)
	}
	if req.CallID() == nil || req.Via() == nil {
		t.Fatal("removeHeaders removed other headers")
	}
}

func TestQuotedTextAndReasonStayOnOneLine(t *testing.T) {
	h := reasonHeader(603, "rule \"dnc\"\r\nInjected: 1\\")
	if strings.ContainsAny(h.Value(), "\r\n\\") || strings.Count(h.Value(), "\"") != 2 {
		t.Fatalf("Reason value %q is unsafe", h.Value())
	}
	if got := safeReason("Bad\r\nX: y"); strings.ContainsAny(got, "\r\n") {
		t.Fatalf("safeReason = %q", got)
	}
}

func TestVerstatStrippedAndSet(t *testing.T) {
	raw := "INVITE sip:1@example.net SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1;branch=z9hG4bK-1\r\n" +
		"From: <sip:+12025550199@example.net;user=phone;verstat=TN-Validation-Passed>;tag=1\r\nTo: <sip:1@example.net>\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n" +
		"P-Asserted-Identity: \"Alice\" <sip:+12025550199@example.net;verstat=TN-Validation-Passed;user=phone>\r\n" +
		"P-Asserted-Identity: <tel:+12025550199>\r\nContent-Length: 0\r\n\r\n"
	msg, err := sip.NewParser().ParseSIP([]byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	req := msg.(*sip.Request)
	stripVerstat(req)
	if s := req.String(); strings.Contains(s, "verstat") {
		t.Fatalf("verstat left after strip:\n%s", s)
	}
	if err := setVerstat(req, VerstatFailed); err != nil {
		t.Fatal(err)
	}
	pais := headerValues(req, "P-Asserted-Identity")
	if len(pais) != 2 || !strings.Contains(pais[0], "verstat=TN-Validation-Failed") || !strings.Contains(pais[0], "user=phone") || !strings.HasPrefix(pais[0], "\"Alice\" <sip:+12025550199@") {
		t.Fatalf("PAI after setVerstat = %q", pais)
	}
	if strings.Contains(req.From().Value(), "verstat") {
		t.Errorf("From got verstat although a PAI exists: %s", req.From().Value())
	}
	if err := setVerstat(req, "evil;x=1"); err == nil {
		t.Error("setVerstat accepted an arbitrary value")
	}
}
