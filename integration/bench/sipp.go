package main

import (
	"context"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/stirgate/stirgate/integration/internal/sippfiles"
)

// sippFlags let SIPp itself go as fast as it can: bigger socket buffers,
// more messages and calls per event loop.
// -default_behaviors all,-abortunexp: a message the scenario does not
// expect at that point (a 180 that arrives after the 200, a BYE before the
// ACK: UDP does not keep order, and Kamailio's worker processes reorder
// under load) is ignored instead of failing the call; the scenario goes on
// and retransmissions recover what was ignored, as a real phone does.
var sippFlags = []string{"-buff_size", "4194304", "-max_recv_loops", "10000", "-max_sched_loops", "10000", "-default_behaviors", "all,-abortunexp"}

// sippRun is one SIPp process.
type sippRun struct {
	dir      string
	scenario string
	port     int    // -p
	remote   string // UAC: where to call; "" for the UAS
	calls    int
	rate     int
	// hold is the caller's time between ACK and BYE (-hold). Without a
	// pause a multi-process proxy (Kamailio's workers) can deliver the
	// BYE before the ACK, and the callee fails the call.
	hold    time.Duration
	timeout time.Duration
	extra   []string
}

// sippResult is a finished SIPp: its last cumulative statistics.
type sippResult struct {
	exit                                    int
	successful, failed, created, retransmit int
	err                                     error
}

func (r sippRun) command(ctx context.Context) *exec.Cmd {
	args := []string{
		"-sf", r.scenario, "-t", "u1", "-i", loopback, "-p", itoa(r.port), "-s", callee,
		"-nostdin", "-timeout", fmt.Sprintf("%ds", int(r.timeout.Seconds())), "-timeout_error",
		"-m", itoa(r.calls),
		"-trace_stat", "-stf", "stat.csv", "-fd", "1",
		"-trace_err", "-error_file", "errors.log",
	}
	args = append(args, sippFlags...)
	if r.remote != "" {
		// The caller logs one line per message with µs timestamps: the
		// INVITE -> final response latency comes from there.
		// A call whose next message does not come within 5 s fails
		// instead of holding the step until the global timeout.
		// -l: room for every call held at once, twice over.
		held := r.rate * (int(r.hold/time.Second) + 1)
		args = append(args, "-r", itoa(r.rate), "-l", itoa(2*held+1000), "-recv_timeout", "5000", "-d", itoa(int(r.hold/time.Millisecond)),
			"-trace_shortmsg", "-shortmessage_file", "shortmsg.csv")
	}
	args = append(args, r.extra...)
	if r.remote != "" {
		args = append(args, r.remote)
	}
	cmd := exec.CommandContext(ctx, "sipp", args...)
	cmd.Dir = r.dir
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 5 * time.Second
	_ = os.WriteFile(filepath.Join(r.dir, "command.txt"), []byte("sipp "+strings.Join(args, " ")+"\n"), 0o644)
	return cmd
}

// sippProc is a started SIPp.
type sippProc struct {
	run  sippRun
	cmd  *exec.Cmd
	done chan struct{}
	res  sippResult
}

func startSipp(ctx context.Context, r sippRun) (*sippProc, error) {
	if err := os.MkdirAll(r.dir, 0o755); err != nil {
		return nil, err
	}
	// SIPp's own -timeout ends it; the context is the backstop.
	ctx, cancel := context.WithTimeout(ctx, r.timeout+20*time.Second)
	cmd := r.command(ctx)
	out, err := os.Create(filepath.Join(r.dir, "stdout.log"))
	if err != nil {
		cancel()
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		cancel()
		out.Close()
		return nil, fmt.Errorf("sipp: %w", err)
	}
	p := &sippProc{run: r, cmd: cmd, done: make(chan struct{})}
	go func() {
		defer close(p.done)
		defer cancel()
		defer out.Close()
		err := cmd.Wait()
		p.res.exit = cmd.ProcessState.ExitCode()
		if ctx.Err() != nil {
			p.res.err = fmt.Errorf("sipp killed after %v: %w", r.timeout+20*time.Second, ctx.Err())
		} else if err != nil && p.res.exit < 0 {
			p.res.err = fmt.Errorf("sipp: %w", err)
		}
	}()
	return p, nil
}

// waitBound waits until the UAS has bound its port (bounded).
func (p *sippProc) waitBound(bound time.Duration) error {
	deadline := time.Now().Add(bound)
	for i := 0; i < 400 && time.Now().Before(deadline); i++ {
		select {
		case <-p.done:
			return fmt.Errorf("sipp UAS exited before binding :%d:\n%s", p.run.port, sippfiles.Tail(sippfiles.ReadFile(filepath.Join(p.run.dir, "stdout.log")), 10))
		default:
		}
		if udpPortBusy(p.run.port) {
			return nil
		}
		time.Sleep(25 * time.Millisecond)
	}
	return fmt.Errorf("sipp UAS did not bind :%d within %v", p.run.port, bound)
}

func (p *sippProc) wait() sippResult {
	<-p.done
	res := p.res
	stats, err := sippfiles.ReadStats(filepath.Join(p.run.dir, "stat.csv"))
	if err != nil {
		if res.err == nil {
			res.err = err
		}
		return res
	}
	// A missing column (-1) counts as 0.
	res.successful = max(stats.Int("SuccessfulCall(C)"), 0)
	res.failed = max(stats.Int("FailedCall(C)"), 0)
	res.created = max(stats.Int("TotalCallCreated"), 0)
	res.retransmit = max(stats.Int("Retransmissions(C)"), 0)
	return res
}

// stop ends a SIPp that is still running (an aborted step), by its PID.
func (p *sippProc) stop() {
	select {
	case <-p.done:
		return
	default:
	}
	terminate(p.cmd, p.done, 5*time.Second)
}

func udpPortBusy(port int) bool {
	c, err := listenUDP(port)
	if err != nil {
		return true
	}
	c.Close()
	return false
}

// latency is INVITE -> final response as the caller saw it, and the span
// from the first INVITE sent to the last final response received.
type latency struct {
	N        int
	P50, P99 time.Duration
	Span     time.Duration
}

// inviteLatency is the latency of the INVITEs of a -trace_shortmsg file
// that got a final response.
func inviteLatency(path string) (latency, error) {
	calls, err := sippfiles.InviteTimings(path)
	if err != nil {
		return latency{}, fmt.Errorf("latency: %w", err)
	}
	var ds []time.Duration
	first, last := math.Inf(1), math.Inf(-1)
	for _, c := range calls {
		if c.Code == 0 {
			continue
		}
		ds = append(ds, c.Wait())
		first, last = math.Min(first, c.Sent), math.Max(last, c.Final)
	}
	if len(ds) == 0 {
		return latency{}, fmt.Errorf("latency: %s: no INVITE with a final response", path)
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	return latency{N: len(ds), P50: percentile(ds, 0.50), P99: percentile(ds, 0.99), Span: time.Duration((last - first) * float64(time.Second))}, nil
}

// p99ms is the 99th percentile of ds in ms (0 for none); it sorts ds.
func p99ms(ds []time.Duration) float64 {
	if len(ds) == 0 {
		return 0
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	return float64(percentile(ds, 0.99)) / float64(time.Millisecond)
}

// percentile of sorted ds, nearest rank.
func percentile(ds []time.Duration, p float64) time.Duration {
	i := int(math.Ceil(p*float64(len(ds)))) - 1
	return ds[min(max(i, 0), len(ds)-1)]
}

func firstLines(s string, n int) string {
	lines := strings.SplitN(s, "\n", n+1)
	if len(lines) > n {
		lines = lines[:n]
	}
	return strings.TrimSpace(strings.Join(lines, "\n"))
}
