//! A small timing harness: calibrated rounds, median of rounds, nothing clever.
//!
//! Each item runs for rounds of about `ROUND` wall time; the median round's time per operation
//! is reported. Only ratios between items measured in the same run are meaningful on a shared,
//! noisy machine.

use std::hint::black_box;
use std::time::{Duration, Instant};

/// One measured item.
#[derive(Debug, Clone)]
pub(crate) struct Measured {
    /// What was measured.
    pub(crate) name: String,
    /// Median time per operation.
    pub(crate) per_op: Duration,
}

impl Measured {
    /// Microseconds per operation.
    pub(crate) fn micros(&self) -> f64 {
        self.per_op.as_secs_f64() * 1e6
    }
}

/// Timing settings.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Harness {
    /// Rounds per item (the median is reported).
    pub(crate) rounds: usize,
    /// Target duration of one round.
    pub(crate) round: Duration,
}

impl Harness {
    /// Settings from `BENCH_ROUNDS` and `BENCH_ROUND_MS`, defaulting to 7 rounds of 200 ms.
    pub(crate) fn from_env() -> Self {
        let var = |k: &str, d: u64| {
            std::env::var(k)
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(d)
        };
        Self {
            rounds: var("BENCH_ROUNDS", 7).max(1) as usize,
            round: Duration::from_millis(var("BENCH_ROUND_MS", 200)),
        }
    }

    /// Measure `op`, which must succeed every time (a failing operation aborts the bench).
    pub(crate) fn measure<T, E: std::fmt::Debug>(
        &self,
        name: &str,
        mut op: impl FnMut() -> Result<T, E>,
    ) -> anyhow::Result<Measured> {
        if let Err(e) = op() {
            anyhow::bail!("{name}: the measured operation fails: {e:?}");
        }
        let iters = self.calibrate(&mut op);
        let mut rounds = Vec::with_capacity(self.rounds);
        for _ in 0..self.rounds {
            let start = Instant::now();
            for _ in 0..iters {
                let _ = black_box(op());
            }
            rounds.push(start.elapsed() / iters);
        }
        rounds.sort();
        Ok(Measured {
            name: name.to_string(),
            per_op: rounds[rounds.len() / 2],
        })
    }

    fn calibrate<T, E>(&self, op: &mut impl FnMut() -> Result<T, E>) -> u32 {
        let mut iters: u32 = 1;
        loop {
            let start = Instant::now();
            for _ in 0..iters {
                let _ = black_box(op());
            }
            let took = start.elapsed();
            if took >= self.round / 4 || iters >= 1 << 24 {
                let scale = self.round.as_secs_f64() / took.as_secs_f64().max(1e-9);
                return ((f64::from(iters) * scale) as u32).max(1);
            }
            iters = iters.saturating_mul(4);
        }
    }
}
