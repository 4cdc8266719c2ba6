package store

import (
	"context"
	"fmt"
	"runtime"
	"strconv"
	"testing"
	"time"
)

// benchKeys are existing keys, so the benchmarks measure the hot path.
func benchKeys(n int) []string {
	keys := make([]string, n)
	for i := range keys {
		keys[i] = "rate:inbound:+1555" + strconv.Itoa(1000000+i)
	}
	return keys
}

func BenchmarkCounterAdd(b *testing.B) {
	ctx := context.Background()
	c := NewMemory().Counter()
	keys := benchKeys(1024)
	for _, k := range keys {
		c.Add(ctx, k, 1, time.Minute, t0)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		// The clock advances 1 ms per call, so buckets roll over too.
		if _, err := c.Add(ctx, keys[i&1023], 1, time.Minute, t0.Add(time.Duration(i)*time.Millisecond)); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

func BenchmarkCounterAddParallel(b *testing.B) {
	ctx := context.Background()
	c := NewMemory().Counter()
	keys := benchKeys(1024)
	for _, k := range keys {
		c.Add(ctx, k, 1, time.Minute, t0)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			c.Add(ctx, keys[i&1023], 1, time.Minute, t0)
			i += 7
		}
	})
}

func BenchmarkDistinctAdd(b *testing.B) {
	for _, members := range []int{1, 16, 1024} {
		b.Run(fmt.Sprint("members=", members), func(b *testing.B) {
			ctx := context.Background()
			d := NewMemory().Distinct()
			keys := benchKeys(64)
			mems := benchKeys(members)
			for _, k := range keys {
				for _, m := range mems {
					d.Add(ctx, k, m, time.Minute, t0)
				}
			}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if _, err := d.Add(ctx, keys[i&63], mems[i%members], time.Minute, t0); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
}

func BenchmarkFlagsGet(b *testing.B) {
	ctx := context.Background()
	f := NewMemory().Flags()
	keys := benchKeys(1024)
	for _, k := range keys[:512] {
		f.Set(ctx, k, time.Hour, t0)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		f.Get(ctx, keys[i&1023], t0) // half set, half not
		i++
	}
}

// BenchmarkMemory1MKeys reports the heap in use by 1,000,000 Counter keys and
// 1,000,000 Distinct keys of one member each (keys ~24 bytes), after GC.
func BenchmarkMemory1MKeys(b *testing.B) {
	const n = 1_000_000
	ctx := context.Background()
	keys := benchKeys(n)
	for b.Loop() {
		m := NewMemory()
		base := heapInUse()
		for _, k := range keys {
			m.Counter().Add(ctx, k, 1, time.Minute, t0)
		}
		counter := heapInUse() - base
		for _, k := range keys {
			m.Distinct().Add(ctx, k, "+15550000000", time.Minute, t0)
		}
		distinct := heapInUse() - base - counter
		b.ReportMetric(float64(counter)/(1<<20), "counter-MiB")
		b.ReportMetric(float64(distinct)/(1<<20), "distinct-MiB")
		b.ReportMetric(float64(counter)/n, "counter-B/key")
		b.ReportMetric(float64(distinct)/n, "distinct-B/key")
		runtime.KeepAlive(m)
	}
}

func heapInUse() int64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapInuse)
}
