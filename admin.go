package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"text/tabwriter"
	"time"

	"github.com/keyspend/keyspend_exporter/internal/config"
	"github.com/keyspend/keyspend_exporter/internal/keyfile"
	"github.com/keyspend/keyspend_exporter/internal/provider"
	"github.com/keyspend/keyspend_exporter/internal/store"
)

// admin runs the keys and backups commands against the configured store.
func admin(args []string) int {
	what, verb, file := args[0], "", ""
	if len(args) > 1 {
		verb = args[1]
	}
	if len(args) > 2 {
		file = args[2]
	}
	switch {
	case verb == "import" && file != "" && len(args) == 3:
	case what == "keys" && verb == "list" && len(args) == 2:
	default:
		return fail(fmt.Errorf("usage: keyspend_exporter %s import FILE | keys list", what))
	}

	cfg, err := config.Load()
	if err != nil {
		return fail(err)
	}
	logger := newLogger(cfg, os.Stderr)
	st, emb, err := openStore(cfg, logger)
	if err != nil {
		return fail(err)
	}
	defer func() {
		_ = st.Close(context.Background())
		if emb != nil {
			emb.Close()
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	if verb == "list" {
		err = listKeys(ctx, st, os.Stdout)
	} else {
		err = importFile(ctx, st, what, file, os.Stdout)
	}
	if err != nil {
		return fail(err)
	}
	return 0
}

func importFile(ctx context.Context, st *store.Store, what, path string, out io.Writer) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	entries, err := keyfile.Parse(f)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if err := st.EnsureIndexes(ctx); err != nil {
		return err
	}

	if what == "backups" {
		in := make([]store.Backup, len(entries))
		for i, e := range entries {
			in[i] = store.Backup{ID: e.ID, Provider: e.Provider, Secret: e.Secret, BaseURL: e.BaseURL}
		}
		n, err := st.ImportBackups(ctx, in)
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "imported %d backups, %d already in the pool\n", n, len(in)-n)
		return nil
	}
	in := make([]store.KeyImport, len(entries))
	for i, e := range entries {
		in[i] = store.KeyImport{ID: e.ID, Provider: e.Provider, Secret: e.Secret, BaseURL: e.BaseURL,
			BudgetUSD: e.BudgetUSD, ThresholdUSD: e.ThresholdUSD}
	}
	inserted, updated, err := st.ImportKeys(ctx, in)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "imported %d keys: %d new, %d updated\n", len(in), inserted, updated)
	return nil
}

func listKeys(ctx context.Context, st *store.Store, out io.Writer) error {
	keys, bad, err := st.LoadKeys(ctx)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tPROVIDER\tSTATUS\tGENERATION\tSECRET\tLAST SPEND")
	for _, k := range keys {
		spend := "-"
		if k.LastSpendUSD != nil {
			spend = fmt.Sprintf("$%.2f", *k.LastSpendUSD)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\n", k.ID, k.Provider, k.Status, k.Generation,
			provider.Mask(k.Secret), spend)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, e := range bad {
		fmt.Fprintf(os.Stderr, "skipped: %v\n", e)
	}
	return nil
}
