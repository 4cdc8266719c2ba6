package sip

import (
	"errors"
	"strings"
	"testing"

	"github.com/emiago/sipgo/sip"
)

func TestNumber(t *testing.T) {
	tests := []struct{ uri, want string }{
		{"sip:+1-202-555-0100@example.net;user=phone", "12025550100"},
		{"sip:+12025550100;tgrp=TG-1;trunk-context=example.net@example.net", "12025550100"},
		{"tel:+1.202.555.0100", "12025550100"},
		{"sip:(202)%20555@example.net", ""},
		{"sip:alice@example.net", ""},
		{"sip:example.net", ""},
		{"sip:1+2@example.net", ""},
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
