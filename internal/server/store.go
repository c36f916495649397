package server

import (
	"context"
	"fmt"
	"time"

	"github.com/portcullis-proxy/portcullis/internal/postgres"
	"github.com/portcullis-proxy/portcullis/internal/session"
)

// storeOpenTimeout bounds connecting to PostgreSQL and migrating its
// schema at start. Ten replicas starting at once wait for one another's
// migration, which takes well under a second.
const storeOpenTimeout = time.Minute

// newSessionStore opens the session store DATABROKER_STORAGE_TYPE names:
// this process's memory, or PostgreSQL shared by every replica. The
// returned close function ends the store's connections and goroutines.
func (s *Server) newSessionStore(sealer *session.Sealer) (session.Store, func(), error) {
	if s.opts.DatabrokerStorageType != "postgres" {
		m := session.NewMemoryStore()
		m.MaxPerPerson = s.opts.Limits.SessionsPerPerson
		return m, func() {}, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), storeOpenTimeout)
	defer cancel()
	st, err := postgres.Open(ctx, postgres.Options{
		ConnString:   s.opts.DatabrokerStorageConnectionString,
		Sealer:       sealer,
		MaxPerPerson: s.opts.Limits.SessionsPerPerson,
		Grace:        s.opts.DatabrokerStorageGrace,
		Logger:       s.logger.With("component", "session-store"),
		Registerer:   s.metrics.registry,
	})
	if err != nil {
		return nil, nil, fmt.Errorf("opening the session store (DATABROKER_STORAGE_TYPE postgres): %w", err)
	}
	s.storeReady = st.Ready
	return st, st.Close, nil
}
