package main

import (
	"testing"
	"time"
)

func TestSplitSeries(t *testing.T) {
	for _, tc := range []struct {
		in, name string
		labels   map[string]string
	}{
		{`stirgate_state_redis_seconds_count{op="counter_add"}`, "stirgate_state_redis_seconds_count", map[string]string{"op": "counter_add"}},
		{`stirgate_state_redis_errors_total{kind="timeout",x="y"}`, "stirgate_state_redis_errors_total", map[string]string{"kind": "timeout", "x": "y"}},
		{`go_goroutines`, "go_goroutines", map[string]string{}},
	} {
		name, labels := splitSeries(tc.in)
		if name != tc.name || len(labels) != len(tc.labels) {
			t.Fatalf("splitSeries(%q) = %q %v, want %q %v", tc.in, name, labels, tc.name, tc.labels)
		}
		for k, v := range tc.labels {
			if labels[k] != v {
				t.Fatalf("splitSeries(%q): %s=%q, want %q", tc.in, k, labels[k], v)
			}
		}
	}
}

// TestRedisStats: per-call numbers from two snapshots; the bench's own
// INFO commands are not the calls'.
func TestRedisStats(t *testing.T) {
	r0 := redisSnap{commands: 100, byCommand: map[string]int64{"evalsha": 10, "info": 3}, cpu: time.Second}
	r1 := redisSnap{commands: 100 + 4*1000 + 1, byCommand: map[string]int64{"evalsha": 10 + 2000, "hincrby": 2000, "info": 4}, cpu: time.Second + 50*time.Millisecond}
	m0 := map[string]float64{`stirgate_state_redis_seconds_count{op="counter_add"}`: 7, `stirgate_policy_store_round_trips_sum{stage="policy"}`: 10}
	m1 := map[string]float64{
		`stirgate_policy_store_round_trips_sum{stage="policy"}`: 10 + 1000,
		`stirgate_state_redis_seconds_count{op="counter_add"}`:  7 + 2000,
		`stirgate_state_redis_seconds_count{op="flags_get"}`:    1000,
		`stirgate_state_redis_errors_total{kind="timeout"}`:     3,
		`stirgate_state_redis_errors_total{kind="script"}`:      0,
		`stirgate_state_cache_hits_total`:                       500,
	}
	st := redisStats(r0, r1, m0, m1, 1000)
	if st.CommandsPerCall != 4 || st.ByCommand["evalsha"] != 2 || st.ByCommand["hincrby"] != 2 || st.ByCommand["info"] != 0 {
		t.Errorf("commands: %v per call, by command %v; want 4, evalsha 2, hincrby 2, no info", st.CommandsPerCall, st.ByCommand)
	}
	if st.RoundTripsPerCall != 1 || st.OpsByOp["counter_add"] != 2 || st.OpsByOp["flags_get"] != 1 {
		t.Errorf("round trips: %v per call, store ops by op %v; want 1, counter_add 2, flags_get 1", st.RoundTripsPerCall, st.OpsByOp)
	}
	if st.CPUusPerCall != 50 {
		t.Errorf("CPU: %v µs per call, want 50", st.CPUusPerCall)
	}
	if len(st.Errors) != 1 || st.Errors["timeout"] != 3 || st.CacheHits != 500 {
		t.Errorf("errors %v, cache hits %v; want timeout 3 only, 500", st.Errors, st.CacheHits)
	}
}
