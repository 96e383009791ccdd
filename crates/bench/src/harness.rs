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
    /// Median over rounds of (this round's time per op ÷ the paired floor round's), when
    /// measured with [`Harness::paired`]: robust to a shared machine's drift.
    pub(crate) ratio_to_floor: Option<f64>,
    /// How many floor operations that ratio is over.
    pub(crate) floor_ops: f64,
}

impl Measured {
    /// Time per operation in floor operations (drift-free), for comparing two items.
    pub(crate) fn in_floor_ops(&self) -> f64 {
        self.ratio_to_floor.unwrap_or(f64::NAN) * self.floor_ops
    }
}

impl Measured {
    /// The same measurement with its floor worth `floor_ops` units: a measurement paired with
    /// a compound floor (nine signatures, say) is expressed in units of one primitive, so it
    /// compares with measurements paired with another floor.
    pub(crate) fn in_units_of(self, floor_ops: f64) -> Self {
        Self { floor_ops, ..self }
    }

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
            ratio_to_floor: None,
            floor_ops: 1.0,
        })
    }

    /// Measure `op` in rounds that alternate with rounds of `floor` (one primitive operation),
    /// and report the median per-round ratio `op / (floor_ops × floor)`.
    pub(crate) fn paired<T, E: std::fmt::Debug, U, F>(
        &self,
        name: &str,
        mut op: impl FnMut() -> Result<T, E>,
        floor_ops: f64,
        mut floor: impl FnMut() -> Result<U, F>,
    ) -> anyhow::Result<Measured> {
        if let Err(e) = op() {
            anyhow::bail!("{name}: the measured operation fails: {e:?}");
        }
        let iters = self.calibrate(&mut op);
        let floor_iters = self.calibrate(&mut floor);
        let mut times = Vec::with_capacity(self.rounds);
        let mut ratios = Vec::with_capacity(self.rounds);
        for _ in 0..self.rounds {
            let start = Instant::now();
            for _ in 0..iters {
                let _ = black_box(op());
            }
            let per_op = start.elapsed() / iters;
            let start = Instant::now();
            for _ in 0..floor_iters {
                let _ = black_box(floor());
            }
            let per_floor = start.elapsed() / floor_iters;
            times.push(per_op);
            ratios.push(per_op.as_secs_f64() / (floor_ops * per_floor.as_secs_f64().max(1e-12)));
        }
        times.sort();
        ratios.sort_by(f64::total_cmp);
        Ok(Measured {
            name: name.to_string(),
            per_op: times[times.len() / 2],
            ratio_to_floor: Some(ratios[ratios.len() / 2]),
            floor_ops,
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
