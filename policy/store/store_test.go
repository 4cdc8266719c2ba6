package store

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func at(d time.Duration) time.Time { return t0.Add(d) }

func TestCounterSlidingWindow(t *testing.T) {
	ctx := context.Background()
	const w = 60 * time.Second // buckets of 5s, aligned: t0 is on a boundary
	type step struct {
		add  int // events to add; -1 = Count only
		key  string
		dt   time.Duration
		want int
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"accumulates", []step{
			{1, "a", 0, 1}, {2, "a", time.Second, 3}, {1, "a", 30 * time.Second, 4}, {-1, "a", 59 * time.Second, 4},
		}},
		{"slides out bucket by bucket", []step{
			{1, "a", 0, 1}, {1, "a", 10 * time.Second, 2}, {1, "a", 20 * time.Second, 3},
			{-1, "a", 59*time.Second + 999*time.Millisecond, 3},
			{-1, "a", 60 * time.Second, 2}, // bucket [0,5s) left the window
			{-1, "a", 70 * time.Second, 1},
			{-1, "a", 80 * time.Second, 0},
		}},
		{"late in bucket drops up to one bucket early", []step{
			{1, "a", 4 * time.Second, 1},
			{-1, "a", 59 * time.Second, 1},
			{-1, "a", 60 * time.Second, 0}, // counted for 56s: window - at most window/12
		}},
		{"idle key counts zero then restarts", []step{
			{5, "a", 0, 5}, {-1, "a", time.Hour, 0}, {1, "a", time.Hour, 1},
		}},
		{"keys are independent", []step{
			{3, "a", 0, 3}, {1, "b", 0, 1}, {-1, "a", 0, 3}, {-1, "c", 0, 0},
		}},
		{"earlier now is the newest bucket", []step{
			{1, "a", 30 * time.Second, 1}, {1, "a", 0, 2}, {-1, "a", 0, 2},
		}},
		{"n zero", []step{{0, "a", 0, 0}, {2, "a", 0, 2}, {0, "a", 0, 2}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := NewMemory().Counter()
			for i, s := range tt.steps {
				var got int
				var err error
				if s.add >= 0 {
					got, err = c.Add(ctx, s.key, s.add, w, at(s.dt))
				} else {
					got, err = c.Count(ctx, s.key, w, at(s.dt))
				}
				if err != nil || got != s.want {
					t.Fatalf("step %d %+v: got %d, %v; want %d", i, s, got, err, s.want)
				}
			}
		})
	}
}

func TestCounterWindowChangeResets(t *testing.T) {
	ctx := context.Background()
	c := NewMemory().Counter()
	c.Add(ctx, "k", 5, time.Minute, t0)
	if n, _ := c.Count(ctx, "k", time.Second, t0); n != 0 {
		t.Fatalf("count with another window = %d, want 0", n)
	}
	if n, _ := c.Add(ctx, "k", 1, time.Second, t0); n != 1 {
		t.Fatalf("add with another window = %d, want 1 (reset)", n)
	}
}

func TestCounterSaturates(t *testing.T) {
	ctx := context.Background()
	c := NewMemory().Counter()
	c.Add(ctx, "k", 1<<40, time.Minute, t0)
	n, err := c.Add(ctx, "k", 1, time.Minute, t0)
	if err != nil || n != 1<<32-1 {
		t.Fatalf("got %d, %v; want %d", n, err, 1<<32-1)
	}
}

func TestInvalidAndCancelled(t *testing.T) {
	m := NewMemory()
	ctx := context.Background()
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	tests := []struct {
		name string
		err  error
		want error
	}{
		{"counter window", second(m.Counter().Add(ctx, "k", 1, 5, t0)), ErrInvalid},
		{"counter negative", second(m.Counter().Add(ctx, "k", -1, time.Second, t0)), ErrInvalid},
		{"count window", second(m.Counter().Count(ctx, "k", 0, t0)), ErrInvalid},
		{"distinct window", second(m.Distinct().Add(ctx, "k", "m", 0, t0)), ErrInvalid},
		{"complaints window", second(m.Complaints().Count(ctx, "k", -time.Second, t0)), ErrInvalid},
		{"counter cancelled", second(m.Counter().Add(cancelled, "k", 1, time.Second, t0)), context.Canceled},
		{"count cancelled", second(m.Counter().Count(cancelled, "k", time.Second, t0)), context.Canceled},
		{"distinct cancelled", second(m.Distinct().Add(cancelled, "k", "m", time.Second, t0)), context.Canceled},
		{"flags set cancelled", m.Flags().Set(cancelled, "k", time.Second, t0), context.Canceled},
		{"flags get cancelled", third(m.Flags().Get(cancelled, "k", t0)), context.Canceled},
		{"complaints add cancelled", m.Complaints().Add(cancelled, "k", t0), context.Canceled},
		{"complaints count cancelled", second(m.Complaints().Count(cancelled, "k", time.Hour, t0)), context.Canceled},
	}
	for _, tt := range tests {
		if !errors.Is(tt.err, tt.want) {
			t.Errorf("%s: err = %v, want %v", tt.name, tt.err, tt.want)
		}
	}
	if s := m.Stats(); s.Counter.Keys+s.Distinct.Keys+s.Flags.Keys+s.Complaints.Keys != 0 {
		t.Errorf("failed calls created keys: %+v", s)
	}
}

func second[T any](_ T, err error) error { return err }

func third[T, U any](_ T, _ U, err error) error { return err }

func TestIdleKeysExpire(t *testing.T) {
	ctx := context.Background()
	m := NewMemory()
	for i := range 1000 {
		k := fmt.Sprint("k", i)
		m.Counter().Add(ctx, k, 1, time.Minute, t0)
		m.Distinct().Add(ctx, k, "x", time.Minute, t0)
		m.Flags().Set(ctx, k, time.Minute, t0)
		m.Complaints().Add(ctx, k, t0)
	}
	// Not yet idle: nothing goes.
	m.Sweep(at(59 * time.Second))
	if s := m.Stats(); s.Counter.Keys != 1000 || s.Distinct.Keys != 1000 || s.Flags.Keys != 1000 {
		t.Fatalf("swept live keys: %+v", s)
	}
	// Idle: new-key insertions sample and drop old keys as they go.
	for i := range 1000 {
		k := fmt.Sprint("new", i)
		m.Counter().Add(ctx, k, 1, time.Minute, at(2*time.Minute))
		m.Distinct().Add(ctx, k, "x", time.Minute, at(2*time.Minute))
		m.Flags().Set(ctx, k, time.Minute, at(2*time.Minute))
	}
	s := m.Stats()
	for name, ts := range map[string]TableStats{"counter": s.Counter, "distinct": s.Distinct, "flags": s.Flags} {
		if ts.Expired < 900 || ts.Keys > 1100 {
			t.Errorf("%s: amortised expiry dropped %d, %d keys left; want most of the 1000 idle ones gone", name, ts.Expired, ts.Keys)
		}
	}
	// Sweep drops the rest; complaints go after the retention.
	m.Sweep(at(10 * time.Minute))
	s = m.Stats()
	if s.Counter.Keys != 0 || s.Distinct.Keys != 0 || s.Flags.Keys != 0 || s.Complaints.Keys != 1000 {
		t.Fatalf("after sweep: %+v", s)
	}
	m.Sweep(at(DefaultComplaintRetention))
	if s := m.Stats(); s.Complaints.Keys != 0 {
		t.Fatalf("complaints kept past retention: %+v", s.Complaints)
	}
}

func TestMaxKeys(t *testing.T) {
	ctx := context.Background()
	m := NewMemory(WithMaxKeys(numShards)) // one key per shard
	full := 0
	for i := range 10 * numShards {
		if _, err := m.Counter().Add(ctx, fmt.Sprint("k", i), 1, time.Minute, t0); errors.Is(err, ErrFull) {
			full++
		} else if err != nil {
			t.Fatal(err)
		}
	}
	s := m.Stats().Counter
	if s.Keys != numShards || full != 9*numShards || s.Rejected != uint64(full) {
		t.Fatalf("keys %d, refused %d, stats %+v; want %d keys, %d refused", s.Keys, full, s, numShards, 9*numShards)
	}
	// Existing keys keep working when full.
	for i := range 10 * numShards {
		k := fmt.Sprint("k", i)
		if n, err := m.Counter().Add(ctx, k, 1, time.Minute, t0); err == nil && n != 2 {
			t.Fatalf("existing key %s: %d", k, n)
		}
	}
	// Once the old keys are idle, a full shard sweeps and accepts. Keys
	// land in shards by a random hash: 100 per shard on average leave no
	// shard without one (10 per shard missed one ~0.3% of runs).
	for i := range 100 * numShards {
		if _, err := m.Counter().Add(ctx, fmt.Sprint("later", i), 1, time.Minute, at(time.Hour)); err != nil && !errors.Is(err, ErrFull) {
			t.Fatal(err)
		}
	}
	if s := m.Stats().Counter; s.Keys != numShards || s.Expired != numShards {
		t.Fatalf("after idle: %+v", s)
	}
	// The other structures have their own cap.
	m = NewMemory(WithMaxKeys(1))
	for _, err := range []error{
		second(m.Distinct().Add(ctx, "a", "x", time.Minute, t0)),
		m.Flags().Set(ctx, "a", time.Minute, t0),
		m.Complaints().Add(ctx, "a", t0),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	fullErrs := 0
	for i := range 2 * numShards {
		k := fmt.Sprint("k", i)
		for _, err := range []error{
			second(m.Distinct().Add(ctx, k, "x", time.Minute, t0)),
			m.Flags().Set(ctx, k, time.Minute, t0),
			m.Complaints().Add(ctx, k, t0),
		} {
			if errors.Is(err, ErrFull) {
				fullErrs++
			}
		}
	}
	if s := m.Stats(); fullErrs == 0 || s.Distinct.Rejected+s.Flags.Rejected+s.Complaints.Rejected != uint64(fullErrs) {
		t.Fatalf("full errors %d, stats %+v", fullErrs, s)
	}
}

func TestDistinct(t *testing.T) {
	ctx := context.Background()
	const w = time.Minute
	type step struct {
		key, member string
		dt          time.Duration
		want        int
	}
	tests := []struct {
		name  string
		max   int
		steps []step
	}{
		{"counts distinct", 0, []step{
			{"b", "a1", 0, 1}, {"b", "a2", 0, 2}, {"b", "a1", time.Second, 2}, {"b", "a3", 2 * time.Second, 3}, {"c", "a1", 2 * time.Second, 1},
		}},
		{"members leave the window", 0, []step{
			{"b", "a1", 0, 1}, {"b", "a2", 30 * time.Second, 2},
			{"b", "a3", 60 * time.Second, 2}, // a1 (at 0) is out at exactly window
			{"b", "a4", 91 * time.Second, 2}, // a2 out, a3 in
		}},
		{"re-adding refreshes a member", 0, []step{
			{"b", "a1", 0, 1}, {"b", "a1", 50 * time.Second, 1}, {"b", "a2", 100 * time.Second, 2},
		}},
		{"idle key restarts", 0, []step{
			{"b", "a1", 0, 1}, {"b", "a2", 0, 2}, {"b", "a3", time.Hour, 1},
		}},
		{"saturates at the cap", 3, []step{
			{"b", "a1", 0, 1}, {"b", "a2", 0, 2}, {"b", "a3", 0, 3}, {"b", "a4", 0, 3}, {"b", "a5", 0, 3},
			{"b", "a1", time.Second, 3},                                                // known member still refreshes
			{"b", "a6", 60500 * time.Millisecond, 2}, {"b", "a7", 61 * time.Second, 2}, // a2, a3 left, then a1
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := NewMemory(WithMaxMembers(tt.max))
			for i, s := range tt.steps {
				got, err := m.Distinct().Add(ctx, s.key, s.member, w, at(s.dt))
				if err != nil || got != s.want {
					t.Fatalf("step %d %+v: got %d, %v; want %d", i, s, got, err, s.want)
				}
			}
		})
	}
	m := NewMemory(WithMaxMembers(2))
	for _, mem := range []string{"a", "b", "c", "d"} {
		m.Distinct().Add(ctx, "k", mem, w, t0)
	}
	if got := m.Stats().DistinctSaturated; got != 2 {
		t.Fatalf("saturated = %d, want 2", got)
	}
}

func TestFlags(t *testing.T) {
	ctx := context.Background()
	type step struct {
		set    bool
		ttl    time.Duration
		dt     time.Duration
		wantOK bool
		until  time.Duration // expected until, relative to t0
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"unset", []step{{dt: 0}}},
		{"set then expires", []step{
			{set: true, ttl: time.Minute},
			{dt: 59 * time.Second, wantOK: true, until: time.Minute},
			{dt: time.Minute},
		}},
		{"last set wins, shorter too", []step{
			{set: true, ttl: time.Hour},
			{set: true, ttl: time.Minute, dt: time.Second},
			{dt: 2 * time.Second, wantOK: true, until: time.Minute + time.Second},
			{dt: 2 * time.Minute},
		}},
		{"zero ttl clears", []step{
			{set: true, ttl: time.Hour},
			{set: true, ttl: 0, dt: time.Second},
			{dt: time.Second},
		}},
		{"set again after expiry", []step{
			{set: true, ttl: time.Second},
			{dt: time.Hour},
			{set: true, ttl: time.Second, dt: time.Hour},
			{dt: time.Hour, wantOK: true, until: time.Hour + time.Second},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := NewMemory().Flags()
			for i, s := range tt.steps {
				if s.set {
					if err := f.Set(ctx, "callee", s.ttl, at(s.dt)); err != nil {
						t.Fatal(err)
					}
					continue
				}
				until, ok, err := f.Get(ctx, "callee", at(s.dt))
				if err != nil || ok != s.wantOK || (ok && !until.Equal(at(s.until))) {
					t.Fatalf("step %d: got %v %v %v; want %v %v", i, until, ok, err, s.wantOK, at(s.until))
				}
			}
		})
	}
}

func TestComplaints(t *testing.T) {
	ctx := context.Background()
	day := 24 * time.Hour
	type query struct {
		window, dt time.Duration
		want       int
	}
	tests := []struct {
		name    string
		opts    []MemoryOption
		adds    []time.Duration
		queries []query
	}{
		{"windows", nil,
			[]time.Duration{0, time.Hour, 2 * day, 2*day + time.Minute},
			[]query{
				{day, 2*day + time.Minute, 2},
				{7 * day, 2*day + time.Minute, 4},
				{time.Hour, time.Hour, 1}, // (0, 1h]: 0 is out, 1h in
				{7 * day, 30 * time.Minute, 1},
				{7 * day, -time.Second, 0}, // nothing in the future counts
			}},
		{"out of order", nil,
			[]time.Duration{2 * time.Hour, 0, time.Hour},
			[]query{{90 * time.Minute, 2 * time.Hour, 2}, {3 * time.Hour, 2 * time.Hour, 3}}},
		{"retention", []MemoryOption{WithComplaintRetention(day)},
			[]time.Duration{0, time.Hour, day + 2*time.Hour, 0},
			[]query{{30 * day, day + 2*time.Hour, 1}}},
		{"cap drops the oldest", []MemoryOption{WithMaxComplaints(3)},
			[]time.Duration{0, time.Minute, 2 * time.Minute, 3 * time.Minute, -time.Minute},
			[]query{{day, 3 * time.Minute, 3}, {90 * time.Second, 3 * time.Minute, 2}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := NewMemory(tt.opts...).Complaints()
			for _, a := range tt.adds {
				if err := c.Add(ctx, "+15551230000", at(a)); err != nil {
					t.Fatal(err)
				}
			}
			for i, q := range tt.queries {
				got, err := c.Count(ctx, "+15551230000", q.window, at(q.dt))
				if err != nil || got != q.want {
					t.Errorf("query %d %+v: got %d, %v", i, q, got, err)
				}
			}
			if n, _ := c.Count(ctx, "other", day, at(0)); n != 0 {
				t.Errorf("other subject: %d", n)
			}
		})
	}
}

func TestConcurrent(t *testing.T) {
	ctx := context.Background()
	m := NewMemory(WithMaxKeys(10_000))
	const workers, perWorker, keys = 16, 2000, 50
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range perWorker {
				k := fmt.Sprint("k", i%keys)
				now := at(time.Duration(i) * time.Millisecond)
				if _, err := m.Counter().Add(ctx, k, 1, time.Hour, now); err != nil {
					t.Error(err)
					return
				}
				m.Counter().Count(ctx, k, time.Hour, now)
				m.Distinct().Add(ctx, k, fmt.Sprint("w", w), time.Hour, now)
				m.Flags().Set(ctx, fmt.Sprint("f", w, i%keys), time.Second, now)
				m.Flags().Get(ctx, k, now)
				if i%100 == 0 {
					m.Complaints().Add(ctx, k, now)
					m.Sweep(now)
					m.Stats()
				}
			}
		})
	}
	wg.Wait()
	end := at(perWorker * time.Millisecond)
	total := 0
	for i := range keys {
		k := fmt.Sprint("k", i)
		n, _ := m.Counter().Count(ctx, k, time.Hour, end)
		total += n
		if d, _ := m.Distinct().Add(ctx, k, "w0", time.Hour, end); d != workers {
			t.Errorf("distinct %s = %d, want %d", k, d, workers)
		}
	}
	if total != workers*perWorker {
		t.Fatalf("total count %d, want %d", total, workers*perWorker)
	}
}

func TestConcurrency(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name string
		run  func(c Concurrency) (int, error)
		want int
	}{
		{"slots add up", func(c Concurrency) (int, error) {
			c.Acquire(ctx, "k", "call-1", time.Hour, t0)
			return c.Acquire(ctx, "k", "call-2", time.Hour, t0)
		}, 2},
		{"re-acquiring renews, does not add", func(c Concurrency) (int, error) {
			c.Acquire(ctx, "k", "call-1", time.Hour, t0)
			return c.Acquire(ctx, "k", "call-1", time.Hour, at(time.Minute))
		}, 1},
		{"release frees", func(c Concurrency) (int, error) {
			c.Acquire(ctx, "k", "call-1", time.Hour, t0)
			c.Acquire(ctx, "k", "call-2", time.Hour, t0)
			if err := c.Release(ctx, "k", "call-1"); err != nil {
				return 0, err
			}
			return c.Acquire(ctx, "k", "call-3", time.Hour, t0)
		}, 2},
		{"a lost release expires", func(c Concurrency) (int, error) {
			c.Acquire(ctx, "k", "call-1", time.Hour, t0)
			return c.Acquire(ctx, "k", "call-2", time.Hour, at(time.Hour+time.Second))
		}, 1},
		{"keys are separate", func(c Concurrency) (int, error) {
			c.Acquire(ctx, "a", "call-1", time.Hour, t0)
			return c.Acquire(ctx, "b", "call-2", time.Hour, t0)
		}, 1},
		{"unknown release is fine", func(c Concurrency) (int, error) {
			return 0, c.Release(ctx, "nothing", "call-1")
		}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.run(NewMemory().Concurrency())
			if err != nil || got != tt.want {
				t.Fatalf("got %d, %v; want %d", got, err, tt.want)
			}
		})
	}
	m := NewMemory()
	m.Concurrency().Acquire(ctx, "k", "call-1", time.Hour, t0)
	m.Concurrency().Release(ctx, "k", "call-1")
	if n := m.Stats().Concurrency.Keys; n != 0 {
		t.Fatalf("%d keys left after the last release, want 0", n)
	}
}
