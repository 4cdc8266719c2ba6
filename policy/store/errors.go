package store

import "errors"

// Sentinel errors. Methods wrap them with the key concerned; callers test
// with errors.Is. Callers treat any error as "store unavailable": a policy
// rule applies its on_store_error (open: the call goes on; closed: it is
// rejected), and the error is counted and recorded with the call.
var (
	// ErrFull: a structure holds its maximum number of keys (WithMaxKeys)
	// even after dropping idle ones, so a new key was refused. Existing keys
	// keep working.
	ErrFull = errors.New("store: full")
	// ErrInvalid: an argument out of range (window too small, negative n).
	ErrInvalid = errors.New("store: invalid argument")
	// ErrNotConnected: the Redis store has not reached Redis yet (it could
	// not at start, RedisOptions.Background) and keeps trying.
	ErrNotConnected = errors.New("store: redis not connected yet")
)
