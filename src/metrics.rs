//! Metric names, described once, and the Prometheus recorder behind `/metrics`.
//!
//! Per-request counters are registered once per route and outcome and kept as handles, so the hot
//! path increments an atomic instead of hashing labels.

use std::sync::{LazyLock, OnceLock};
use std::time::Duration;

use metrics::{
    Counter, Gauge, Histogram, counter, describe_counter, describe_gauge, describe_histogram,
    gauge, histogram,
};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::config::{Mode, Requirement};
use crate::reject::{self, Reject};

/// Requests by route, outcome (`allowed` or a deny code) and mode.
pub const REQUESTS_TOTAL: &str = "countersign_requests_total";
/// Time from request head to response head.
pub const REQUEST_DURATION: &str = "countersign_request_duration_seconds";
/// Time spent in each verification method.
pub const VERIFY_DURATION: &str = "countersign_verify_duration_seconds";
/// Backend failures by kind (`connect`, `timeout`, `protocol`).
pub const UPSTREAM_ERRORS: &str = "countersign_upstream_errors_total";
/// Reloads by what and result.
pub const RELOADS_TOTAL: &str = "countersign_reloads_total";
/// When each kind of state last reloaded successfully.
pub const LAST_RELOAD_SUCCESS: &str = "countersign_last_reload_success_timestamp_seconds";
/// Keys in the registry.
pub const KEYS_LOADED: &str = "countersign_keys_loaded";
/// Expiry of each loaded certificate (and next update of each CRL).
pub const CERT_EXPIRY: &str = "countersign_certificate_expiry_timestamp_seconds";
/// Connections by result (`accepted`, `over_limit`, `handshake_failed`, ...).
pub const CONNECTIONS_TOTAL: &str = "countersign_connections_total";
/// Connections open now.
pub const CONNECTIONS_ACTIVE: &str = "countersign_connections_active";
/// HTTP-level connection errors by kind (`header_timeout`, `headers_too_large`, `malformed`, ...).
pub const CONNECTION_ERRORS: &str = "countersign_connection_errors_total";
/// Checks the Redis replay store could not answer, by `on_error` (`fail_closed`: refused,
/// `fail_open`: forwarded unrecorded).
pub const REPLAY_STORE_ERRORS: &str = "countersign_replay_store_errors_total";
/// Fetches of a remote key registry by result (`changed`, `not_modified`, `unchanged`, `error`).
pub const KEYS_FETCHES: &str = "countersign_keys_fetches_total";
/// When a remote key registry last answered with a usable document (or 304).
pub const KEYS_FETCH_SUCCESS: &str = "countersign_keys_last_fetch_success_timestamp_seconds";

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process-wide recorder once and returns the handle that renders `/metrics`.
pub fn init() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let buckets = [
            0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
            2.5, 5.0, 10.0, 30.0,
        ];
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".to_string()), &buckets)
            .expect("bucket list is non-empty")
            .build_recorder();
        let handle = recorder.handle();
        // Another recorder may already be installed (an embedding program); then ours only renders.
        let _ = metrics::set_global_recorder(recorder);
        describe();
        let upkeep = handle.clone();
        let _ = std::thread::Builder::new()
            .name("metrics-upkeep".to_string())
            .spawn(move || {
                loop {
                    std::thread::sleep(Duration::from_secs(5));
                    upkeep.run_upkeep();
                }
            });
        handle
    })
}

fn describe() {
    describe_counter!(
        REQUESTS_TOTAL,
        "Requests by route, outcome (allowed or the deny code) and mode"
    );
    describe_histogram!(
        REQUEST_DURATION,
        metrics::Unit::Seconds,
        "Time from request head to response head"
    );
    describe_histogram!(
        VERIFY_DURATION,
        metrics::Unit::Seconds,
        "Time spent verifying, by method"
    );
    describe_counter!(UPSTREAM_ERRORS, "Backend failures by kind");
    describe_counter!(RELOADS_TOTAL, "Reloads by what and result");
    describe_gauge!(
        LAST_RELOAD_SUCCESS,
        "Unix time of the last successful reload, by what"
    );
    describe_gauge!(KEYS_LOADED, "Keys in the key registry");
    describe_gauge!(
        CERT_EXPIRY,
        "Unix time each loaded certificate expires (CRLs: next update)"
    );
    describe_counter!(CONNECTIONS_TOTAL, "Connections by result");
    describe_gauge!(CONNECTIONS_ACTIVE, "Connections open now");
    describe_counter!(CONNECTION_ERRORS, "HTTP-level connection errors by kind");
    describe_counter!(
        REPLAY_STORE_ERRORS,
        "Replay checks the Redis store could not answer, by on_error"
    );
    describe_counter!(KEYS_FETCHES, "Fetches of the remote key registry by result");
    describe_gauge!(
        KEYS_FETCH_SUCCESS,
        "Unix time the remote key registry last answered with a usable document or 304"
    );
}

fn mode_index(m: Mode) -> usize {
    match m {
        Mode::Enforce => 0,
        Mode::Report => 1,
    }
}

/// One route's request counters (registered on first use) and duration histogram.
#[derive(Debug)]
pub struct RouteMetrics {
    route: String,
    allowed: [OnceLock<Counter>; 2],
    denied: Box<[[OnceLock<Counter>; 2]; reject::ALL.len()]>,
    duration: Histogram,
}

impl RouteMetrics {
    /// Handles for the route named `route` (`-` for requests matching no route).
    pub fn new(route: &str) -> Self {
        init();
        RouteMetrics {
            route: route.to_string(),
            allowed: Default::default(),
            denied: Box::new(std::array::from_fn(|_| Default::default())),
            duration: histogram!(REQUEST_DURATION, "route" => route.to_string()),
        }
    }

    /// Counts one request: `None` for allowed, or the refusal (real or, in report mode, would-be).
    pub fn count(&self, outcome: Option<Reject>, mode: Mode) {
        let m = mode_index(mode);
        let slot = match outcome {
            None => &self.allowed[m],
            Some(r) => &self.denied[r as usize][m],
        };
        slot.get_or_init(|| {
            counter!(REQUESTS_TOTAL,
                "route" => self.route.clone(),
                "outcome" => outcome.map_or("allowed", Reject::code),
                "mode" => mode.as_str())
        })
        .increment(1);
    }

    /// Records a request's duration.
    pub fn observe(&self, d: Duration) {
        self.duration.record(d.as_secs_f64());
    }
}

/// Verification timings by method.
pub struct VerifyMetrics {
    by_method: [Histogram; 5],
}

impl VerifyMetrics {
    fn new() -> Self {
        init();
        let h = |r: Requirement| histogram!(VERIFY_DURATION, "method" => r.as_str());
        VerifyMetrics {
            by_method: [
                h(Requirement::Mtls),
                h(Requirement::Ip),
                h(Requirement::Signature),
                h(Requirement::Jwt),
                h(Requirement::ApiKey),
            ],
        }
    }

    /// Records time spent on one method.
    pub fn observe(&self, r: Requirement, d: Duration) {
        let i = match r {
            Requirement::Mtls => 0,
            Requirement::Ip => 1,
            Requirement::Signature => 2,
            Requirement::Jwt => 3,
            Requirement::ApiKey => 4,
        };
        self.by_method[i].record(d.as_secs_f64());
    }
}

/// The process's verification timings.
pub static VERIFY: LazyLock<VerifyMetrics> = LazyLock::new(VerifyMetrics::new);

/// Counters for connections and their failures.
pub struct ConnMetrics {
    /// Accepted and handed to TLS/HTTP.
    pub accepted: Counter,
    /// Closed at once because the connection limit was reached.
    pub over_limit: Counter,
    /// TLS handshakes that failed (no/foreign/revoked/expired certificate, bad protocol).
    pub handshake_failed: Counter,
    /// TLS handshakes (or PROXY headers) that did not finish in time.
    pub handshake_timeout: Counter,
    /// Connections without a valid PROXY protocol header where one is required.
    pub proxy_protocol_invalid: Counter,
    /// Open now.
    pub active: Gauge,
    /// Request heads not received in time (slowloris) or idle keep-alive timeouts.
    pub header_timeout: Counter,
    /// Request heads larger than the limit.
    pub headers_too_large: Counter,
    /// Unparseable HTTP.
    pub malformed: Counter,
}

impl ConnMetrics {
    fn new() -> Self {
        init();
        let c = |result: &'static str| counter!(CONNECTIONS_TOTAL, "result" => result);
        let e = |kind: &'static str| counter!(CONNECTION_ERRORS, "kind" => kind);
        ConnMetrics {
            accepted: c("accepted"),
            over_limit: c("over_limit"),
            handshake_failed: c("handshake_failed"),
            handshake_timeout: c("handshake_timeout"),
            proxy_protocol_invalid: c("proxy_protocol_invalid"),
            active: gauge!(CONNECTIONS_ACTIVE),
            header_timeout: e("header_timeout"),
            headers_too_large: e("headers_too_large"),
            malformed: e("malformed"),
        }
    }
}

/// The process's connection counters.
pub static CONN: LazyLock<ConnMetrics> = LazyLock::new(ConnMetrics::new);

/// Counts a backend failure.
pub fn upstream_error(kind: &'static str) {
    counter!(UPSTREAM_ERRORS, "kind" => kind).increment(1);
}

/// Counts a reload attempt of `what` (`config`, `keys`, `tls`, ...).
pub fn reload(what: &'static str, ok: bool) {
    counter!(RELOADS_TOTAL, "what" => what, "result" => if ok { "success" } else { "error" })
        .increment(1);
    if ok {
        gauge!(LAST_RELOAD_SUCCESS, "what" => what).set(crate::sys::unix_now_f64());
    }
}

/// Publishes a certificate's (or CRL's) expiry.
pub fn cert_expiry(name: &str, unix: i64) {
    gauge!(CERT_EXPIRY, "cert" => name.to_string()).set(unix as f64);
}

/// Publishes the number of registry keys.
pub fn keys_loaded(n: usize) {
    gauge!(KEYS_LOADED).set(n as f64);
}

/// Counts a replay check the Redis store could not answer (`on_error`: `fail_closed`, `fail_open`).
pub fn replay_store_error(on_error: &'static str) {
    counter!(REPLAY_STORE_ERRORS, "on_error" => on_error).increment(1);
}

/// Counts a fetch of the remote key registry (`changed`, `not_modified`, `unchanged`, `error`); a
/// usable answer also sets the last-fetch-success gauge.
pub fn keys_fetch(result: &'static str) {
    counter!(KEYS_FETCHES, "result" => result).increment(1);
    if result != "error" {
        gauge!(KEYS_FETCH_SUCCESS).set(crate::sys::unix_now_f64());
    }
}
