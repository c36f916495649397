package postgres

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// migrations are the schema's versions in order: migrations[i] takes the
// schema from version i to i+1. A released migration is never edited; a
// change is a new one at the end, which must work while replicas running
// the previous release still use the database (add, then stop using, then
// drop in a later release).
var migrations = []string{
	// 1: sessions, redeemed sign-in states and leases.
	`
CREATE TABLE portcullis_sessions (
	-- Hex SHA-256 of the session ID: the ID itself is a credential.
	id         text PRIMARY KEY,
	subject    text NOT NULL,
	created_at timestamptz NOT NULL,
	expires_at timestamptz NOT NULL,
	-- Set by every write, for the reconcile that catches notifications
	-- a replica missed.
	changed_at timestamptz NOT NULL DEFAULT now(),
	-- A sign-out: the row stays (with its data emptied) so that reconcile
	-- sees it, until the sweep removes it.
	revoked_at timestamptz,
	-- The whole session as JSON, sealed with COOKIE_SECRET.
	data       text NOT NULL
);
CREATE INDEX portcullis_sessions_subject ON portcullis_sessions (subject, created_at) WHERE revoked_at IS NULL;
CREATE INDEX portcullis_sessions_changed ON portcullis_sessions (changed_at);
CREATE INDEX portcullis_sessions_expires ON portcullis_sessions (expires_at);

CREATE TABLE portcullis_sign_in_states (
	-- Hex SHA-256 of the state's nonce.
	nonce      text PRIMARY KEY,
	expires_at timestamptz NOT NULL
);
CREATE INDEX portcullis_sign_in_states_expires ON portcullis_sign_in_states (expires_at);

CREATE TABLE portcullis_leases (
	-- Hex SHA-256 of the lease's name, which holds a session ID.
	name       text PRIMARY KEY,
	holder     text NOT NULL,
	expires_at timestamptz NOT NULL
);
CREATE INDEX portcullis_leases_expires ON portcullis_leases (expires_at);
`,
	// 2: sessions found by their person's email, for an administrator's
	// DeleteUser. Replicas of the previous release keep working: they
	// neither read nor write email_hash, and the rows they write have it
	// NULL (which DeleteUser does not find). Adding a nullable column
	// without a default changes the catalogue only; building the index
	// holds writes (sign-ins, refreshes, sign-outs) back while it reads
	// the table, 80 ms for 100,000 sessions of 1.5 kB on a test machine.
	// Not CONCURRENTLY: that cannot run in the migration's transaction.
	`
-- Hex SHA-256 of the person's email, its ASCII letters lower-cased, with
-- a prefix of its own (emailHash); NULL for a session without an email,
-- or written by a release before this column.
ALTER TABLE portcullis_sessions ADD COLUMN email_hash text;
CREATE INDEX portcullis_sessions_email ON portcullis_sessions (email_hash) WHERE revoked_at IS NULL;
`,
	// 3: device sign-ins (RFC 8628), which a client may poll on any
	// replica. A new table: replicas of the previous release neither
	// read nor write it, and refuse device sign-in, which they do not
	// serve.
	`
CREATE TABLE portcullis_device_grants (
	-- Hex SHA-256 of the device code, the secret the client polls with.
	device_code text PRIMARY KEY,
	-- Hex SHA-256 of the user code the person types: one per unexpired
	-- grant; an expired one kept for its client's late poll gives it up.
	user_code   text NOT NULL UNIQUE,
	expires_at  timestamptz NOT NULL,
	interval_ms bigint NOT NULL,
	last_poll   timestamptz,
	-- session.DeviceStatus: 0 pending, 1 approved, 2 denied, 3 answered.
	status      smallint NOT NULL DEFAULT 0,
	-- The route, the requesting client, the approving session: JSON
	-- sealed with COOKIE_SECRET (the session ID is a credential).
	data        text NOT NULL
);
CREATE INDEX portcullis_device_grants_expires ON portcullis_device_grants (expires_at);
`,
	// 4: renewal chains (session.Store.RotateRenewal), each spent once
	// across replicas. A new table: replicas of the previous release
	// neither read nor write it, and do not serve renewal.
	`
CREATE TABLE portcullis_renewals (
	-- Hex SHA-256 of the session ID, as portcullis_sessions.id.
	session_id text NOT NULL,
	-- The chain's random name, from the credential (not a secret alone).
	family     text NOT NULL,
	-- The generation the chain's next credential must carry.
	next_gen   bigint NOT NULL,
	-- The session's expiry: the sweep drops the chain with it.
	expires_at timestamptz NOT NULL,
	PRIMARY KEY (session_id, family)
);
CREATE INDEX portcullis_renewals_expires ON portcullis_renewals (expires_at);
`,
}

// migrationLock is the advisory lock key that serializes migrations: ten
// replicas starting at once against an empty database must not all create
// the tables. Any fixed number does; this is "portcull" in ASCII.
const migrationLock int64 = 0x706f727463756c6c

// migrate brings the schema up to len(migrations), one migration per
// transaction, each under the advisory lock: a replica that waited for
// the lock finds the work done and goes on.
func migrate(ctx context.Context, pool *pgxpool.Pool, log *slog.Logger) error {
	for {
		done, err := migrateOne(ctx, pool, log)
		if err != nil || done {
			return err
		}
	}
}

func migrateOne(ctx context.Context, pool *pgxpool.Pool, log *slog.Logger) (done bool, err error) {
	applied := 0
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		// A transaction-level lock: it is released by commit or rollback,
		// so a replica that dies mid-migration cannot leave it held.
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, migrationLock); err != nil {
			return fmt.Errorf("waiting for other replicas' migrations: %w", err)
		}
		if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS portcullis_schema_migrations (
			version    integer PRIMARY KEY,
			applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
			return fmt.Errorf("creating portcullis_schema_migrations: %w", err)
		}
		var version int
		if err := tx.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM portcullis_schema_migrations`).Scan(&version); err != nil {
			return fmt.Errorf("reading the schema version: %w", err)
		}
		switch {
		case version > len(migrations):
			// A newer release migrated this database: its schema may mean
			// things this binary does not know (a column that must be
			// set), so refuse rather than guess.
			return fmt.Errorf("the database's schema is version %d, newer than this Portcullis knows (%d): "+
				"run the release that migrated it, or a newer one", version, len(migrations))
		case version == len(migrations):
			done = true
			return nil
		}
		if _, err := tx.Exec(ctx, migrations[version]); err != nil {
			return fmt.Errorf("applying migration %d: %w", version+1, err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO portcullis_schema_migrations (version) VALUES ($1)`, version+1); err != nil {
			return fmt.Errorf("recording migration %d: %w", version+1, err)
		}
		applied = version + 1
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("migrating the session store's schema: %w", err)
	}
	if applied > 0 {
		log.Info("migrated the session store's database", "version", applied)
	}
	return done, nil
}
