package numbers

import "errors"

// Errors of the builders and loaders; every error they return wraps one.
var (
	// ErrNotNumber: a value is not a canonical number or prefix (digits,
	// optional leading "+", separators . - ( ) space; 1 to 15 digits).
	ErrNotNumber = errors.New("not a number")
	// ErrSyntax: a line of a list file is malformed otherwise (bad expiry
	// date, extra columns, line too long, unknown format or option).
	ErrSyntax = errors.New("syntax error")
)
