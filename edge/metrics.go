package edge

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

const metricsNamespace = "haip_edge"

// metrics are the edge's Prometheus series. Labels come only from small
// server-chosen sets (transport, reason, code, kind); never a session id.
type metrics struct {
	active      *prometheus.GaugeVec
	httpConns   prometheus.Gauge
	accepted    *prometheus.CounterVec
	refused     *prometheus.CounterVec
	disconnects *prometheus.CounterVec
	msgsIn      prometheus.Counter
	msgsOut     prometheus.Counter
	errorsSent  *prometheus.CounterVec
	// clientErrors counts ERROR envelopes clients sent (logged only at
	// debug, rate-limited).
	clientErrors prometheus.Counter
	appendDur    prometheus.Histogram
	catchups     prometheus.Counter
	// flow control and runs
	flowViolations prometheus.Counter
	grantsDeferred prometheus.Counter
	creditWaits    prometheus.Counter
	queueDepth     prometheus.Gauge
	paused         prometheus.Gauge
	runsRefused    prometheus.Counter
	resyncs        prometheus.Counter
	// isolation between users
	ctrlWaits   prometheus.Counter
	limited     *prometheus.CounterVec
	replayBytes prometheus.Counter
	slowCount   atomic.Uint64
	catchupN    atomic.Uint64
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		active: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: metricsNamespace, Name: "connections_active",
			Help: "Live client connections."}, []string{"transport"}),
		httpConns: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: metricsNamespace, Name: "http_connections_open",
			Help: "Open TCP connections of the HTTP server (streams, requests, idle keep-alives; not upgraded WebSockets)."}),
		accepted: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: metricsNamespace, Name: "connections_total",
			Help: "Client connections accepted."}, []string{"transport"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: metricsNamespace, Name: "connections_refused_total",
			Help: "Connection requests refused before upgrade, by reason."}, []string{"transport", "reason"}),
		disconnects: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: metricsNamespace, Name: "disconnects_total",
			Help: "Connections ended, by reason."}, []string{"transport", "reason"}),
		msgsIn: prometheus.NewCounter(prometheus.CounterOpts{Namespace: metricsNamespace, Name: "messages_in_total",
			Help: "Envelopes received from clients."}),
		msgsOut: prometheus.NewCounter(prometheus.CounterOpts{Namespace: metricsNamespace, Name: "messages_out_total",
			Help: "Envelopes written to clients."}),
		errorsSent: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: metricsNamespace, Name: "protocol_errors_total",
			Help: "HAIP ERROR envelopes sent to clients, by code."}, []string{"code"}),
		clientErrors: prometheus.NewCounter(prometheus.CounterOpts{Namespace: metricsNamespace, Name: "client_errors_total",
			Help: "HAIP ERROR envelopes received from clients."}),
		appendDur: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: metricsNamespace, Name: "append_duration_seconds",
			Help: "Time to store one client envelope in its session log.", Buckets: prometheus.ExponentialBuckets(50e-6, 2, 14)}),
		catchups: prometheus.NewCounter(prometheus.CounterOpts{Namespace: metricsNamespace, Name: "catchup_reads_total",
			Help: "Batched reads from JetStream by connections catching up."}),
		flowViolations: prometheus.NewCounter(prometheus.CounterOpts{Namespace: metricsNamespace, Name: "flow_violations_total",
			Help: "Client messages dropped for exceeding the credit the edge granted (FLOW_CONTROL_VIOLATION)."}),
		grantsDeferred: prometheus.NewCounter(prometheus.CounterOpts{Namespace: metricsNamespace, Name: "credit_grants_deferred_total",
			Help: "Client credit top-ups held back because the fabric was under back-pressure."}),
		creditWaits: prometheus.NewCounter(prometheus.CounterOpts{Namespace: metricsNamespace, Name: "credit_waits_total",
			Help: "Times delivery to a client stopped for want of the client's credit, or a paused channel."}),
		queueDepth: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: metricsNamespace, Name: "work_queue_depth",
			Help: "Messages in the run and tool work queues, as last sampled (back-pressure input)."}),
		paused: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: metricsNamespace, Name: "paused_channels",
			Help: "Channels clients have paused (PAUSE_CHANNEL), over all connections."}),
		runsRefused: prometheus.NewCounter(prometheus.CounterOpts{Namespace: metricsNamespace, Name: "runs_refused_total",
			Help: "Runs refused because the session had as many running as allowed (RUN_LIMIT_EXCEEDED)."}),
		resyncs: prometheus.NewCounter(prometheus.CounterOpts{Namespace: metricsNamespace, Name: "nats_resyncs_total",
			Help: "NATS reconnections after which every live connection re-read the log (live messages may have been missed meanwhile)."}),
		ctrlWaits: prometheus.NewCounter(prometheus.CounterOpts{Namespace: metricsNamespace, Name: "control_queue_waits_total",
			Help: "Times a connection's reader waited for its writer to answer earlier requests before reading on (a client sending faster than it reads)."}),
		limited: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: metricsNamespace, Name: "user_limit_refusals_total",
			Help: "Requests refused because their user reached a per-user limit, by limit."}, []string{"limit"}),
		replayBytes: prometheus.NewCounter(prometheus.CounterOpts{Namespace: metricsNamespace, Name: "replay_bytes_total",
			Help: "Bytes of log messages resent to clients for REPLAY_REQUEST."}),
	}
	for _, c := range []prometheus.Collector{m.active, m.httpConns, m.accepted, m.refused, m.disconnects, m.msgsIn, m.msgsOut, m.errorsSent, m.clientErrors, m.appendDur, m.catchups,
		m.flowViolations, m.grantsDeferred, m.creditWaits, m.queueDepth, m.paused, m.runsRefused, m.resyncs,
		m.ctrlWaits, m.limited, m.replayBytes} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	// Series exist from the start (at 0), so dashboards and rate() see
	// them before the first connection.
	for _, t := range []string{"websocket", "sse", "stream"} {
		m.active.WithLabelValues(t)
		m.accepted.WithLabelValues(t)
	}
	m.refused.WithLabelValues(transportTCP, reasonMaxHTTPConnections)
	return m, nil
}
