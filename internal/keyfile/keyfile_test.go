package keyfile

import (
	"strings"
	"testing"
)

const secret = "sk-keyfile-0123456789abcdef"

func TestParseArrayAndLines(t *testing.T) {
	array := `[{"id": "a", "provider": "litellm", "secret": "` + secret + `", "budget_usd": 10},
	           {"id": "b", "provider": "openrouter", "secret": "s2", "base_url": "https://or.example",
	            "threshold_usd": 4.5}]`
	lines := `{"id": "a", "provider": "litellm", "secret": "` + secret + `", "budget_usd": 10}

# comment lines and blank lines are skipped
{"id": "b", "provider": "openrouter", "secret": "s2", "base_url": "https://or.example", "threshold_usd": 4.5}
`
	for name, in := range map[string]string{"array": array, "lines": lines} {
		t.Run(name, func(t *testing.T) {
			got, err := Parse(strings.NewReader(in))
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != 2 || got[0].ID != "a" || got[0].Secret != secret || *got[0].BudgetUSD != 10 ||
				got[1].Provider != "openrouter" || got[1].BaseURL != "https://or.example" ||
				*got[1].ThresholdUSD != 4.5 || got[1].BudgetUSD != nil {
				t.Errorf("parsed %+v", got)
			}
		})
	}
}

// Every rejected file names what is wrong and where, and never quotes the
// secret, even when the secret sits next to the mistake.
func TestParseRejects(t *testing.T) {
	entry := func(fields string) string {
		return `{"id": "k1", "provider": "litellm", "secret": "` + secret + `"` + fields + `}`
	}
	cases := map[string]struct{ in, want string }{
		"empty":              {"  \n", "file is empty"},
		"empty array":        {"[]", "no entries"},
		"bad json":           {`[{"id": "k1", "secret": "` + secret + `",}]`, "invalid JSON at byte"},
		"cut off":            {`[{"id": "k1", "secret": "` + secret, "JSON cut off"},
		"trailing data":      {`[` + entry("") + `] x`, "data after the closing bracket"},
		"unknown field":      {entry(`, "secert": "x"`), `unknown field "secert"`},
		"budget as string":   {entry(`, "budget_usd": "` + secret + `"`), "field budget_usd must be a number"},
		"zero budget":        {entry(`, "budget_usd": 0`), "budget_usd must be a number greater than zero"},
		"negative thr":       {entry(`, "threshold_usd": -1`), "threshold_usd must be a number greater than zero"},
		"no id":              {`{"provider": "litellm", "secret": "` + secret + `"}`, "entry 1: id must be"},
		"no secret":          {`{"id": "k1", "provider": "litellm"}`, `entry 1 (id "k1"): secret must be set`},
		"spaced secret":      {`{"id": "k1", "provider": "litellm", "secret": " ` + secret + `"}`, "without surrounding spaces"},
		"bad provider":       {`{"id": "k1", "provider": "azure", "secret": "` + secret + `"}`, `provider must be one of litellm, openrouter`},
		"secret as provider": {`{"id": "k1", "provider": "` + secret + `", "secret": "x"}`, `provider must be one of`},
		"newline in secret":  {`{"id": "k1", "provider": "litellm", "secret": "sk-a\nb"}`, "printable ASCII without spaces"},
		"same secret twice": {`[{"id": "a", "provider": "litellm", "secret": "s"}, {"id": "b", "provider": "litellm", "secret": "s"}]`,
			`entry 2 (id "b"): secret repeats entry 1`},
		"secret as field": {`{"id": "k1", "provider": "litellm", "secret": "x", "` + secret + `": 1}`, "unknown field (name not shown"},
		"bad url":         {entry(`, "base_url": "litellm:4000"`), "base_url: not an http:// or https:// URL"},
		"control in id":   {`{"id": "k\u0007", "provider": "litellm", "secret": "s"}`, "control characters"},
		"duplicate":       {entry("") + "\n" + entry(""), `entry 2 (id "k1"): id repeats entry 1`},
		"two per line":    {entry("") + entry(""), "line 1: more than one JSON object"},
		"line numbers":    {entry("") + "\n\n{oops", "line 3: invalid JSON"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := Parse(strings.NewReader(tc.in))
			if err == nil {
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not say %q", err, tc.want)
			}
			if strings.Contains(err.Error(), secret[:8]) || strings.Contains(err.Error(), secret[8:16]) {
				t.Errorf("error quotes the secret: %q", err)
			}
		})
	}
}

func TestParseRefusesHugeFile(t *testing.T) {
	huge := strings.NewReader("[" + strings.Repeat(" ", MaxSize) + "]")
	if _, err := Parse(huge); err == nil || !strings.Contains(err.Error(), "larger than 64 MiB") {
		t.Errorf("err = %v, want a size error", err)
	}
}

// FuzzParse feeds arbitrary files to the parser: it must not panic, must
// return entries that pass its own validation, and its errors must never
// quote a secret of 8 or more characters from the input.
func FuzzParse(f *testing.F) {
	f.Add([]byte(`[{"id": "a", "provider": "litellm", "secret": "sk-fuzz-secret-1"}]`))
	f.Add([]byte(`{"id": "a", "provider": "litellm", "secret": "sk-fuzz-secret-1", "budget_usd": 1}` + "\n"))
	f.Add([]byte(`{"id": "a", "provider": "openrouter", "secret": "sk-or-v1-abcdefgh", "base_url": "http://x"}`))
	f.Add([]byte(`[{"id": "a", "provider": "litellm", "secret": "sk-fuzz-secret-1", "budget_usd": "sk-fuzz-secret-1"}]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		entries, err := Parse(strings.NewReader(string(data)))
		if err != nil {
			if strings.Contains(err.Error(), "sk-fuzz-secret-1") {
				t.Fatalf("error quotes the secret: %v", err)
			}
			return
		}
		if validate(entries) != nil || len(entries) == 0 {
			t.Fatalf("accepted entries that fail validation: %+v", entries)
		}
	})
}
