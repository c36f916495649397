package postgres

import (
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the store's Prometheus collectors. A nil *metrics (no
// Registerer) records nothing.
type metrics struct {
	reg       prometheus.Registerer
	duration  *prometheus.HistogramVec
	errors    *prometheus.CounterVec
	lag       prometheus.Histogram
	cached    prometheus.GaugeFunc
	collected []prometheus.Collector
}

func newMetrics(reg prometheus.Registerer, cached func() int) (*metrics, error) {
	m := &metrics{
		reg: reg,
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "portcullis_store_operation_seconds",
			Help: "Time the session store's database took, by operation: put, get (a session this replica did not hold; " +
				"one it holds costs no database time and is not counted), update, delete, redeem_state, try_lease, " +
				"release_lease, reconcile, sweep.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"operation"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "portcullis_store_errors_total",
			Help: "Session store operations that failed because the database did not answer (or a row could not be opened), by operation.",
		}, []string{"operation"}),
		lag: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "portcullis_store_notification_lag_seconds",
			Help: "Time from a replica's write to this replica's eviction of the session, by the writer's clock " +
				"(skew between replicas' clocks shows here too).",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}),
		cached: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "portcullis_store_cache_sessions",
			Help: "Sessions this replica holds in memory, which it serves without asking the database.",
		}, func() float64 { return float64(cached()) }),
	}
	for _, c := range []prometheus.Collector{m.duration, m.errors, m.lag, m.cached} {
		if err := reg.Register(c); err != nil {
			m.unregister()
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) {
				return nil, errors.New("registering the session store's metrics: another store registered them already")
			}
			return nil, err
		}
		m.collected = append(m.collected, c)
	}
	return m, nil
}

func (m *metrics) observe(op string, d time.Duration) {
	if m != nil {
		m.duration.WithLabelValues(op).Observe(d.Seconds())
	}
}

func (m *metrics) failed(op string) {
	if m != nil {
		m.errors.WithLabelValues(op).Inc()
	}
}

func (m *metrics) notified(lag time.Duration) {
	if m != nil {
		m.lag.Observe(max(lag, 0).Seconds())
	}
}

// unregister lets another store (a reopened one) register again.
func (m *metrics) unregister() {
	if m == nil {
		return
	}
	for _, c := range m.collected {
		m.reg.Unregister(c)
	}
}
