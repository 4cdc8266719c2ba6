//go:build !linux

package media

import "time"

// waker is the scheduler's sleep between ticks (elsewhere than Linux: a
// Go timer).
type waker struct {
	c chan struct{}
}

func (w *waker) init() { w.c = make(chan struct{}, 1) }

// sleep returns after d, or at once if wake was called since the last
// sleep returned; d < 0: until wake.
func (w *waker) sleep(d time.Duration) {
	if d < 0 {
		<-w.c
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-w.c:
	case <-t.C:
	}
}

// wake ends the current or next sleep.
func (w *waker) wake() {
	select {
	case w.c <- struct{}{}:
	default:
	}
}
