package main

import (
	"flag"
	"fmt"
)

// newFlags returns the flag set of one subcommand; usage is its synopsis
// ("stirgate serve [--config FILE]"), printed before the flag list when the
// command line is wrong.
func newFlags(name, usage string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: %s\n", usage)
		fs.PrintDefaults()
	}
	return fs
}

// parseFlags parses args and checks that between min and max positional
// arguments follow the flags (max < 0: no upper bound). An operator who
// writes `stirgate serve /etc/stirgate.yaml` meant --config: running the
// embedded defaults instead would be a silent surprise, so any unexpected
// argument is refused with the usage line. false means exit 2.
func parseFlags(fs *flag.FlagSet, args []string, min, max int) bool {
	if err := fs.Parse(args); err != nil {
		return false // flag has printed the error and the usage
	}
	n := fs.NArg()
	if n >= min && (max < 0 || n <= max) {
		return true
	}
	switch {
	case n > 0 && max == 0:
		fmt.Fprintf(fs.Output(), "stirgate %s: unexpected argument %q (flags go before it, with their -- name)\n", fs.Name(), fs.Arg(0))
	case n < min:
		fmt.Fprintf(fs.Output(), "stirgate %s: missing argument\n", fs.Name())
	default:
		fmt.Fprintf(fs.Output(), "stirgate %s: unexpected argument %q\n", fs.Name(), fs.Arg(max))
	}
	fs.Usage()
	return false
}
