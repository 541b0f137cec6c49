package config

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestDefaults(t *testing.T) {
	c, err := Load()
	if err != nil {
		t.Fatalf("Load with no environment: %v", err)
	}
	if c.ListenAddress != ":9177" || c.CheckInterval != 30*time.Second || c.IdleCheckInterval != 5*time.Minute ||
		c.ThresholdUSD != 9.95 || c.BudgetUSD != 10 || c.Database != "keyspend" || c.DataDir != "./data" ||
		c.Rotation != RotationOn || c.MaxConcurrency != 0 || c.CheckTimeout != 10*time.Second {
		t.Errorf("unexpected defaults: %+v", c)
	}
}

// Every bad value must stop the start with one line that names the
// variable, and must not echo a value that may hold a password.
func TestInvalidValues(t *testing.T) {
	cases := []struct {
		name, value, want string
	}{
		{"KEYSPEND_CHECK_INTERVAL", "30", "not a duration with a unit"},
		{"KEYSPEND_CHECK_INTERVAL", "0s", "must be greater than zero"},
		{"KEYSPEND_CHECK_INTERVAL", "-5s", "must be greater than zero"},
		{"KEYSPEND_IDLE_CHECK_INTERVAL", "five minutes", "not a duration with a unit"},
		{"KEYSPEND_ACTIVE_WINDOW", "10", "not a duration with a unit"},
		{"KEYSPEND_CHECK_TIMEOUT", "0s", "must be greater than zero"},
		{"KEYSPEND_HISTORY_RETENTION", "1d", "not a duration with a unit"},
		{"KEYSPEND_ROTATION_GRACE", "-1s", "must be at least twice KEYSPEND_STORE_TIMEOUT (1m0s)"},
		{"KEYSPEND_ROTATION_GRACE", "59s", "must be at least twice KEYSPEND_STORE_TIMEOUT (1m0s)"},
		{"KEYSPEND_STORE_TIMEOUT", "0s", "must be greater than zero"},
		{"KEYSPEND_MAX_CONCURRENCY", "-1", "must be 0 (no cap) or more"},
		{"KEYSPEND_MAX_CONCURRENCY", "lots", "not a number"},
		{"KEYSPEND_THRESHOLD_USD", "0", "must be greater than zero"},
		{"KEYSPEND_THRESHOLD_USD", "-1", "must be greater than zero"},
		{"KEYSPEND_THRESHOLD_USD", "NaN", "must be greater than zero"},
		{"KEYSPEND_THRESHOLD_USD", "ten", "not a number"},
		{"KEYSPEND_BUDGET_USD", "0", "must be greater than zero"},
		{"KEYSPEND_BUDGET_USD", "Inf", "must be greater than zero"},
		{"KEYSPEND_MONGODB_URI", "localhost:27017", "not a mongodb:// or mongodb+srv:// URI"},
		{"KEYSPEND_MONGODB_URI", "mongodb://", "not a mongodb:// or mongodb+srv:// URI"},
		{"KEYSPEND_MONGODB_URI", "http://user:hunter2@host", "not a mongodb:// or mongodb+srv:// URI"},
		{"KEYSPEND_DATABASE", " ", "must not be empty"},
		{"KEYSPEND_KEYS_COLLECTION", "", "must not be empty"},
		{"KEYSPEND_DATA_DIR", "", "must not be empty"},
		{"KEYSPEND_LITELLM_URL", "litellm:4000", "not an http:// or https:// URL"},
		{"KEYSPEND_OPENROUTER_URL", "ftp://openrouter.ai", "not an http:// or https:// URL"},
		{"KEYSPEND_UPSTREAM_H2C", "maybe", "not true or false"},
		{"KEYSPEND_ROTATION", "yes", "must be on, dry-run or off"},
		{"KEYSPEND_ROTATION_CONFIRMATIONS", "0", "must be 1 or more"},
		{"KEYSPEND_BACKUP_POOL_LOW", "-3", "must not be negative"},
		{"KEYSPEND_HISTORY_BUFFER", "0", "must be 1 or more"},
		{"KEYSPEND_REPLICA_COUNT", "0", "must be 1 or more"},
		{"KEYSPEND_CHECK_INTERVAL", "1ns", "must be at least 1s"},
		{"KEYSPEND_IDLE_CHECK_INTERVAL", "10s", "must not be shorter than KEYSPEND_CHECK_INTERVAL (30s)"},
		{"KEYSPEND_DATABASE", "a/b.c", "must be 1 to 60 letters, digits, _ or -"},
		{"KEYSPEND_KEYS_COLLECTION", "backup_keys", `collection "backup_keys" is also used for KEYSPEND_`},
		{"KEYSPEND_HISTORY_COLLECTION", "keys_spend", `collection "keys_spend" is also used for KEYSPEND_`},
		{"KEYSPEND_REPLICA_INDEX", "1", "must be from 0 to REPLICA_COUNT-1"},
		{"KEYSPEND_LOG_LEVEL", "verbose", "must be debug, info, warn or error"},
		{"KEYSPEND_LOG_FORMAT", "xml", "must be text or json"},
	}
	for _, tc := range cases {
		t.Run(tc.name+"="+tc.value, func(t *testing.T) {
			t.Setenv(tc.name, tc.value)
			_, err := Load()
			if err == nil {
				t.Fatalf("%s=%q was accepted", tc.name, tc.value)
			}
			msg := err.Error()
			if !strings.Contains(msg, tc.want) {
				t.Errorf("error %q does not say %q", msg, tc.want)
			}
			// A collision is reported on whichever of the two names comes
			// first; it names both.
			named := strings.HasPrefix(msg, tc.name+":") ||
				strings.Contains(msg, "is also used for") && strings.Contains(msg, strings.TrimPrefix(tc.name, "KEYSPEND_"))
			if !named {
				t.Errorf("error %q does not start with the variable's name", msg)
			}
			if strings.Contains(msg, "\n") {
				t.Errorf("error spans several lines: %q", msg)
			}
			if strings.Contains(msg, "hunter2") {
				t.Errorf("error echoes a password: %q", msg)
			}
		})
	}
}

func TestHelpListsEveryVariable(t *testing.T) {
	var buf bytes.Buffer
	if err := WriteHelp(&buf); err != nil {
		t.Fatal(err)
	}
	help := buf.String()
	for _, want := range []string{
		"KEYSPEND_MONGODB_URI", "KEYSPEND_CHECK_INTERVAL          30s", "KEYSPEND_THRESHOLD_USD           9.95",
		"KEYSPEND_LISTEN_ADDRESS          :9177", "KEYSPEND_LOG_FORMAT              text",
	} {
		if !strings.Contains(help, want) {
			t.Errorf("help lacks %q:\n%s", want, help)
		}
	}
	if n := strings.Count(help, "\nKEYSPEND_"); n != 30 {
		t.Errorf("help lists %d variables, want 30", n)
	}
}

func TestWordsInAnyCase(t *testing.T) {
	t.Setenv("KEYSPEND_ROTATION", "Dry-Run")
	t.Setenv("KEYSPEND_LOG_FORMAT", "JSON")
	c, err := Load()
	if err != nil || c.Rotation != RotationDryRun || c.LogFormat != "json" {
		t.Errorf("Load: rotation %q, log format %q, err %v", c.Rotation, c.LogFormat, err)
	}
}

func TestUnknownVariablesAreListed(t *testing.T) {
	t.Setenv("KEYSPEND_CHEK_INTERVAL", "30s")
	t.Setenv("KEYSPEND_CHECK_INTERVAL", "30s")
	got := Unknown()
	if len(got) != 1 || got[0] != "KEYSPEND_CHEK_INTERVAL" {
		t.Errorf("Unknown() = %v, want the misspelled variable only", got)
	}
}
