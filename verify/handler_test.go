package verify

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stirgate/stirgate/sip"
)

func TestHandlerOutcomes(t *testing.T) {
	p := newPKI(t)
	src, creds := mapSource{testX5U: p.chain}, poolCredentials{p.roots}
	valid := func() string { return sign(t, p.key, testX5U, good()) }
	tests := []struct {
		name        string
		cfg         Config
		call        sip.Call
		wantCode    int // 0 = the call goes on
		wantProto   string
		wantVerstat sip.Verstat
		wantReason  string // prefix of Call.ResponseReason
	}{
		{"passed", Config{}, sip.Call{Orig: testOrig, Dest: testDest, Identities: []string{valid()}}, 0, "", sip.VerstatPassed, ""},
		{"missing, forwarded", Config{}, sip.Call{Orig: testOrig, Dest: testDest}, 0, "", sip.VerstatNoTN, ""},
		{"missing, rejected", Config{OnMissing: "reject"}, sip.Call{Orig: testOrig, Dest: testDest}, 428, "STIR", sip.VerstatNoTN, ""},
		{"anonymous, forwarded", Config{}, sip.Call{Dest: testDest, Identities: []string{valid()}}, 0, "", sip.VerstatNoTN, ""},
		{"anonymous, rejected", Config{OnAnonymous: "reject"}, sip.Call{Dest: testDest, Identities: []string{valid()}}, 433, "SIP", sip.VerstatFailed, ""},
		{"failure, rejected", Config{}, sip.Call{Orig: "12025550111", Dest: testDest, Identities: []string{valid()}}, 438, "STIR", sip.VerstatFailed, ""},
		{"failure, forwarded", Config{OnFailure: "forward"}, sip.Call{Orig: "12025550111", Dest: testDest, Identities: []string{valid()}}, 0, "", sip.VerstatFailed, "STIR;cause=438;text="},
		{"called number from To", Config{CalledNumber: "to"}, sip.Call{Orig: testOrig, Dest: "999", ToTN: testDest, Identities: []string{valid()}}, 0, "", sip.VerstatPassed, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tt.cfg
			cfg.Enabled, cfg.TrustRoots = true, []string{"x"}
			cfg.ApplyDefaults()
			h := Handler{Service: New(cfg, src, creds, NewMemoryReplay(), func() time.Time { return testNow }), Config: cfg, Metrics: NewMetrics(nil)}
			c := tt.call
			err := h.HandleCall(context.Background(), &c)
			var rej *sip.Rejection
			switch {
			case tt.wantCode == 0 && err != nil:
				t.Fatalf("err = %v", err)
			case tt.wantCode != 0 && (!errors.As(err, &rej) || rej.Code != tt.wantCode || rej.Protocol != tt.wantProto):
				t.Fatalf("err = %#v, want %d over %s", err, tt.wantCode, tt.wantProto)
			}
			if c.Verstat != tt.wantVerstat {
				t.Errorf("verstat = %q, want %q", c.Verstat, tt.wantVerstat)
			}
			if !strings.HasPrefix(c.ResponseReason, tt.wantReason) || (tt.wantReason == "" && c.ResponseReason != "") {
				t.Errorf("ResponseReason = %q, want prefix %q", c.ResponseReason, tt.wantReason)
			}
			if tt.wantVerstat == sip.VerstatPassed && (c.Attest != "A" || c.OrigID == "") {
				t.Errorf("attest/origid not passed on: %q %q", c.Attest, c.OrigID)
			}
		})
	}
}

// TestHandlerReplayStoreDown: a verified token the replay store cannot
// record is refused with 503 (fail closed), even with on_failure: forward,
// since forwarding would tell the PBX the caller failed verification.
func TestHandlerReplayStoreDown(t *testing.T) {
	p := newPKI(t)
	for _, onFailure := range []string{"reject", "forward"} {
		cfg := Config{Enabled: true, TrustRoots: []string{"x"}, OnFailure: onFailure}
		cfg.ApplyDefaults()
		h := Handler{Service: New(cfg, mapSource{testX5U: p.chain}, poolCredentials{p.roots}, failingStore{}, func() time.Time { return testNow }), Config: cfg, Metrics: NewMetrics(nil)}
		c := sip.Call{Orig: testOrig, Dest: testDest, Identities: []string{sign(t, p.key, testX5U, good())}}
		err := h.HandleCall(context.Background(), &c)
		var rej *sip.Rejection
		if !errors.As(err, &rej) || rej.Code != 503 || rej.Protocol != "SIP" {
			t.Errorf("on_failure %s: err = %#v, want 503 over SIP", onFailure, err)
		}
	}
}
