package store_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/keyspend/keyspend_exporter/internal/store"
	"github.com/keyspend/keyspend_exporter/internal/store/storetest"
)

// FerretDB v1 stalls on one update command carrying more than about 100
// updates, and on an update matching as many documents. Importing 250
// existing keys again and marking them all used must still finish.
func TestBulkUpdatesOfManyKeys(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s := storetest.New(t)
	in := make([]store.KeyImport, 250)
	ids := make([]string, len(in))
	for i := range in {
		ids[i] = fmt.Sprintf("k%03d", i)
		in[i] = store.KeyImport{ID: ids[i], Provider: "litellm", Secret: fmt.Sprintf("sk-bulk-%06d", i)}
	}
	if n, _, err := s.ImportKeys(ctx, in); err != nil || n != 250 {
		t.Fatalf("first import: %d new, err %v", n, err)
	}
	for i := range in {
		in[i].Secret += "-new"
	}
	if _, n, err := s.ImportKeys(ctx, in); err != nil || n != 250 {
		t.Fatalf("second import: %d updated, err %v", n, err)
	}
	at := time.Now().UTC().Truncate(time.Millisecond)
	if err := s.MarkUsed(ctx, ids, at); err != nil {
		t.Fatalf("mark used: %v", err)
	}

	keys, _, err := s.LoadKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if k.Secret[len(k.Secret)-4:] != "-new" || !k.LastUsedAt.Equal(at) {
			t.Fatalf("key %s after the updates: secret updated %v, last used %v", k.ID,
				k.Secret[len(k.Secret)-4:] == "-new", k.LastUsedAt)
		}
	}
}
