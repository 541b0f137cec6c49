// Package config reads the exporter's settings from KEYSPEND_* environment
// variables and rejects bad values at start-up with one line that names the
// variable.
package config

import (
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/kelseyhightower/envconfig"
)

// Prefix is the prefix of every environment variable the exporter reads.
const Prefix = "KEYSPEND"

// Rotation modes.
const (
	RotationOn     = "on"
	RotationDryRun = "dry-run"
	RotationOff    = "off"
)

// Config holds every setting. The struct tags are the single source of the
// variable names, defaults and help text.
type Config struct {
	MongoDBURI string `envconfig:"MONGODB_URI" desc:"MongoDB URI; empty runs the embedded store in DATA_DIR"`
	Database   string `envconfig:"DATABASE" default:"keyspend" desc:"database name"`
	DataDir    string `envconfig:"DATA_DIR" default:"./data" desc:"directory of the embedded store"`

	KeysCollection     string `envconfig:"KEYS_COLLECTION" default:"keys" desc:"collection of monitored keys"`
	BackupsCollection  string `envconfig:"BACKUPS_COLLECTION" default:"backup_keys" desc:"collection of the backup pool"`
	HistoryCollection  string `envconfig:"HISTORY_COLLECTION" default:"spend_history" desc:"collection of spend history"`
	RotationCollection string `envconfig:"ROTATIONS_COLLECTION" default:"rotations" desc:"collection of the rotation ledger"`

	ListenAddress string `envconfig:"LISTEN_ADDRESS" default:":9177" desc:"address of the web endpoints"`
	WebConfigFile string `envconfig:"WEB_CONFIG_FILE" desc:"Prometheus web-config file for TLS and basic auth"`

	CheckInterval     time.Duration `envconfig:"CHECK_INTERVAL" default:"30s" desc:"how often a recently used key is checked"`
	IdleCheckInterval time.Duration `envconfig:"IDLE_CHECK_INTERVAL" default:"5m" desc:"how often an idle key is checked"`
	ActiveWindow      time.Duration `envconfig:"ACTIVE_WINDOW" default:"10m" desc:"a key used within this window counts as active"`
	CheckTimeout      time.Duration `envconfig:"CHECK_TIMEOUT" default:"10s" desc:"time limit of one upstream check"`
	StoreTimeout      time.Duration `envconfig:"STORE_TIMEOUT" default:"30s" desc:"time limit of one store operation"`
	MaxConcurrency    int           `envconfig:"MAX_CONCURRENCY" default:"0" desc:"most checks in flight at once; 0 means no cap"`
	UpstreamH2C       bool          `envconfig:"UPSTREAM_H2C" default:"false" desc:"speak unencrypted HTTP/2 to plain http:// upstreams"`

	ThresholdUSD float64 `envconfig:"THRESHOLD_USD" default:"9.95" desc:"spend at which a key is rotated, unless the key sets its own"`
	BudgetUSD    float64 `envconfig:"BUDGET_USD" default:"10" desc:"budget used when the upstream reports none"`

	LiteLLMURL    string `envconfig:"LITELLM_URL" desc:"base URL of the LiteLLM proxy, for keys without their own"`
	OpenRouterURL string `envconfig:"OPENROUTER_URL" default:"https://openrouter.ai" desc:"base URL of OpenRouter"`

	Rotation              string        `envconfig:"ROTATION" default:"on" desc:"on, dry-run (log and count only) or off"`
	RotationConfirmations int           `envconfig:"ROTATION_CONFIRMATIONS" default:"1" desc:"consecutive breaching checks needed before a rotation"`
	RotationGrace         time.Duration `envconfig:"ROTATION_GRACE" default:"2m" desc:"age after which an unfinished rotation is recovered"`
	BackupPoolLow         int           `envconfig:"BACKUP_POOL_LOW" default:"5" desc:"backup pool size under which the pool counts as low"`

	HistoryRetention time.Duration `envconfig:"HISTORY_RETENTION" default:"720h" desc:"how long spend history is kept"`
	HistoryBuffer    int           `envconfig:"HISTORY_BUFFER" default:"100000" desc:"history points held in memory while the store is down"`

	ReplicaCount int `envconfig:"REPLICA_COUNT" default:"1" desc:"number of exporter replicas sharing the keys"`
	ReplicaIndex int `envconfig:"REPLICA_INDEX" default:"0" desc:"this replica's shard, from 0 to REPLICA_COUNT-1"`

	LogLevel  string `envconfig:"LOG_LEVEL" default:"info" desc:"debug, info, warn or error"`
	LogFormat string `envconfig:"LOG_FORMAT" default:"text" desc:"text or json"`
}

// Load reads the configuration from the environment and validates it.
func Load() (Config, error) {
	var c Config
	if err := envconfig.Process(Prefix, &c); err != nil {
		return c, describeParseError(err)
	}
	// Words are read in any case: ROTATION=Off means off.
	c.Rotation, c.LogLevel, c.LogFormat = strings.ToLower(c.Rotation), strings.ToLower(c.LogLevel),
		strings.ToLower(c.LogFormat)
	return c, c.Validate()
}

// describeParseError turns envconfig's long message into one line that names
// the variable and the problem. The value itself is left out: it may be a
// URI with a password in it.
func describeParseError(err error) error {
	var pe *envconfig.ParseError
	if !errors.As(err, &pe) {
		return err
	}
	name := pe.KeyName
	switch pe.TypeName {
	case "time.Duration":
		return fmt.Errorf("%s: not a duration with a unit, such as 30s or 5m: %q", name, pe.Value)
	case "int", "float64":
		return fmt.Errorf("%s: not a number: %q", name, pe.Value)
	case "bool":
		return fmt.Errorf("%s: not true or false: %q", name, pe.Value)
	}
	return fmt.Errorf("%s: invalid value", name)
}

// Validate checks the values that parse but make no sense.
func (c Config) Validate() error {
	for _, check := range []func() error{
		c.validateStore, c.validateDurations, c.validateMoney, c.validateURLs, c.validateModes,
	} {
		if err := check(); err != nil {
			return err
		}
	}
	return nil
}

func (c Config) validateStore() error {
	if c.MongoDBURI != "" {
		u, err := url.Parse(c.MongoDBURI)
		if err != nil || (u.Scheme != "mongodb" && u.Scheme != "mongodb+srv") || u.Host == "" {
			return errors.New(Prefix + "_MONGODB_URI: not a mongodb:// or mongodb+srv:// URI with a host")
		}
	}
	for name, v := range map[string]string{
		"DATABASE": c.Database, "KEYS_COLLECTION": c.KeysCollection,
		"BACKUPS_COLLECTION": c.BackupsCollection, "HISTORY_COLLECTION": c.HistoryCollection,
		"ROTATIONS_COLLECTION": c.RotationCollection,
	} {
		if strings.TrimSpace(v) == "" {
			return fmt.Errorf("%s_%s: must not be empty", Prefix, name)
		}
		if !storeName.MatchString(v) {
			return fmt.Errorf("%s_%s: must be 1 to 60 letters, digits, _ or -, got %q", Prefix, name, v)
		}
	}
	if err := c.distinctCollections(); err != nil {
		return err
	}
	if c.MongoDBURI == "" && strings.TrimSpace(c.DataDir) == "" {
		return errors.New(Prefix + "_DATA_DIR: must not be empty when KEYSPEND_MONGODB_URI is unset")
	}
	return nil
}

var storeName = regexp.MustCompile(`^[A-Za-z0-9_-]{1,60}$`)

// distinctCollections refuses names that collide, counting the collections
// the store derives from them: keys given the backups' collection would
// have backups rotated onto each other.
func (c Config) distinctCollections() error {
	names := map[string]string{}
	for _, n := range []struct{ variable, name string }{
		{"KEYS_COLLECTION", c.KeysCollection}, {"KEYS_COLLECTION", c.KeysCollection + "_retired"},
		{"KEYS_COLLECTION", c.KeysCollection + "_spend"}, {"BACKUPS_COLLECTION", c.BackupsCollection},
		{"BACKUPS_COLLECTION", c.BackupsCollection + "_claims"}, {"HISTORY_COLLECTION", c.HistoryCollection},
		{"ROTATIONS_COLLECTION", c.RotationCollection},
	} {
		if other, ok := names[n.name]; ok {
			return fmt.Errorf("%s_%s: collection %q is also used for %s_%s", Prefix, n.variable, n.name,
				Prefix, other)
		}
		names[n.name] = n.variable
	}
	return nil
}

func (c Config) validateDurations() error {
	for name, d := range map[string]time.Duration{
		"CHECK_INTERVAL": c.CheckInterval, "IDLE_CHECK_INTERVAL": c.IdleCheckInterval,
		"ACTIVE_WINDOW": c.ActiveWindow, "CHECK_TIMEOUT": c.CheckTimeout, "STORE_TIMEOUT": c.StoreTimeout,
		"HISTORY_RETENTION": c.HistoryRetention,
	} {
		if d <= 0 {
			return fmt.Errorf("%s_%s: must be greater than zero, got %s", Prefix, name, d)
		}
	}
	// A rotation runs under the store timeout; recovery by another replica
	// must not start while it may still be running.
	if c.RotationGrace < 2*c.StoreTimeout {
		return fmt.Errorf("%s_ROTATION_GRACE: must be at least twice %s_STORE_TIMEOUT (%s), got %s",
			Prefix, Prefix, 2*c.StoreTimeout, c.RotationGrace)
	}
	if c.MaxConcurrency < 0 {
		return fmt.Errorf("%s_MAX_CONCURRENCY: must be 0 (no cap) or more, got %d", Prefix, c.MaxConcurrency)
	}
	if c.HistoryBuffer < 1 {
		return fmt.Errorf("%s_HISTORY_BUFFER: must be 1 or more, got %d", Prefix, c.HistoryBuffer)
	}
	if c.BackupPoolLow < 0 {
		return fmt.Errorf("%s_BACKUP_POOL_LOW: must not be negative, got %d", Prefix, c.BackupPoolLow)
	}
	if c.RotationConfirmations < 1 {
		return fmt.Errorf("%s_ROTATION_CONFIRMATIONS: must be 1 or more, got %d", Prefix, c.RotationConfirmations)
	}
	if c.CheckInterval < time.Second {
		return fmt.Errorf("%s_CHECK_INTERVAL: must be at least 1s, got %s", Prefix, c.CheckInterval)
	}
	if c.IdleCheckInterval < c.CheckInterval {
		return fmt.Errorf("%s_IDLE_CHECK_INTERVAL: must not be shorter than %s_CHECK_INTERVAL (%s), got %s",
			Prefix, Prefix, c.CheckInterval, c.IdleCheckInterval)
	}
	if c.ReplicaCount < 1 {
		return fmt.Errorf("%s_REPLICA_COUNT: must be 1 or more, got %d", Prefix, c.ReplicaCount)
	}
	if c.ReplicaIndex < 0 || c.ReplicaIndex >= c.ReplicaCount {
		return fmt.Errorf("%s_REPLICA_INDEX: must be from 0 to REPLICA_COUNT-1 (%d), got %d",
			Prefix, c.ReplicaCount-1, c.ReplicaIndex)
	}
	return nil
}

func (c Config) validateMoney() error {
	if !(c.ThresholdUSD > 0) || c.ThresholdUSD > 1e12 {
		return fmt.Errorf("%s_THRESHOLD_USD: must be greater than zero, got %v", Prefix, c.ThresholdUSD)
	}
	if !(c.BudgetUSD > 0) || c.BudgetUSD > 1e12 {
		return fmt.Errorf("%s_BUDGET_USD: must be greater than zero, got %v", Prefix, c.BudgetUSD)
	}
	return nil
}

func (c Config) validateURLs() error {
	for name, v := range map[string]string{"LITELLM_URL": c.LiteLLMURL, "OPENROUTER_URL": c.OpenRouterURL} {
		if v == "" {
			continue
		}
		if err := CheckBaseURL(v); err != nil {
			return fmt.Errorf("%s_%s: %w", Prefix, name, err)
		}
	}
	return nil
}

// CheckBaseURL accepts an absolute http or https URL with a host.
func CheckBaseURL(v string) error {
	u, err := url.Parse(v)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return errors.New("not an http:// or https:// URL with a host")
	}
	return nil
}

func (c Config) validateModes() error {
	switch c.Rotation {
	case RotationOn, RotationDryRun, RotationOff:
	default:
		return fmt.Errorf("%s_ROTATION: must be on, dry-run or off, got %q", Prefix, c.Rotation)
	}
	switch strings.ToLower(c.LogLevel) {
	case "debug", "info", "warn", "error":
	default:
		return fmt.Errorf("%s_LOG_LEVEL: must be debug, info, warn or error, got %q", Prefix, c.LogLevel)
	}
	switch c.LogFormat {
	case "text", "json":
	default:
		return fmt.Errorf("%s_LOG_FORMAT: must be text or json, got %q", Prefix, c.LogFormat)
	}
	return nil
}

// Unknown lists the KEYSPEND_ variables in the environment that the
// exporter does not read, so a misspelled one is reported, not ignored.
func Unknown() []string {
	if envconfig.CheckDisallowed(Prefix, &Config{}) == nil {
		return nil
	}
	known := map[string]bool{}
	t := reflect.TypeOf(Config{})
	for i := range t.NumField() {
		known[Prefix+"_"+t.Field(i).Tag.Get("envconfig")] = true
	}
	var unknown []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(name, Prefix+"_") && !known[name] {
			unknown = append(unknown, name)
		}
	}
	sort.Strings(unknown)
	return unknown
}

// WriteHelp lists every variable with its default and meaning.
func WriteHelp(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "VARIABLE\tDEFAULT\tMEANING")
	err := envconfig.Usagef(Prefix, &Config{}, tw,
		`{{range .}}{{usage_key .}}	{{usage_default .}}	{{usage_description .}}
{{end}}`)
	if err != nil {
		return err
	}
	return tw.Flush()
}
