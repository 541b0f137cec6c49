// Package keyfile reads the files operators import keys and backups from:
// a JSON array of entries, or one JSON entry per line.
package keyfile

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"reflect"
	"regexp"
	"strconv"
	"strings"

	"github.com/keyspend/keyspend_exporter/internal/config"
	"github.com/keyspend/keyspend_exporter/internal/provider"
)

// MaxSize bounds an import file; a larger one is refused rather than read
// into memory.
const MaxSize = 64 << 20

// Entry is one key or backup in an import file.
type Entry struct {
	ID           string   `json:"id"`
	Provider     string   `json:"provider"`
	Secret       string   `json:"secret"`
	BaseURL      string   `json:"base_url,omitempty"`
	BudgetUSD    *float64 `json:"budget_usd,omitempty"`
	ThresholdUSD *float64 `json:"threshold_usd,omitempty"`
}

// Parse reads every entry and validates it. Errors name the entry by its
// position and id, never by its secret.
func Parse(r io.Reader) ([]Entry, error) {
	data, err := io.ReadAll(io.LimitReader(r, MaxSize+1))
	if err != nil {
		return nil, fmt.Errorf("read: %w", err)
	}
	if len(data) > MaxSize {
		return nil, fmt.Errorf("file larger than %d MiB", MaxSize>>20)
	}
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) == 0 {
		return nil, errors.New("file is empty")
	}

	var entries []Entry
	if trimmed[0] == '[' {
		entries, err = parseArray(trimmed)
	} else {
		entries, err = parseLines(trimmed)
	}
	if err != nil {
		return nil, err
	}
	return entries, validate(entries)
}

func strictDecoder(b []byte) *json.Decoder {
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	return d
}

func parseArray(b []byte) ([]Entry, error) {
	var entries []Entry
	d := strictDecoder(b)
	if err := d.Decode(&entries); err != nil {
		return nil, fmt.Errorf("JSON array: %s", describe(err))
	}
	if d.More() {
		return nil, errors.New("JSON array: data after the closing bracket")
	}
	return entries, nil
}

func parseLines(b []byte) ([]Entry, error) {
	var entries []Entry
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64<<10), MaxSize)
	for n := 1; sc.Scan(); n++ {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 || line[0] == '#' {
			continue
		}
		var e Entry
		d := strictDecoder(line)
		if err := d.Decode(&e); err != nil {
			return nil, fmt.Errorf("line %d: %s", n, describe(err))
		}
		if d.More() {
			return nil, fmt.Errorf("line %d: more than one JSON object", n)
		}
		entries = append(entries, e)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read lines: %w", err)
	}
	return entries, nil
}

// describe shortens a JSON error to its kind and position. The decoder's
// message can quote input, and input holds secrets.
func describe(err error) string {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return fmt.Sprintf("invalid JSON at byte %d", syn.Offset)
	case errors.As(err, &typ):
		kind := "a string"
		if typ.Type.Kind() != reflect.String {
			kind = "a number"
		}
		return fmt.Sprintf("field %s must be %s", typ.Field, kind)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		// Only a name that looks like a field is printed back: a secret
		// pasted as a field name must not be.
		name := strings.TrimPrefix(err.Error(), "json: unknown field ")
		if !fieldName.MatchString(name) {
			return "unknown field (name not shown: it does not look like one)"
		}
		return "unknown field " + name
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "JSON cut off before its end"
	}
	return "invalid JSON"
}

var fieldName = regexp.MustCompile(`^"[a-z_]{1,24}"$`)

// shorten cuts text that came from the file to 40 characters.
func shorten(text string) string {
	if r := []rune(text); len(r) > 40 {
		return string(r[:40]) + "…"
	}
	return text
}

func validate(entries []Entry) error {
	if len(entries) == 0 {
		return errors.New("file holds no entries")
	}
	seen := make(map[string]int, len(entries))
	secrets := make(map[string]int, len(entries))
	for i, e := range entries {
		where := fmt.Sprintf("entry %d", i+1)
		if e.ID != "" {
			where += fmt.Sprintf(" (id %s)", shorten(strconv.Quote(e.ID)))
		}
		if err := validateEntry(e); err != nil {
			return fmt.Errorf("%s: %w", where, err)
		}
		if first, dup := seen[e.ID]; dup {
			return fmt.Errorf("%s: id repeats entry %d", where, first)
		}
		if first, dup := secrets[e.Secret]; dup {
			return fmt.Errorf("%s: secret repeats entry %d", where, first)
		}
		seen[e.ID], secrets[e.Secret] = i+1, i+1
	}
	return nil
}

func validateEntry(e Entry) error {
	switch {
	case strings.TrimSpace(e.ID) == "" || len(e.ID) > 200:
		return errors.New("id must be 1 to 200 characters")
	case strings.ContainsFunc(e.ID, func(r rune) bool { return r < 0x20 || r == 0x7f }):
		return errors.New("id must not contain control characters")
	case e.Secret == "" || strings.TrimSpace(e.Secret) != e.Secret:
		return errors.New("secret must be set, without surrounding spaces")
	case strings.ContainsFunc(e.Secret, func(r rune) bool { return r <= ' ' || r > '~' }):
		// It goes into an Authorization header, which takes none of these.
		return errors.New("secret must be printable ASCII without spaces")
	}
	if _, ok := provider.Lookup(e.Provider); !ok {
		// The value is not printed: a secret pasted in the wrong field
		// would land in the error.
		return fmt.Errorf("provider must be one of %s", strings.Join(provider.Names(), ", "))
	}
	if e.BaseURL != "" {
		if err := config.CheckBaseURL(e.BaseURL); err != nil {
			return fmt.Errorf("base_url: %w", err)
		}
	}
	for name, v := range map[string]*float64{"budget_usd": e.BudgetUSD, "threshold_usd": e.ThresholdUSD} {
		if v != nil && (!(*v > 0) || math.IsInf(*v, 0)) {
			return fmt.Errorf("%s must be a number greater than zero", name)
		}
	}
	return nil
}
