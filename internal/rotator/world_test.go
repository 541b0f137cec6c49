package rotator_test

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/keyspend/keyspend_exporter/internal/rotator"
	"github.com/keyspend/keyspend_exporter/internal/store"
	"github.com/keyspend/keyspend_exporter/internal/store/storetest"
)

const provider = "litellm"

// world is one test's database with the secrets it was seeded with.
type world struct {
	names   store.Names
	st      *store.Store
	logger  *slog.Logger
	logs    *logBuffer
	keys    map[string]string // original secret by key id
	backups map[string]string // secret by backup id
}

// newWorld seeds a fresh database with nKeys keys (key-000, ...) and
// nBackups backups (bk-000, ...), all of one provider.
func newWorld(t *testing.T, nKeys, nBackups int) *world {
	t.Helper()
	names := storetest.Names(t)
	w := &world{
		names: names, st: storetest.Open(t, storetest.Server(t).URI(), names),
		keys: map[string]string{}, backups: map[string]string{},
	}
	w.logger, w.logs = newLogger(t)

	in := make([]store.KeyImport, nKeys)
	for i := range in {
		in[i] = store.KeyImport{ID: fmt.Sprintf("key-%03d", i), Provider: provider,
			Secret: newSecret(t, "sk-key-")}
		w.keys[in[i].ID] = in[i].Secret
	}
	if _, _, err := w.st.ImportKeys(context.Background(), in); err != nil {
		t.Fatal(err)
	}
	w.addBackups(t, "bk", nBackups)
	return w
}

// addBackups imports n more backups with ids prefix-000, ...
func (w *world) addBackups(t *testing.T, prefix string, n int) {
	t.Helper()
	in := make([]store.Backup, n)
	for i := range in {
		in[i] = store.Backup{ID: fmt.Sprintf("%s-%03d", prefix, i), Provider: provider,
			Secret: newSecret(t, "sk-bk-")}
		w.backups[in[i].ID] = in[i].Secret
	}
	if n == 0 {
		return
	}
	if got, err := w.st.ImportBackups(context.Background(), in); err != nil || got != n {
		t.Fatalf("import backups: inserted %d of %d, err %v", got, n, err)
	}
}

// replica opens a second, independent client on the world's database, as
// another exporter replica or a restarted process would.
func (w *world) replica(t *testing.T) *store.Store {
	return storetest.Open(t, storetest.Server(t).URI(), w.names)
}

// rotator builds a rotator on st that logs into the world's buffer.
func (w *world) rotator(st *store.Store, opts rotator.Options) *rotator.Rotator {
	opts.Store = st
	if opts.Logger == nil {
		opts.Logger = w.logger
	}
	return rotator.New(opts)
}

// loadKeys reads the keys by id.
func (w *world) loadKeys(t *testing.T) map[string]store.Key {
	t.Helper()
	keys, bad, err := w.st.LoadKeys(context.Background())
	if err != nil || len(bad) != 0 {
		t.Fatalf("load keys: %v %v", err, bad)
	}
	out := make(map[string]store.Key, len(keys))
	for _, k := range keys {
		out[k.ID] = k
	}
	return out
}

// key reads one key.
func (w *world) key(t *testing.T, id string) store.Key {
	t.Helper()
	k, ok := w.loadKeys(t)[id]
	if !ok {
		t.Fatalf("key %s not in the store", id)
	}
	return k
}

// listBackups reads the backups by id.
func (w *world) listBackups(t *testing.T) map[string]store.Backup {
	t.Helper()
	list, err := w.st.ListBackups(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	out := make(map[string]store.Backup, len(list))
	for _, b := range list {
		out[b.ID] = b
	}
	return out
}

// breach is an observation of k over its threshold.
func breach(k store.Key) rotator.Observation {
	return rotator.Observation{Key: k, Reason: rotator.ReasonThreshold,
		SpendUSD: 9.961, ThresholdUSD: 9.95}
}

// observeAll hands every observation to its rotator, each in its own
// goroutine, all released at the same moment, and returns the results in
// the order given.
func observeAll(rots []*rotator.Rotator, obs []rotator.Observation) []rotator.Result {
	out := make([]rotator.Result, len(obs))
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range obs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			out[i] = rots[i%len(rots)].Observe(context.Background(), obs[i])
		}()
	}
	close(start)
	wg.Wait()
	return out
}

// snapshot returns every document of every collection of the world's
// database as extended JSON, to compare a database before and after.
func (w *world) snapshot(t *testing.T) map[string][]string {
	t.Helper()
	ctx := context.Background()
	c, err := mongo.Connect(options.Client().ApplyURI(storetest.Server(t).URI()))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Disconnect(ctx) }()

	db := c.Database(w.names.Database)
	colls, err := db.ListCollectionNames(ctx, bson.D{})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	for _, name := range colls {
		out[name] = documents(t, db.Collection(name))
	}
	return out
}

func documents(t *testing.T, c *mongo.Collection) []string {
	t.Helper()
	ctx := context.Background()
	cur, err := c.Find(ctx, bson.D{}, options.Find().SetSort(bson.D{{Key: "_id", Value: 1}}))
	if err != nil {
		t.Fatal(err)
	}
	defer cur.Close(ctx)
	var docs []string
	for cur.Next(ctx) {
		docs = append(docs, cur.Current.String())
	}
	if err := cur.Err(); err != nil {
		t.Fatal(err)
	}
	sort.Strings(docs)
	return docs
}

// clock is a settable time source for Options.Now.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}
