package sip

import (
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// dialogMaxAge bounds how long a dialog whose BYE never crossed us is kept.
const dialogMaxAge = 12 * time.Hour

// dialogs counts confirmed dialogs (2xx to an initial INVITE seen, BYE not yet
// answered) so that a drain can wait for calls to hang up. It is keyed by
// Call-ID; idle entries expire after dialogMaxAge.
type dialogs struct {
	mu    sync.Mutex
	m     map[string]time.Time
	gauge prometheus.Gauge
}

func newDialogs(g prometheus.Gauge) *dialogs {
	return &dialogs{m: make(map[string]time.Time), gauge: g}
}

func (d *dialogs) add(callID string) {
	d.mu.Lock()
	d.m[callID] = time.Now()
	d.gauge.Set(float64(len(d.m)))
	d.mu.Unlock()
}

func (d *dialogs) remove(callID string) {
	d.mu.Lock()
	delete(d.m, callID)
	d.gauge.Set(float64(len(d.m)))
	d.mu.Unlock()
}

func (d *dialogs) count() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.m)
}

// sweep drops entries older than maxAge until ctx is done.
func (d *dialogs) sweep(ctx context.Context, maxAge time.Duration) {
	t := time.NewTicker(maxAge / 12)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			d.mu.Lock()
			for id, at := range d.m {
				if now.Sub(at) > maxAge {
					delete(d.m, id)
				}
			}
			d.gauge.Set(float64(len(d.m)))
			d.mu.Unlock()
		}
	}
}
