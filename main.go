// Command keyspend_exporter watches the spend of LLM API keys, exports it to
// Prometheus, and replaces a key that runs out with one from a backup pool.
package main

import (
	"fmt"
	"os"

	"github.com/keyspend/keyspend_exporter/internal/config"
)

const usage = `keyspend_exporter watches the spend of LLM API keys and rotates them.

Usage:
  keyspend_exporter                      serve /metrics and check keys
  keyspend_exporter demo [flags]         run against a simulated upstream
  keyspend_exporter keys import FILE     add or update keys
  keyspend_exporter keys list            list keys, secrets masked
  keyspend_exporter backups import FILE  add backup keys to the pool
  keyspend_exporter version              print the version

Import files hold a JSON array, or one JSON object per line, of
{"id", "provider", "secret", "base_url"?, "budget_usd"?, "threshold_usd"?}.

Configuration comes from the environment:

`

func main() {
	os.Exit(run(os.Args[1:]))
}

// run dispatches a command line and returns the exit code.
func run(args []string) int {
	cmd := ""
	if len(args) > 0 {
		cmd = args[0]
	}
	switch cmd {
	case "-h", "--help", "help":
		fmt.Print(usage)
		if err := config.WriteHelp(os.Stdout); err != nil {
			return fail(err)
		}
		return 0
	case "version", "--version":
		fmt.Println(versionLine())
		return 0
	case "":
		return serve()
	case "demo":
		return demo(args[1:])
	case "keys", "backups":
		return admin(args)
	}
	return fail(fmt.Errorf("unknown command %q; see --help", cmd))
}

// fail prints one line and returns the exit code for a failed start.
func fail(err error) int {
	fmt.Fprintf(os.Stderr, "keyspend_exporter: %v\n", err)
	return 1
}
