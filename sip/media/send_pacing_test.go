package media

import (
	"net"
	"testing"
	"time"
)

// TestPacingHistogram: each error lands in its 0.5 ms bucket (early in the
// first, 50 ms and over in the last), late counts only those over
// LateAfter, and Quantile is the end of the bucket holding the quantile,
// never more than the largest error.
func TestPacingHistogram(t *testing.T) {
	ms := func(f float64) time.Duration { return time.Duration(f * float64(time.Millisecond)) }
	tests := []struct {
		name        string
		errs        []time.Duration
		bucket      map[int]uint64
		late        uint64
		max         time.Duration
		p50, p99, q time.Duration // q: Quantile(1)
	}{
		{name: "none"},
		{
			name:   "early counts as on time",
			errs:   []time.Duration{-ms(0.3), 0},
			bucket: map[int]uint64{0: 2}, max: 0,
		},
		{
			name:   "bucket edges",
			errs:   []time.Duration{ms(0.49), ms(0.5), ms(4.99), LateAfter, LateAfter + 1},
			bucket: map[int]uint64{0: 1, 1: 1, 9: 1, 10: 2}, late: 1, max: LateAfter + 1,
			p50: ms(5), p99: LateAfter + 1, q: LateAfter + 1,
		},
		{
			name: "99 on time, one stall",
			errs: append(repeat(ms(0.2), 99), ms(80)),
			// 80 ms is past the last bucket's start.
			bucket: map[int]uint64{0: 99, pacingBuckets: 1}, late: 1, max: ms(80),
			p50: ms(0.5), p99: ms(0.5), q: ms(80),
		},
		{
			name:   "quantile capped by the maximum",
			errs:   []time.Duration{ms(1.1), ms(1.2)},
			bucket: map[int]uint64{2: 2}, max: ms(1.2),
			p50: ms(1.2), p99: ms(1.2), q: ms(1.2),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var p Pacing
			for _, d := range tt.errs {
				p.add(d)
			}
			for i, n := range p.Buckets {
				if n != tt.bucket[i] {
					t.Errorf("bucket %d: %d, want %d", i, n, tt.bucket[i])
				}
			}
			if p.Total != uint64(len(tt.errs)) || p.Late != tt.late || p.Max != tt.max {
				t.Errorf("total %d late %d max %s, want %d %d %s", p.Total, p.Late, p.Max, len(tt.errs), tt.late, tt.max)
			}
			if got := p.Quantile(0.5); got != tt.p50 {
				t.Errorf("p50 %s, want %s", got, tt.p50)
			}
			if got := p.Quantile(0.99); got != tt.p99 {
				t.Errorf("p99 %s, want %s", got, tt.p99)
			}
			if got := p.Quantile(1); got != tt.q {
				t.Errorf("max quantile %s, want %s", got, tt.q)
			}
		})
	}
}

func repeat(d time.Duration, n int) []time.Duration {
	out := make([]time.Duration, n)
	for i := range out {
		out[i] = d
	}
	return out
}

// TestSchedulerPacing: the scheduler's histogram counts every packet its
// streams sent, and agrees with the streams' own results.
func TestSchedulerPacing(t *testing.T) {
	s := NewScheduler()
	defer s.Close()
	rx := listen(t)
	dst := rx.LocalAddr().(*net.UDPAddr).AddrPort()
	var streams []*Stream
	for _, packets := range []int{3, 10, 25} {
		st, err := s.Play(listen(t), dst, PCMU, make([]byte, 160*packets))
		if err != nil {
			t.Fatal(err)
		}
		streams = append(streams, st)
	}
	var packets, late uint64
	var maxLate time.Duration
	for _, st := range streams {
		<-st.Done()
		packets += uint64(st.Result().Packets)
		late += uint64(st.Result().Late)
		maxLate = max(maxLate, st.Result().MaxLate)
	}
	p := s.Pacing()
	var inBuckets uint64
	for _, n := range p.Buckets {
		inBuckets += n
	}
	if packets != 38 || p.Total != packets || inBuckets != packets || p.Late != late || p.Max != maxLate || p.SendErrs != 0 {
		t.Errorf("pacing %d packets (%d in buckets), %d late, max %s, %d refused; streams sent %d, %d late, max %s",
			p.Total, inBuckets, p.Late, p.Max, p.SendErrs, packets, late, maxLate)
	}
}
