package store

import (
	"context"
	"fmt"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stirgate/stirgate/policy/store/redistest"
)

// Benchmarks of the Redis store against a standalone redis-server on
// loopback: one call at a time (the round trip), and Parallel ones where
// concurrent calls share round trips (rueidis auto-pipelining). Numbers:
// README "Performance".
//
//	go test -run '^$' -bench Redis -benchtime 2000x -benchmem ./policy/store/

func benchRedis(b *testing.B) *Redis {
	b.Helper()
	srv := redistest.Start(b)
	r, err := NewRedis(context.Background(), RedisOptions{Mode: "standalone", Addrs: []string{srv.Addr}, Timeout: time.Second})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { r.Close() })
	return r
}

// benchRun runs call once per iteration (i counts from 0), serially.
func benchRun(b *testing.B, call func(ctx context.Context, i int) error) {
	ctx := context.Background()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if err := call(ctx, i); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

func BenchmarkRedisCounterAdd(b *testing.B) {
	c := benchRedis(b).Counter()
	keys := benchKeys(1024)
	benchRun(b, func(ctx context.Context, i int) error {
		_, err := c.Add(ctx, keys[i&1023], 1, time.Minute, t0.Add(time.Duration(i)*time.Millisecond))
		return err
	})
}

func BenchmarkRedisCounterAddParallel(b *testing.B) {
	c := benchRedis(b).Counter()
	keys := benchKeys(1024)
	var seq atomic.Int64
	b.ReportAllocs()
	b.SetParallelism(16) // 16 goroutines per CPU: calls in flight together
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		for pb.Next() {
			i := int(seq.Add(1))
			if _, err := c.Add(ctx, keys[i&1023], 1, time.Minute, t0.Add(time.Duration(i)*time.Millisecond)); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func BenchmarkRedisCounterCount(b *testing.B) {
	c := benchRedis(b).Counter()
	keys := benchKeys(1024)
	benchRun(b, func(ctx context.Context, i int) error {
		_, err := c.Count(ctx, keys[i&1023], time.Minute, t0)
		return err
	})
}

func BenchmarkRedisDistinctAdd(b *testing.B) {
	d := benchRedis(b).Distinct()
	keys := benchKeys(1024)
	benchRun(b, func(ctx context.Context, i int) error {
		_, err := d.Add(ctx, keys[i&1023], "+1555"+strconv.Itoa(i&15), 10*time.Minute, t0.Add(time.Duration(i)*time.Millisecond))
		return err
	})
}

func BenchmarkRedisFlagsSet(b *testing.B) {
	f := benchRedis(b).Flags()
	keys := benchKeys(1024)
	benchRun(b, func(ctx context.Context, i int) error {
		return f.Set(ctx, keys[i&1023], time.Hour, t0)
	})
}

func BenchmarkRedisFlagsGet(b *testing.B) {
	f := benchRedis(b).Flags()
	keys := benchKeys(1024)
	for _, k := range keys[:512] {
		if err := f.Set(context.Background(), k, time.Hour, t0); err != nil {
			b.Fatal(err)
		}
	}
	benchRun(b, func(ctx context.Context, i int) error {
		_, _, err := f.Get(ctx, keys[i&1023], t0) // half set, half unknown
		return err
	})
}

func BenchmarkRedisComplaintsAdd(b *testing.B) {
	c := benchRedis(b).Complaints()
	keys := benchKeys(1024)
	benchRun(b, func(ctx context.Context, i int) error {
		return c.Add(ctx, keys[i&1023], time.Now())
	})
}

func BenchmarkRedisComplaintsCount(b *testing.B) {
	c := benchRedis(b).Complaints()
	keys := benchKeys(1024)
	for i := range 4096 {
		if err := c.Add(context.Background(), keys[i&1023], time.Now()); err != nil {
			b.Fatal(err)
		}
	}
	benchRun(b, func(ctx context.Context, i int) error {
		_, err := c.Count(ctx, keys[i&1023], 7*24*time.Hour, time.Now())
		return err
	})
}

// BenchmarkRedisConcurrency: one Acquire and one Release per iteration
// (two round trips).
func BenchmarkRedisConcurrency(b *testing.B) {
	c := benchRedis(b).Concurrency()
	keys := benchKeys(64)
	benchRun(b, func(ctx context.Context, i int) error {
		call := "call-" + strconv.Itoa(i)
		if _, err := c.Acquire(ctx, keys[i&63], call, time.Hour, t0); err != nil {
			return err
		}
		return c.Release(ctx, keys[i&63], call)
	})
}

func BenchmarkRedisOnceClaim(b *testing.B) {
	o := benchRedis(b).Once()
	benchRun(b, func(ctx context.Context, i int) error {
		_, err := o.Claim(ctx, "passport:"+strconv.Itoa(i), time.Minute, t0)
		return err
	})
}

// BenchmarkRedisBatchStage is the policy stage of the bench's state
// comparison (rate, bombing's three thresholds, the one-ring mark), each
// call from a new number: four counter adds and one flag read in one batch.
func BenchmarkRedisBatchStage(b *testing.B) {
	r := benchRedis(b)
	res := make([]Result, 5)
	benchRun(b, func(ctx context.Context, i int) error {
		caller := "+1555" + strconv.Itoa(2000000+i)
		ops := []Op{
			{Kind: OpCounterAdd, Key: "rate:per-caller:" + caller, N: 1, Window: time.Minute},
			{Kind: OpCounterAdd, Key: "bomb:0:" + caller, N: 1, Window: 15 * time.Minute},
			{Kind: OpCounterAdd, Key: "bomb:1:" + caller, N: 1, Window: time.Hour},
			{Kind: OpCounterAdd, Key: "bomb:2:" + caller, N: 1, Window: 24 * time.Hour},
			{Kind: OpFlagsGet, Key: "onering:" + caller},
		}
		if trips := Run(ctx, r, ops, t0.Add(time.Duration(i)*time.Millisecond), res); trips != 1 {
			return fmt.Errorf("%d round trips, want 1", trips)
		}
		for _, x := range res {
			if x.Err != nil {
				return x.Err
			}
		}
		return nil
	})
}
