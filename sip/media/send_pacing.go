package media

import "time"

// PacingBucket is the width of a Pacing histogram bucket.
const PacingBucket = 500 * time.Microsecond

// pacingBuckets cover 0 to 50 ms; one more holds the rest.
const pacingBuckets = 100

// Pacing is the distribution of the scheduler's pacing errors (how long
// after its time each packet went to the socket), since the scheduler
// started: fixed buckets, so recording a packet costs an increment.
type Pacing struct {
	// Buckets[i] counts the packets sent between i and i+1 PacingBucket
	// after their time; the last, 50 ms or later.
	Buckets  [pacingBuckets + 1]uint64
	Total    uint64        // packets sent (the socket may have refused some)
	Late     uint64        // sent more than LateAfter after their time
	Max      time.Duration // the largest error
	SendErrs uint64        // packets the socket refused
}

// add records one packet sent late after its time (early counts as 0).
func (p *Pacing) add(late time.Duration) {
	i := min(int(max(late, 0)/PacingBucket), pacingBuckets)
	p.Buckets[i]++
	p.Total++
	if late > LateAfter {
		p.Late++
	}
	p.Max = max(p.Max, late)
}

// Quantile is an upper bound of the q quantile (0 < q <= 1) of the errors:
// the end of the bucket that holds it, or Max if that is smaller. 0 when
// no packet was sent.
func (p *Pacing) Quantile(q float64) time.Duration {
	if p.Total == 0 {
		return 0
	}
	rank := uint64(q * float64(p.Total))
	if float64(rank) < q*float64(p.Total) { // ceiling: the rank-th smallest holds q
		rank++
	}
	rank = max(rank, 1)
	var seen uint64
	for i, n := range p.Buckets {
		seen += n
		if seen >= rank {
			if i == pacingBuckets {
				return p.Max
			}
			return min(time.Duration(i+1)*PacingBucket, p.Max)
		}
	}
	return p.Max
}

// Pacing returns the pacing errors of every packet sent so far (a copy:
// export it as metrics).
func (s *Scheduler) Pacing() Pacing {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pacing
}
