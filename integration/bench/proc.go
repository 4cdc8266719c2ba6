package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// procStat is the part of /proc/PID/stat the bench reads.
type procStat struct {
	ppid       int
	utime, sys int64 // clock ticks
}

func readProcStat(pid int) (procStat, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procStat{}, err
	}
	// The command name is in parentheses and may hold spaces: fields are
	// counted after the last ')'. state is field 3, ppid 4, utime 14, stime 15.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return procStat{}, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	fs := strings.Fields(s[i+1:])
	if len(fs) < 13 {
		return procStat{}, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(fs))
	}
	var st procStat
	if st.ppid, err = strconv.Atoi(fs[1]); err != nil {
		return st, fmt.Errorf("/proc/%d/stat ppid: %w", pid, err)
	}
	if st.utime, err = strconv.ParseInt(fs[11], 10, 64); err != nil {
		return st, fmt.Errorf("/proc/%d/stat utime: %w", pid, err)
	}
	if st.sys, err = strconv.ParseInt(fs[12], 10, 64); err != nil {
		return st, fmt.Errorf("/proc/%d/stat stime: %w", pid, err)
	}
	return st, nil
}

// childrenOf lists the live direct children of pid.
func childrenOf(pid int) []int {
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	var out []int
	for _, d := range dirs {
		n, err := strconv.Atoi(filepath.Base(d))
		if err != nil {
			continue
		}
		if st, err := readProcStat(n); err == nil && st.ppid == pid {
			out = append(out, n)
		}
	}
	return out
}

func processAlive(pid int) bool { return syscall.Kill(pid, 0) == nil }

var clockTicks = func() int64 {
	out, err := exec.Command("getconf", "CLK_TCK").Output()
	if err == nil {
		if n, err := strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64); err == nil && n > 0 {
			return n
		}
	}
	return 100
}()

// cpuTime is user+system CPU of the processes so far.
func cpuTime(pids []int) (time.Duration, error) {
	var ticks int64
	for _, pid := range pids {
		st, err := readProcStat(pid)
		if err != nil {
			return 0, fmt.Errorf("cpu: %w", err)
		}
		ticks += st.utime + st.sys
	}
	return time.Duration(ticks) * time.Second / time.Duration(clockTicks), nil
}

// memory is the resident memory of the processes: RSS summed (counts
// shared pages once per process: Kamailio's shared memory N times) and
// PSS summed (shared pages split between the processes sharing them: the
// honest total for a multi-process server).
type memory struct {
	RSSMB float64 `json:"rss_mb"`
	PSSMB float64 `json:"pss_mb"`
}

func readMemory(pids []int) memory {
	var m memory
	for _, pid := range pids {
		m.RSSMB += kbField(fmt.Sprintf("/proc/%d/status", pid), "VmRSS:") / 1024
		m.PSSMB += kbField(fmt.Sprintf("/proc/%d/smaps_rollup", pid), "Pss:") / 1024
	}
	return m
}

func kbField(path, key string) float64 {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, key); ok {
			f := strings.Fields(v)
			if len(f) > 0 {
				n, _ := strconv.ParseFloat(f[0], 64)
				return n
			}
		}
	}
	return 0
}

// udpRcvbufErrors is the machine-wide count of UDP datagrams dropped for a
// full receive buffer (/proc/net/snmp).
func udpRcvbufErrors() int {
	b, err := os.ReadFile("/proc/net/snmp")
	if err != nil {
		return 0
	}
	var head []string
	for _, l := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(l, "Udp: ") {
			continue
		}
		fs := strings.Fields(l)
		if head == nil {
			head = fs
			continue
		}
		for i, h := range head {
			if h == "RcvbufErrors" && i < len(fs) {
				n, _ := strconv.Atoi(fs[i])
				return n
			}
		}
	}
	return 0
}
