package sip

import (
	"context"
	"errors"
	"log/slog"
	"os"

	"github.com/emiago/sipgo/sip"
)

// sipgoLogHandler sits between sipgo's loggers and ours. sipgo logs hostile
// input at Error level with the raw bytes ("data") and every stray message at
// Info; on a public trunk that is a log flood and a log-injection channel.
// This handler turns the known per-message events into counters, drops the
// raw bytes, and passes the rest on.
type sipgoLogHandler struct {
	next    slog.Handler
	realm   string
	dropped func(realm, reason string)
	attrs   []slog.Attr
}

// sipgoEvents maps sipgo log messages to drop reasons.
var sipgoEvents = map[string]string{
	"failed to parse":                                    "parse_error",
	"Server tx failed to handle request":                 "tx_error",
	"Client tx failed to handle response":                "tx_error",
	"Failed to send stateless 400 for malformed request": "bad_request",
}

// Enabled lets Error through whatever our level (sipgo logs every counted
// event at Error), and the rest only when our logger wants it: sipgo logs
// several Debug lines per transaction, and building a record that is then
// dropped cost 6% of CPU under load.
func (h *sipgoLogHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= slog.LevelError || h.next.Enabled(ctx, l)
}

func (h *sipgoLogHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Message == "Read error" && errorIs(r, os.ErrDeadlineExceeded) {
		// A TCP or TLS connection silent for its idle timeout: closed by
		// design, not an error.
		idle := slog.NewRecord(r.Time, slog.LevelInfo, "connection idle: closed", r.PC)
		if !h.next.Enabled(ctx, idle.Level) {
			return nil
		}
		return h.next.WithAttrs(h.attrs).Handle(ctx, idle)
	}
	reason, counted := sipgoEvents[r.Message]
	if counted {
		if reason == "parse_error" && tooLarge(r) {
			// The TCP stream parser refused a message over
			// sip.max_message_size (sipgo then closes the connection); UDP
			// ones are dropped by filterUDP before parsing.
			reason = "oversize"
		}
		h.dropped(h.realm, reason)
		r.Level = slog.LevelDebug
	}
	if !h.next.Enabled(ctx, r.Level) {
		return nil
	}
	clean := slog.NewRecord(r.Time, r.Level, r.Message, r.PC)
	if counted {
		// These events are about hostile or broken input: their error text,
		// reason and request line quote it ("transmission beginning '...'",
		// `field name with no value in header: "..."`). Raw network bytes
		// never reach the log: only the socket addresses and the drop
		// reason are kept.
		r.Attrs(func(a slog.Attr) bool {
			if a.Key == "laddr" || a.Key == "raddr" {
				clean.AddAttrs(a)
			}
			return true
		})
		clean.AddAttrs(slog.String("drop_reason", reason))
	} else {
		r.Attrs(func(a slog.Attr) bool {
			if a.Key != "data" { // raw network bytes never reach the log
				clean.AddAttrs(a)
			}
			return true
		})
	}
	return h.next.WithAttrs(h.attrs).Handle(ctx, clean)
}

// tooLarge reports whether r's error attribute is sipgo's message size limit.
func tooLarge(r slog.Record) bool { return errorIs(r, sip.ErrMessageTooLarge) }

// errorIs reports whether r's error attribute is target.
func errorIs(r slog.Record, target error) bool {
	found := false
	r.Attrs(func(a slog.Attr) bool {
		if err, ok := a.Value.Any().(error); ok && a.Key == "error" && errors.Is(err, target) {
			found = true
			return false
		}
		return true
	})
	return found
}

func (h *sipgoLogHandler) WithAttrs(as []slog.Attr) slog.Handler {
	c := *h
	c.attrs = append(append([]slog.Attr(nil), h.attrs...), as...)
	return &c
}

func (h *sipgoLogHandler) WithGroup(name string) slog.Handler {
	c := *h
	c.next = h.next.WithGroup(name)
	return &c
}
