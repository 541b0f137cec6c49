package store_test

import (
	"context"
	"strings"
	"testing"

	"github.com/keyspend/keyspend_exporter/internal/store"
	"github.com/keyspend/keyspend_exporter/internal/store/storetest"
)

func importOne(t *testing.T, s *store.Store, k store.KeyImport) error {
	t.Helper()
	_, _, err := s.ImportKeys(context.Background(), []store.KeyImport{k})
	return err
}

// No secret may end up on two keys: an import giving a key another key's
// secret, a backup's, or a retired one is refused, and so is a backup
// carrying a key's secret.
func TestImportRefusesSecretsTheStoreHolds(t *testing.T) {
	ctx := context.Background()
	s := storetest.New(t)
	if err := importOne(t, s, store.KeyImport{ID: "a", Provider: "litellm", Secret: "sk-held-by-a"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ImportBackups(ctx, []store.Backup{{ID: "spare", Provider: "litellm", Secret: "sk-spare"}}); err != nil {
		t.Fatal(err)
	}

	cases := []struct {
		name string
		err  error
		want string
	}{
		{"key with another key's secret",
			importOne(t, s, store.KeyImport{ID: "b", Provider: "litellm", Secret: "sk-held-by-a"}), `key "b": its secret is already held by key "a"`},
		{"key with a backup's secret",
			importOne(t, s, store.KeyImport{ID: "b", Provider: "litellm", Secret: "sk-spare"}), `key "b": its secret is already held by backup "spare"`},
	}
	_, err := s.ImportBackups(ctx, []store.Backup{{ID: "dup", Provider: "litellm", Secret: "sk-held-by-a"}})
	cases = append(cases, struct {
		name string
		err  error
		want string
	}{"backup with a key's secret", err, `backup "dup": its secret is already held by key "a"`})

	// a's secret is replaced: the old one is retired and cannot come back.
	if err := importOne(t, s, store.KeyImport{ID: "a", Provider: "litellm", Secret: "sk-a-second"}); err != nil {
		t.Fatal(err)
	}
	cases = append(cases, struct {
		name string
		err  error
		want string
	}{"key given its own spent secret back",
		importOne(t, s, store.KeyImport{ID: "a", Provider: "litellm", Secret: "sk-held-by-a"}),
		`key "a": its secret is already held by a secret key "a" retired`})

	for _, c := range cases {
		if c.err == nil || !strings.Contains(c.err.Error(), c.want) {
			t.Errorf("%s: err = %v, want %q", c.name, c.err, c.want)
		}
		if c.err != nil && strings.Contains(c.err.Error(), "sk-") {
			t.Errorf("%s: error shows the secret: %v", c.name, c.err)
		}
	}
	keys, _, err := s.LoadKeys(ctx)
	if err != nil || len(keys) != 1 || keys[0].Secret != "sk-a-second" {
		t.Errorf("after the refused imports: keys %+v, err %v", keys, err)
	}
}

// Importing a key again with a new secret keeps the old one in the retired
// records, makes an exhausted key active, and leaves alone the fields the
// file does not give.
func TestReimportRetiresTheOldSecretAndKeepsFields(t *testing.T) {
	ctx := context.Background()
	s := storetest.New(t)
	budget := 25.0
	if err := importOne(t, s, store.KeyImport{ID: "k", Provider: "litellm", Secret: "sk-first",
		BaseURL: "http://proxy.example:4000", BudgetUSD: &budget}); err != nil {
		t.Fatal(err)
	}
	if err := s.SetKeyStatus(ctx, "k", 0, store.StatusExhausted); err != nil {
		t.Fatal(err)
	}
	if err := importOne(t, s, store.KeyImport{ID: "k", Provider: "litellm", Secret: "sk-second"}); err != nil {
		t.Fatal(err)
	}

	k, err := s.Key(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	if k.Secret != "sk-second" || k.Status != store.StatusActive || k.BaseURL != "http://proxy.example:4000" ||
		k.BudgetUSD == nil || *k.BudgetUSD != 25 {
		t.Errorf("after re-import: secret new %v, status %s, base_url %q, budget %v",
			k.Secret == "sk-second", k.Status, k.BaseURL, k.BudgetUSD)
	}
	// The retired secret is kept: importing it again is refused as retired.
	err = importOne(t, s, store.KeyImport{ID: "k", Provider: "litellm", Secret: "sk-first"})
	if err == nil || !strings.Contains(err.Error(), "retired") {
		t.Errorf("the replaced secret was not kept as retired: %v", err)
	}
}
