package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/stirgate/stirgate/integration/internal/sippfiles"
)

// redisServer is the bench's own redis-server on loopback (no
// persistence), stopped by its PID, with one connection of the bench's
// for INFO, FLUSHALL, SCAN and MEMORY USAGE.
type redisServer struct {
	addr string
	cmd  *exec.Cmd
	done chan struct{}
	log  string
	conn *respConn
}

// startRedis runs redis-server in dir on a free loopback port, at nice
// value nice (0: as the others), and waits (bounded) until it answers PING.
func startRedis(ctx context.Context, dir string, nice int) (*redisServer, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, fmt.Errorf("redis-server not found (Debian package redis-server): %w", err)
	}
	port, err := freeUDPPort() // free for TCP too
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	r := &redisServer{addr: hostPort(port), log: filepath.Join(dir, "redis.log"), done: make(chan struct{})}
	f, err := os.Create(r.log)
	if err != nil {
		return nil, err
	}
	args := []string{"--port", itoa(port)}
	if nice != 0 {
		// Redis on a core of its own, as on its own machine, without
		// taking a core from the 2 the bench has: it goes first.
		if bin, err = exec.LookPath("nice"); err != nil {
			return nil, fmt.Errorf("-redis-nice: %w", err)
		}
		args = append([]string{"-n", itoa(nice), "redis-server"}, args...)
	}
	r.cmd = exec.Command(bin, append(args, "--bind", loopback, "--save", "", "--appendonly", "no",
		"--dir", dir, "--protected-mode", "no")...)
	r.cmd.Stdout, r.cmd.Stderr = f, f
	if err := r.cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start redis-server: %w", err)
	}
	go func() {
		_ = r.cmd.Wait()
		f.Close()
		close(r.done)
	}()
	deadline := time.Now().Add(10 * time.Second)
	for i := 0; ; i++ {
		if r.conn, err = dialRESP(r.addr); err == nil {
			var pong any
			if pong, err = r.conn.do("PING"); err == nil && pong == "PONG" {
				return r, nil
			}
			r.conn.close()
			r.conn = nil
		}
		select {
		case <-r.done:
			return nil, fmt.Errorf("redis-server exited before answering PING:\n%s", sippfiles.Tail(sippfiles.ReadFile(r.log), 10))
		default:
		}
		if i >= 500 || time.Now().After(deadline) || ctx.Err() != nil {
			r.stop()
			return nil, fmt.Errorf("redis-server on %s: no PONG within 10 s: %v", r.addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop ends redis-server by its PID: SIGTERM, then SIGKILL after 5 s.
func (r *redisServer) stop() {
	if r == nil || r.cmd == nil {
		return
	}
	if r.conn != nil {
		r.conn.close()
	}
	select {
	case <-r.done:
	default:
		terminate(r.cmd, r.done, 5*time.Second)
	}
}

// redisSnap is what the bench reads from Redis before and after a step.
type redisSnap struct {
	commands   int64            // INFO stats total_commands_processed
	byCommand  map[string]int64 // INFO commandstats calls
	usedMemory int64            // INFO memory used_memory
	cpu        time.Duration    // /proc/PID/stat utime+stime of redis-server
}

func (r *redisServer) snapshot() (redisSnap, error) {
	s := redisSnap{byCommand: map[string]int64{}}
	reply, err := r.conn.do("INFO", "stats", "commandstats", "memory")
	if err != nil {
		return s, fmt.Errorf("redis INFO: %w", err)
	}
	info, ok := reply.(string)
	if !ok {
		return s, fmt.Errorf("redis INFO: reply %T", reply)
	}
	for _, l := range strings.Split(info, "\r\n") {
		k, v, ok := strings.Cut(l, ":")
		if !ok {
			continue
		}
		switch {
		case k == "total_commands_processed":
			s.commands, _ = strconv.ParseInt(v, 10, 64)
		case k == "used_memory":
			s.usedMemory, _ = strconv.ParseInt(v, 10, 64)
		case strings.HasPrefix(k, "cmdstat_"):
			// cmdstat_evalsha:calls=10,usec=...,...
			calls, _, _ := strings.Cut(strings.TrimPrefix(v, "calls="), ",")
			s.byCommand[strings.TrimPrefix(k, "cmdstat_")], _ = strconv.ParseInt(calls, 10, 64)
		}
	}
	if s.cpu, err = cpuTime([]int{r.cmd.Process.Pid}); err != nil {
		return s, err
	}
	return s, nil
}

// flush empties Redis (before a step: its keys are then the step's).
func (r *redisServer) flush() error {
	if _, err := r.conn.do("FLUSHALL"); err != nil {
		return fmt.Errorf("redis FLUSHALL: %w", err)
	}
	return nil
}

// redisStepStats is what Redis did for one step, per call.
type redisStepStats struct {
	// Commands Redis executed per call: INFO total_commands_processed,
	// less the bench's own INFO; by command from INFO commandstats (a
	// script run by EVALSHA is one command, whatever it does inside).
	CommandsPerCall float64            `json:"commands_per_call"`
	ByCommand       map[string]float64 `json:"commands_per_call_by_command"`
	// Round trips per call: the sum of stirgate's
	// stirgate_policy_store_round_trips (per stage, a batch is one).
	RoundTripsPerCall float64 `json:"round_trips_per_call"`
	// Store operations per call by op: stirgate_state_redis_seconds
	// observations (op="batch" for a stage's batch; a flag read served by
	// the client-side cache is counted but costs no round trip).
	OpsByOp map[string]float64 `json:"store_ops_per_call_by_op"`
	// Redis CPU per call: user+system time of redis-server (/proc).
	CPUusPerCall float64 `json:"redis_cpu_us_per_call"`
	// Store errors during the step, by kind (any makes the step unclean).
	Errors map[string]float64 `json:"store_errors,omitempty"`
	// Client-side cache of flag reads.
	CacheHits   float64 `json:"cache_hits"`
	CacheMisses float64 `json:"cache_misses"`
	// A stage's batch as stirgate timed it (stirgate_state_redis_seconds
	// op="batch": from the call into the client to the last reply): the
	// mean, and the bucket bounds under which 50% and 99% fell.
	BatchMeanMs float64 `json:"batch_mean_ms"`
	BatchP50ms  float64 `json:"batch_p50_le_ms"`
	BatchP99ms  float64 `json:"batch_p99_le_ms"`
}

// redisStats turns two snapshots of Redis and of stirgate's metrics into
// per-call numbers.
func redisStats(r0, r1 redisSnap, m0, m1 map[string]float64, calls int) *redisStepStats {
	n := float64(calls)
	var batchSum, batchCount float64
	batchLE := map[float64]float64{} // upper bound (s) -> observations at or under it
	st := &redisStepStats{ByCommand: map[string]float64{}, OpsByOp: map[string]float64{}, Errors: map[string]float64{}}
	own := r1.byCommand["info"] - r0.byCommand["info"]
	st.CommandsPerCall = float64(r1.commands-r0.commands-own) / n
	for c, v := range r1.byCommand {
		if d := v - r0.byCommand[c]; d > 0 && c != "info" {
			st.ByCommand[c] = float64(d) / n
		}
	}
	for series, v := range m1 {
		d := v - m0[series]
		if d <= 0 {
			continue
		}
		switch name, labels := splitSeries(series); name {
		case "stirgate_policy_store_round_trips_sum":
			st.RoundTripsPerCall += d / n
		case "stirgate_state_redis_seconds_count":
			st.OpsByOp[labels["op"]] += d / n
			if labels["op"] == "batch" {
				batchCount = d
			}
		case "stirgate_state_redis_seconds_sum":
			if labels["op"] == "batch" {
				batchSum = d
			}
		case "stirgate_state_redis_seconds_bucket":
			if le, err := strconv.ParseFloat(labels["le"], 64); err == nil && labels["op"] == "batch" {
				batchLE[le] = d
			}
		case "stirgate_state_redis_errors_total":
			st.Errors[labels["kind"]] += d
		case "stirgate_state_cache_hits_total":
			st.CacheHits += d
		case "stirgate_state_cache_misses_total":
			st.CacheMisses += d
		}
	}
	st.CPUusPerCall = float64((r1.cpu-r0.cpu)/time.Microsecond) / n
	if batchCount > 0 {
		st.BatchMeanMs = 1000 * batchSum / batchCount
		st.BatchP50ms = 1000 * bucketBound(batchLE, 0.50*batchCount)
		st.BatchP99ms = 1000 * bucketBound(batchLE, 0.99*batchCount)
	}
	return st
}

// bucketBound is the smallest histogram bound with at least want
// observations at or under it (+Inf when only the last bucket has them).
func bucketBound(le map[float64]float64, want float64) float64 {
	bounds := make([]float64, 0, len(le))
	for b := range le {
		bounds = append(bounds, b)
	}
	sort.Float64s(bounds)
	for _, b := range bounds {
		if le[b] >= want {
			return b
		}
	}
	return math.Inf(1)
}

// redisMemory is what the keys of one step's distinct callers cost in
// Redis, with their TTLs.
type redisMemory struct {
	Callers int `json:"distinct_callers"` // keys of the per-caller rate rule
	Keys    int `json:"keys"`
	// MEMORY USAGE summed over every key, per caller.
	BytesPerCaller float64 `json:"memory_usage_bytes_per_caller"`
	// INFO used_memory after the step less after FLUSHALL, per caller
	// (includes Redis's own dictionaries and expiry entries).
	UsedMemoryPerCaller float64    `json:"used_memory_bytes_per_caller"`
	Groups              []keyGroup `json:"key_groups"`
}

// keyGroup is one kind of key (its number replaced by N).
type keyGroup struct {
	Pattern  string  `json:"pattern"`
	Keys     int     `json:"keys"`
	AvgBytes float64 `json:"avg_memory_usage_bytes"`
	TTL      string  `json:"ttl_left"` // PTTL of one key, read after the step
}

var numberRE = regexp.MustCompile(`\d{6,}`)

// memory scans every key (bounded), reads MEMORY USAGE of each and the
// PTTL of one per group. used0 is used_memory after the FLUSHALL.
func (r *redisServer) memory(used0 int64) (*redisMemory, error) {
	var keys []string
	cursor := "0"
	for i := 0; i < 100000; i++ {
		reply, err := r.conn.do("SCAN", cursor, "COUNT", "1000")
		if err != nil {
			return nil, fmt.Errorf("redis SCAN: %w", err)
		}
		arr, ok := reply.([]any)
		if !ok || len(arr) != 2 {
			return nil, fmt.Errorf("redis SCAN: reply %v", reply)
		}
		cursor, _ = arr[0].(string)
		batch, _ := arr[1].([]any)
		for _, k := range batch {
			if s, ok := k.(string); ok {
				keys = append(keys, s)
			}
		}
		if cursor == "0" {
			break
		}
	}
	m := &redisMemory{Keys: len(keys)}
	groups := map[string]*keyGroup{}
	sample := map[string]string{} // a key of each group
	var total int64
	// Pipelined: 1,000 commands written, then their replies read.
	for start := 0; start < len(keys); start += 1000 {
		chunk := keys[start:min(start+1000, len(keys))]
		for _, k := range chunk {
			if err := r.conn.write("MEMORY", "USAGE", k, "SAMPLES", "0"); err != nil {
				return nil, err
			}
		}
		if err := r.conn.flush(); err != nil {
			return nil, err
		}
		for _, k := range chunk {
			reply, err := r.conn.read()
			if err != nil {
				return nil, fmt.Errorf("redis MEMORY USAGE: %w", err)
			}
			n, _ := reply.(int64)
			total += n
			p := numberRE.ReplaceAllString(k, "N")
			g := groups[p]
			if g == nil {
				g = &keyGroup{Pattern: p}
				groups[p] = g
				sample[p] = k
			}
			g.Keys++
			g.AvgBytes += float64(n)
		}
	}
	// The PTTL of one key per group, once the pipeline's replies are read.
	for p, k := range sample {
		ttl, err := r.conn.do("PTTL", k)
		if err != nil {
			return nil, fmt.Errorf("redis PTTL: %w", err)
		}
		if ms, ok := ttl.(int64); ok && ms >= 0 {
			groups[p].TTL = (time.Duration(ms) * time.Millisecond).Round(time.Second).String()
		} else {
			groups[p].TTL = fmt.Sprint(ttl) // -1: none, -2: gone
		}
	}
	for _, g := range groups {
		g.AvgBytes /= float64(g.Keys)
		m.Groups = append(m.Groups, *g)
		if strings.Contains(g.Pattern, "{rate:") {
			m.Callers += g.Keys
		}
	}
	sort.Slice(m.Groups, func(i, j int) bool { return m.Groups[i].Pattern < m.Groups[j].Pattern })
	if m.Callers == 0 {
		return m, errors.New("redis memory: no per-caller rate key found")
	}
	m.BytesPerCaller = float64(total) / float64(m.Callers)
	s, err := r.snapshot()
	if err != nil {
		return m, err
	}
	m.UsedMemoryPerCaller = float64(s.usedMemory-used0) / float64(m.Callers)
	return m, nil
}

// respConn is a minimal RESP2 client: commands as arrays of bulk strings;
// replies as string, int64, []any, or an error for a Redis error.
type respConn struct {
	c net.Conn
	r *bufio.Reader
	w *bufio.Writer
}

func dialRESP(addr string) (*respConn, error) {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return nil, err
	}
	return &respConn{c: c, r: bufio.NewReader(c), w: bufio.NewWriter(c)}, nil
}

func (rc *respConn) close() { rc.c.Close() }

func (rc *respConn) do(args ...string) (any, error) {
	if err := rc.write(args...); err != nil {
		return nil, err
	}
	if err := rc.flush(); err != nil {
		return nil, err
	}
	return rc.read()
}

func (rc *respConn) write(args ...string) error {
	fmt.Fprintf(rc.w, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(rc.w, "$%d\r\n%s\r\n", len(a), a)
	}
	return nil
}

func (rc *respConn) flush() error {
	_ = rc.c.SetDeadline(time.Now().Add(30 * time.Second))
	return rc.w.Flush()
}

func (rc *respConn) read() (any, error) {
	_ = rc.c.SetDeadline(time.Now().Add(30 * time.Second))
	line, err := rc.r.ReadString('\n')
	if err != nil {
		return nil, err
	}
	line = strings.TrimSuffix(line, "\r\n")
	if line == "" {
		return nil, errors.New("resp: empty line")
	}
	switch body := line[1:]; line[0] {
	case '+':
		return body, nil
	case '-':
		return nil, fmt.Errorf("redis: %s", body)
	case ':':
		return strconv.ParseInt(body, 10, 64)
	case '$':
		n, err := strconv.Atoi(body)
		if err != nil || n < 0 {
			return nil, err // nil bulk: nil, nil
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(rc.r, buf); err != nil {
			return nil, err
		}
		return string(buf[:n]), nil
	case '*':
		n, err := strconv.Atoi(body)
		if err != nil || n < 0 {
			return nil, err
		}
		out := make([]any, 0, n)
		for range n {
			v, err := rc.read()
			if err != nil {
				return nil, err
			}
			out = append(out, v)
		}
		return out, nil
	}
	return nil, fmt.Errorf("resp: unexpected reply %q", line)
}
