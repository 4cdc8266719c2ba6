package main

import "testing"

func TestPeakPSS(t *testing.T) {
	steps := []step{
		{System: "stirgate", Mode: "plain", Target: 4000, Mem: memory{PSSMB: 301}},
		{System: "stirgate", Mode: "plain", Target: 4000, Try: 2, Mem: memory{PSSMB: 266}},
		{System: "stirgate", Mode: "sign", Target: 4000, Mem: memory{PSSMB: 350}},
		{System: "stirgate", Mode: "plain", Target: 3500, Mem: memory{PSSMB: 900}},
		{System: "kamailio", Mode: "plain", Target: 4000, Mem: memory{PSSMB: 520}},
	}
	for _, tc := range []struct {
		system string
		cps    int
		want   float64
		ok     bool
	}{
		{"stirgate", 4000, 350, true},
		{"kamailio", 4000, 520, true},
		{"stirgate", 5000, 0, false},
	} {
		got, ok := peakPSS(steps, tc.system, tc.cps)
		if got != tc.want || ok != tc.ok {
			t.Errorf("peakPSS(%s, %d) = %v, %v; want %v, %v", tc.system, tc.cps, got, ok, tc.want, tc.ok)
		}
	}
}
