//! Metrics h3fleet emits through the [`metrics`] facade (the application
//! installs the exporter it wants; without one, recording costs almost
//! nothing). Every name is listed here and in the README.

use std::time::Duration;

/// Counter: backend calls, labels `op` (`get`, `put`, `delete`,
/// `get_ech`, `put_ech`, `delete_ech`, `pool_add`, `pool_take`) and `outcome` (`ok`, `error`, `timeout`).
pub const BACKEND_OPS: &str = "h3fleet_backend_ops_total";
/// Histogram (seconds): backend call latency, label `op`.
pub const BACKEND_SECONDS: &str = "h3fleet_backend_op_seconds";
/// Counter: new connections, labels `protocol` (`h3`, `h2`, `http/1.1`),
/// `handshake` (`full`, `resumed`), `ticket_source` (`local`, `backend`,
/// `none`), `early_data` (`accepted`, `rejected`, `not_attempted`) and `ech`
/// (`accepted`, `rejected`, `grease`, `off`).
pub const CONNECTIONS: &str = "h3fleet_connections_total";
/// Counter: ticket takes under single-use ticket reuse, label `outcome`
/// (`local`, `backend`: a ticket was taken; `empty`: none, so a full
/// handshake).
pub const POOL_TAKES: &str = "h3fleet_pool_takes_total";
/// Gauge: 1 while the circuit breaker has the backend detached, else 0.
pub const BREAKER_OPEN: &str = "h3fleet_breaker_open";
/// Counter: times the circuit breaker opened.
pub const BREAKER_TRIPS: &str = "h3fleet_breaker_trips_total";

/// Records one backend call.
pub(crate) fn backend_op(op: &'static str, outcome: &'static str, took: Duration) {
    metrics::counter!(BACKEND_OPS, "op" => op, "outcome" => outcome).increment(1);
    metrics::histogram!(BACKEND_SECONDS, "op" => op).record(took.as_secs_f64());
}

/// What a new connection's handshake did, as metric labels.
pub(crate) struct ConnectionLabels {
    pub(crate) protocol: &'static str,
    pub(crate) resumed: bool,
    pub(crate) ticket_source: &'static str,
    pub(crate) early_data: &'static str,
    pub(crate) ech: &'static str,
}

/// Records one new connection.
pub(crate) fn connection(labels: &ConnectionLabels) {
    metrics::counter!(
        CONNECTIONS,
        "protocol" => labels.protocol,
        "handshake" => if labels.resumed { "resumed" } else { "full" },
        "ticket_source" => labels.ticket_source,
        "early_data" => labels.early_data,
        "ech" => labels.ech,
    )
    .increment(1);
}

/// Records one take from a ticket pool.
pub(crate) fn pool_take(outcome: &'static str) {
    metrics::counter!(POOL_TAKES, "outcome" => outcome).increment(1);
}

/// Records the breaker's state.
pub(crate) fn breaker(open: bool, tripped: bool) {
    metrics::gauge!(BREAKER_OPEN).set(if open { 1.0 } else { 0.0 });
    if tripped {
        metrics::counter!(BREAKER_TRIPS).increment(1);
    }
}
