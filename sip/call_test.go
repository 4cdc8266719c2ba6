package sip

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestChainRun(t *testing.T) {
	pass := HandlerFunc{"pass", func(context.Context, *Call) error { return nil }}
	reject := HandlerFunc{"reject", func(context.Context, *Call) error { return Reject(486, "Busy Here", errors.New("limit")) }}
	broken := HandlerFunc{"broken", func(context.Context, *Call) error { return errors.New("store down") }}
	tests := []struct {
		name      string
		chain     Chain
		wantCode  int // 0 = passes
		wantStage string
		wantSeen  []string
	}{
		{"empty chain passes", Chain{}, 0, "", nil},
		{"all pass", Chain{pass, pass}, 0, "", []string{"pass:pass", "pass:pass"}},
		{"reject stops", Chain{pass, reject, pass}, 486, "reject", []string{"pass:pass", "reject:reject"}},
		{"plain error is 500", Chain{broken}, 500, "broken", []string{"broken:reject"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var seen []string
			c := &Call{}
			err := tt.chain.Run(context.Background(), c, func(stage, d string, _ time.Duration) { seen = append(seen, stage+":"+d) })
			var rej *Rejection
			switch {
			case tt.wantCode == 0 && err != nil:
				t.Fatalf("err = %v", err)
			case tt.wantCode != 0 && (!errors.As(err, &rej) || rej.Code != tt.wantCode):
				t.Fatalf("err = %v, want code %d", err, tt.wantCode)
			}
			if c.DecidedBy != tt.wantStage {
				t.Errorf("DecidedBy = %q, want %q", c.DecidedBy, tt.wantStage)
			}
			if len(seen) != len(tt.wantSeen) {
				t.Fatalf("observed %v, want %v", seen, tt.wantSeen)
			}
			for i := range seen {
				if seen[i] != tt.wantSeen[i] {
					t.Errorf("observed %v, want %v", seen, tt.wantSeen)
				}
			}
		})
	}
}

func TestRejectClampsCode(t *testing.T) {
	var r *Rejection
	if !errors.As(Reject(200, "OK", nil), &r) || r.Code != 500 {
		t.Fatalf("Reject(200) = %v, want a 500", r)
	}
}
