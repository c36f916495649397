package postgres

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/portcullis-proxy/portcullis/internal/session"
	"github.com/portcullis-proxy/portcullis/internal/testenv"
	"github.com/portcullis-proxy/portcullis/internal/testenv/logbuf"
)

// server is the PostgreSQL the tests share; each test takes an empty
// database of its own on it (newDatabase). A test that stops the database
// starts a server of its own.
var server *testenv.Postgres

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "portcullis-postgres-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	server, err = testenv.StartPostgres(ctx, dir)
	cancel()
	if err != nil {
		// Never a skip: the store is tested against the real database or
		// not at all, and CI must see which.
		fmt.Fprintf(os.Stderr, "testenv: %v\n", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	if code != 0 {
		fmt.Fprintf(os.Stderr, "postgres log (%s) ends:\n%s\n", server.LogPath(), server.LogTail(40))
	}
	server.Close()
	os.RemoveAll(dir)
	os.Exit(code)
}

// newDatabase returns the URL of an empty database on the shared server.
func newDatabase(t testing.TB) string {
	t.Helper()
	conn, err := server.NewDatabase(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return conn
}

// testKey is COOKIE_SECRET in these tests: every replica has the same.
var testKey = []byte("0123456789abcdef0123456789abcdef")

// replica opens a Store on conn as one replica would, with the tests' key
// and a logger whose output is shown if the test fails, and closes it when
// the test ends. opts.ConnString, Sealer and Logger are filled in.
func replica(t testing.TB, conn string, opts Options) (*Store, *logbuf.Buffer) {
	t.Helper()
	return replicaListening(t, conn, opts, true)
}

func replicaListening(t testing.TB, conn string, opts Options, listen bool) (*Store, *logbuf.Buffer) {
	t.Helper()
	sealer, err := session.NewSealer(testKey)
	if err != nil {
		t.Fatal(err)
	}
	logs := &logbuf.Buffer{}
	opts.ConnString, opts.Sealer = conn, sealer
	opts.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := open(ctx, opts, listen)
	if err != nil {
		t.Fatalf("opening the store: %v", err)
	}
	t.Cleanup(func() {
		s.Close()
		if t.Failed() {
			t.Logf("store logs:\n%s", logs.String())
		}
	})
	return s, logs
}

// sample is a new live session of subject with everything set, the
// identity provider's tokens and the email marked so that a test can look
// for them in the database.
func sample(subject string) *session.Session {
	now := time.Now()
	return &session.Session{
		ID: session.NewSessionID(), Subject: subject, Email: subject + "@secret-mail.example", Name: "Name of " + subject,
		Groups:          []string{"dev"},
		Claims:          map[string][]string{"department": {"platform"}},
		CreatedAt:       now,
		ExpiresAt:       now.Add(time.Hour),
		IDPRefreshToken: "refresh-token-SECRET-" + subject,
		IDPIDToken:      "id-token-SECRET-" + subject,
		IDPExpiry:       now.Add(5 * time.Minute),
	}
}

// eventually polls f every 20 ms until it returns nil or within has
// passed, and fails the test with f's last error then.
func eventually(t testing.TB, within time.Duration, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s: %v", what, within, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// query runs sql on conn directly, as an operator (or an attacker with a
// dump) would see the database.
func query[T any](t testing.TB, conn, sql string, args ...any) []T {
	t.Helper()
	ctx := context.Background()
	c, err := pgx.Connect(ctx, conn)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	rows, err := c.Query(ctx, sql, args...)
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	got, err := pgx.CollectRows(rows, pgx.RowTo[T])
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return got
}

// exec runs sql on conn directly.
func exec(t testing.TB, conn, sql string, args ...any) {
	t.Helper()
	ctx := context.Background()
	c, err := pgx.Connect(ctx, conn)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	if _, err := c.Exec(ctx, sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// noSecretsIn fails the test if text holds any of secrets.
func noSecretsIn(t testing.TB, where, text string, secrets ...string) {
	t.Helper()
	for _, s := range secrets {
		if strings.Contains(text, s) {
			t.Errorf("%s holds %q", where, s)
		}
	}
}
