//! Prometheus metrics, as plain counters rendered in the text exposition format.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

/// The coordinator's counters.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Activation requests.
    pub activations: AtomicU64,
    /// Successful activations.
    pub activations_ok: AtomicU64,
    /// HTTP requests answered.
    pub requests: AtomicU64,
    /// HTTP requests answered with an error status.
    pub request_errors: AtomicU64,
}

impl Metrics {
    /// The text exposition format.
    pub fn render(&self, state: &api::StatusResponse) -> String {
        let mut out = String::new();
        let mut counter = |name: &str, help: &str, value: &AtomicU64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            let _ = writeln!(out, "{name} {}", value.load(Ordering::Relaxed));
        };
        counter(
            "cloister_activations_total",
            "Activation requests.",
            &self.activations,
        );
        counter(
            "cloister_activations_success_total",
            "Successful activations.",
            &self.activations_ok,
        );
        counter(
            "cloister_http_requests_total",
            "HTTP requests answered.",
            &self.requests,
        );
        counter(
            "cloister_http_request_errors_total",
            "HTTP requests answered with an error.",
            &self.request_errors,
        );
        let ready = u8::from(state.state == api::State::AcceptingWorkloads);
        let _ = writeln!(
            out,
            "# HELP cloister_accepting_workloads Whether a manifest is set.\n# TYPE cloister_accepting_workloads gauge\ncloister_accepting_workloads {ready}"
        );
        let _ = writeln!(
            out,
            "# HELP cloister_simulation Whether the coordinator runs in simulation.\n# TYPE cloister_simulation gauge\ncloister_simulation {}",
            u8::from(state.simulation)
        );
        out
    }
}
