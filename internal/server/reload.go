package server

import (
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/portcullis-proxy/portcullis/internal/config"
)

// reloadState is what reloading needs: where the configuration comes
// from, and the metrics that say how the last reload went.
type reloadState struct {
	mu sync.Mutex // one reload at a time
	// load reads the configuration again, with the checks New runs; nil
	// when the server was given Options only (SetReloader).
	load func() (*config.Options, error)
	// level is the log level LOG_LEVEL sets, changed by a reload; nil if
	// the logger's level is fixed.
	level *slog.LevelVar

	// sums are the contents of the configuration's files as the
	// configuration in force, or the last reload that failed, read them.
	sums map[string]fileSum

	reloads     *prometheus.CounterVec
	lastOK      prometheus.Gauge
	lastSuccess prometheus.Gauge
}

// metrics creates the reload metrics, named as Prometheus names its own
// (prometheus_config_last_reload_successful…), so that the alerts
// operators already have read them the same way.
func (rs *reloadState) metrics() prometheus.Collector {
	rs.reloads = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "portcullis_config_reloads_total",
		Help: "Configuration reloads (SIGHUP, or a change of the config file or of a file it names), by result: success or failure.",
	}, []string{"result"})
	rs.lastOK = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "portcullis_config_last_reload_successful",
		Help: "Whether the last configuration reload succeeded (1) or failed and the previous configuration is still in force (0).",
	})
	rs.lastSuccess = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "portcullis_config_last_reload_success_timestamp_seconds",
		Help: "When the configuration in force was loaded (at start, or by the last successful reload), in seconds since the Unix epoch.",
	})
	rs.lastOK.Set(1)
	rs.lastSuccess.SetToCurrentTime()
	rs.reloads.WithLabelValues("success")
	rs.reloads.WithLabelValues("failure")
	return collectorSet{rs.reloads, rs.lastOK, rs.lastSuccess}
}

// collectorSet registers several collectors as one.
type collectorSet []prometheus.Collector

func (c collectorSet) Describe(ch chan<- *prometheus.Desc) {
	for _, x := range c {
		x.Describe(ch)
	}
}

func (c collectorSet) Collect(ch chan<- prometheus.Metric) {
	for _, x := range c {
		x.Collect(ch)
	}
}

// SetReloader makes the server reloadable: load reads the configuration
// again (config.Load with the same file, environment and Checks), and
// level, if not nil, is the logger's level, which LOG_LEVEL sets on each
// reload. Call it before Serve: Serve then watches the files the
// configuration was read from (Options.Files) and reloads when one
// changes.
func (s *Server) SetReloader(load func() (*config.Options, error), level *slog.LevelVar) {
	s.reload.mu.Lock()
	defer s.reload.mu.Unlock()
	s.reload.load, s.reload.level = load, level
}

// errNoReloader is Reload's error on a server that has no SetReloader.
var errNoReloader = errors.New("reloading: the configuration has no source to be read again from")

// Reload reads the configuration again and, if it passes every check
// New's configuration passes, puts it in force at once for new requests:
// routes, policies, upstreams, the identity provider, the certificate,
// LOG_LEVEL. Requests in flight finish with the configuration they
// started with; open streams whose request the new policy denies are
// ended (streams.go). Settings that need a restart keep their running
// values and are named in the log.
//
// A configuration with any problem changes nothing: every problem is
// logged, portcullis_config_last_reload_successful turns 0, and the
// error joins the problems.
func (s *Server) Reload() error {
	rs := &s.reload
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if rs.load == nil {
		return errNoReloader
	}
	// The files' contents as this reload reads them: the watcher compares
	// with them, whatever started the reload, so that a file changed and
	// changed back in between is still seen as what the server runs.
	before := fileSums(s.current().opts.Files())
	err := s.reloadLocked(rs.load)
	// Of the files the configuration in force names, those read before
	// keep that reading; only files new to it are read now.
	files := s.current().opts.Files()
	sums := make(map[string]fileSum, len(files))
	for _, p := range files {
		sum, ok := before[p]
		if !ok {
			sum = sumFile(p)
		}
		sums[p] = sum
	}
	rs.sums = sums
	if err != nil {
		rs.reloads.WithLabelValues("failure").Inc()
		rs.lastOK.Set(0)
		return err
	}
	rs.reloads.WithLabelValues("success").Inc()
	rs.lastOK.Set(1)
	rs.lastSuccess.SetToCurrentTime()
	return nil
}

func (s *Server) reloadLocked(load func() (*config.Options, error)) error {
	fail := func(err error) error {
		problems := config.Messages(err)
		for _, p := range problems {
			s.logger.Error("configuration reload refused; the running configuration stays in force", "problem", p)
		}
		return err
	}
	opts, err := load()
	if err != nil {
		return fail(err)
	}
	for _, name := range config.RestartRequired(s.opts, opts) {
		s.logger.Warn("a reloaded setting needs a restart to take effect; the running value is kept until then", "setting", name)
	}
	opts.KeepRestartSettings(s.opts)
	// Again, with the running values of what cannot change: routes must
	// still not claim the running sign-in host, and so on.
	if err := opts.Check(Checks()...); err != nil {
		return fail(err)
	}
	for _, w := range opts.Warnings() {
		s.logger.Warn(w.Error())
	}
	old := s.current()
	g, err := s.newGeneration(opts, old)
	if err != nil {
		return fail(err)
	}
	s.live.Store(g)
	if g.provider != old.provider {
		s.auth.SetProvider(g.provider)
	}
	if s.reload.level != nil {
		s.reload.level.Set(opts.LogLevel)
	}
	// Requests still on the old generation keep their connections; idle
	// ones go.
	old.close()
	s.checkStreamsNow()
	s.logger.Info("configuration reloaded", "routes", len(opts.Routes), "identity_provider_changed", g.provider != old.provider)
	return nil
}

// fileCheckInterval is how often the configuration's files are looked at.
// Kubernetes updates a mounted ConfigMap or Secret a minute or so after
// it changes; a second more is nothing, and reading a few small files a
// second costs nothing either.
const fileCheckInterval = time.Second

// fileSettle is how long a change is left to settle before the reload:
// a certificate and its key are often written one after the other.
const fileSettle = 200 * time.Millisecond

// watchFiles reloads when a file the configuration was read from changes,
// until ctx is done. Files are compared by content, read through any
// symbolic link: a ConfigMap or Secret volume changes by swapping its
// ..data link, which changes no file's own modification time.
func (s *Server) watchFiles(ctx context.Context) {
	rs := &s.reload
	rs.mu.Lock()
	if rs.sums == nil {
		rs.sums = fileSums(s.current().opts.Files())
	}
	rs.mu.Unlock()
	t := time.NewTicker(fileCheckInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		rs.mu.Lock()
		read := rs.sums
		rs.mu.Unlock()
		now := fileSums(s.current().opts.Files())
		if sameSums(read, now) {
			continue
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(fileSettle):
		}
		s.logger.Info("a configuration file changed; reloading", "files", changedFiles(read, now))
		s.Reload() //nolint:errcheck // Reload logs and counts its failures
	}
}

// fileSum is a file's content hash, or the zero value if it cannot be
// read (a change to or from that is a change, too).
type fileSum [sha256.Size]byte

func fileSums(paths []string) map[string]fileSum {
	sums := make(map[string]fileSum, len(paths))
	for _, p := range paths {
		sums[p] = sumFile(p)
	}
	return sums
}

func sumFile(path string) fileSum {
	f, err := os.Open(path)
	if err != nil {
		return fileSum{}
	}
	defer f.Close()
	h := sha256.New()
	// As config.Load, no more than a configuration's worth: a path
	// pointed at /dev/zero must not spin here.
	if _, err := io.Copy(h, io.LimitReader(f, 1<<20+1)); err != nil {
		return fileSum{}
	}
	var sum fileSum
	h.Sum(sum[:0])
	return sum
}

func sameSums(a, b map[string]fileSum) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func changedFiles(before, after map[string]fileSum) []string {
	var changed []string
	for k, v := range after {
		if w, ok := before[k]; !ok || w != v {
			changed = append(changed, k)
		}
	}
	return changed
}
