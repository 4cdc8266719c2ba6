package media

import (
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"
)

const (
	futexWaitPrivate = 128 // FUTEX_WAIT | FUTEX_PRIVATE_FLAG
	futexWakePrivate = 129 // FUTEX_WAKE | FUTEX_PRIVATE_FLAG
)

// waker is the scheduler's sleep between ticks: its thread blocks in the
// kernel (a futex wait with a timeout), so a wake-up is one hrtimer, to the
// microsecond. A Go timer would wake it through the netpoller (to the
// millisecond) and, in an otherwise idle process, wake an idle thread and
// sysmon each time: more CPU than the packets of a tick.
type waker struct {
	woken atomic.Uint32 // 1: wake has been called since the last sleep
}

func (w *waker) init() {}

// sleep returns after d, or at once if wake was called since the last
// sleep returned; d < 0: until wake.
func (w *waker) sleep(d time.Duration) {
	var ts *syscall.Timespec
	if d >= 0 {
		t := syscall.NsecToTimespec(int64(d))
		ts = &t
	}
	// EAGAIN: woken before the wait began; EINTR, ETIMEDOUT: look again.
	_, _, _ = syscall.Syscall6(syscall.SYS_FUTEX, uintptr(unsafe.Pointer(&w.woken)), futexWaitPrivate, 0, uintptr(unsafe.Pointer(ts)), 0, 0)
	w.woken.Store(0)
}

// wake ends the current or next sleep.
func (w *waker) wake() {
	if w.woken.Swap(1) == 0 {
		_, _, _ = syscall.Syscall6(syscall.SYS_FUTEX, uintptr(unsafe.Pointer(&w.woken)), futexWakePrivate, 1, 0, 0, 0)
	}
}
