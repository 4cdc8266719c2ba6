package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/stirgate/stirgate/policy/store"
	"github.com/stirgate/stirgate/sip"
	"github.com/stirgate/stirgate/verify"
)

// explainCommand runs one INVITE from a file through the configured
// pipeline without sockets and says what stirgate would do with it: which
// stage decided, the rule hits and the INVITE it would forward. Policy state
// (rates, complaints, one-ring flags) starts empty, as after a restart.
func explainCommand(args []string) int {
	fs := newFlags("explain", "stirgate explain [--config FILE] [--realm inside|outside] [--from IP:PORT] INVITE-FILE")
	cfgPath := fs.String("config", "", "configuration file (default: the embedded one)")
	realm := fs.String("realm", "inside", "realm the INVITE arrives in: inside (from the PBX) or outside (from the trunk)")
	from := fs.String("from", "127.0.0.1:5060", "source ip:port of the INVITE")
	if !parseFlags(fs, args, 1, 1) {
		return 2
	}
	if *realm != "inside" && *realm != "outside" {
		fmt.Fprintf(os.Stderr, "stirgate explain: --realm %q: want inside or outside\n", *realm)
		fs.Usage()
		return 2
	}
	src, err := netip.ParseAddrPort(*from)
	if err != nil {
		fmt.Fprintf(os.Stderr, "--from %q: want ip:port\n", *from)
		return 2
	}
	raw, err := readMessage(fs.Arg(0))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	cfg, err := loadConfig(*cfgPath)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	// As serve does: the development defaults create their test PKI.
	if err := ensureDevPKI(cfg, log); err != nil {
		fmt.Fprintln(os.Stderr, "cannot create the development PKI:", err)
		return 1
	}
	sh, err := newShared(log, prometheus.NewRegistry(), cfg.Verify.X5U, store.NewMemory(), verify.NewMemoryReplay())
	if err != nil {
		fmt.Fprintln(os.Stderr, "cannot build the call pipeline:", err)
		return 1
	}
	gen, err := build(cfg, sh)
	if err != nil {
		fmt.Fprintln(os.Stderr, "cannot build the call pipeline:", err)
		return 1
	}

	chain := gen.chains.Inside
	if *realm == "outside" {
		chain = gen.chains.Outside
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	call, fwd, err := sip.DryRun(ctx, chain, *realm, src, raw, nil)
	return printExplanation(os.Stdout, *realm, call, fwd, err)
}

// readMessage reads a SIP message from a file; bare LF line ends (an
// editor's) become CRLF.
func readMessage(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	s := strings.ReplaceAll(strings.ReplaceAll(string(b), "\r\n", "\n"), "\n", "\r\n")
	return []byte(s), nil
}

func printExplanation(w io.Writer, realm string, call *sip.Call, fwd []byte, err error) int {
	var rej *sip.Rejection
	switch {
	case errors.As(err, &rej):
		fmt.Fprintf(w, "rejected: %d %s by stage %s", rej.Code, rej.Reason, call.DecidedBy)
		if rej.Cause != nil {
			fmt.Fprintf(w, " (%v)", rej.Cause)
		}
		fmt.Fprintln(w)
		if a := rej.Announce; a != nil {
			fmt.Fprintf(w, "announcement: %s, %s of early media before the rejection (when the offer allows it)\n", a.Name, a.Duration.Round(time.Millisecond))
		}
	case err != nil:
		fmt.Fprintln(w, "error:", err)
		return 1
	default:
		fmt.Fprintf(w, "forwarded (%s realm, %s)\n", realm, call.Dir)
	}
	fmt.Fprintf(w, "calling %q called %q", call.Orig, call.Dest)
	if call.Customer != "" {
		fmt.Fprintf(w, " customer %s", call.Customer)
	}
	if call.Attest != "" {
		fmt.Fprintf(w, " attest %s", call.Attest)
	}
	if call.Verstat != sip.VerstatNone {
		fmt.Fprintf(w, " verstat %s", call.Verstat)
	}
	fmt.Fprintln(w)
	for _, n := range call.Notes {
		fmt.Fprintln(w, "note:", n)
	}
	if fwd != nil {
		fmt.Fprintf(w, "\nforwarded INVITE (192.0.2.1/192.0.2.2 stand for our listeners):\n%s", fwd)
	}
	if rej != nil {
		return 3
	}
	return 0
}
