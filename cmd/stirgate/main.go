// Command stirgate is a SIP edge proxy that signs, verifies and polices calls
// between a PBX and its trunks. See README.md.
package main

import (
	"fmt"
	"os"
)

const usage = `usage: stirgate <command> [flags]

commands:
  serve  [--config FILE]   run the proxy (embedded default config without --config)
  config check FILE...     validate configuration files and exit
  policy check FILE...     validate policy files (and load their lists) and exit
  certs init --dir DIR [--spc CODE] [--x5u-base URL] [--tn PREFIX...]
                           write a test STI PKI (root, intermediate, SP certificate)
  sign --key FILE --x5u URL --attest A|B|C --orig TN --dest TN [--origid UUID] [--iat UNIX]
                           print one SHAKEN Identity header value
  verify --identity VALUE --orig TN --dest TN --trust FILE... [--at UNIX] [--cert FILE]
                           verify one Identity header value; JSON verdict, exit 0 only when it passed
  explain [--config FILE] [--realm inside|outside] [--from IP:PORT] INVITE-FILE
                           dry run: what the pipeline does with one INVITE (exit 0 forwarded,
                           3 rejected); policy counters start empty
  trace [--config FILE] [--orig TN] [--dest TN] [--at TIME] [--window 5m] [--origid U] [--call-id C] [--json|--csv]
                           traceback: who delivered a call, when, with which attestation, and what
                           stirgate decided (from the call-record database)
`

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	if len(args) == 0 {
		fmt.Fprint(os.Stderr, usage)
		return 2
	}
	switch args[0] {
	case "serve":
		return serve(args[1:])
	case "certs":
		return certsCommand(args[1:])
	case "sign":
		return signCommand(args[1:])
	case "verify":
		return verifyCommand(args[1:])
	case "explain":
		return explainCommand(args[1:])
	case "trace":
		return traceCommand(args[1:], os.Stdout)
	case "policy":
		if len(args) >= 2 && args[1] == "check" {
			return policyCheck(args[2:])
		}
	case "config":
		if len(args) >= 2 && args[1] == "check" {
			return configCheck(args[2:])
		}
	case "help", "-h", "--help":
		fmt.Print(usage)
		return 0
	}
	fmt.Fprintf(os.Stderr, "stirgate: unknown command %q\n\n%s", args[0], usage)
	return 2
}
