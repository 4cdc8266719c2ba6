package store

import "errors"

// Sentinel errors. Methods wrap them with the key concerned; callers test
// with errors.Is. Callers treat any error as "store unavailable" and apply
// their configured fail-open or fail-closed choice.
var (
	// ErrFull: a structure holds its maximum number of keys (WithMaxKeys)
	// even after dropping idle ones, so a new key was refused. Existing keys
	// keep working.
	ErrFull = errors.New("store: full")
	// ErrInvalid: an argument out of range (window too small, negative n).
	ErrInvalid = errors.New("store: invalid argument")
)
