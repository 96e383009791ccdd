//! CPU-heavy work off the async workers: parsing and validating a manifest, compiling Rego,
//! generating keys. Each job runs on a thread of its own (with a deep stack, for recursive
//! parsers), at most a few at once, under a deadline; `/health` and activations never wait for
//! it.
//!
//! A job that overruns its deadline is answered with an error at once; its thread finishes in
//! the background and holds its slot until then, so runaway jobs cannot pile up. Work that can
//! check the deadline itself (key generation) is handed it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, oneshot};

/// The stack of a heavy job's thread.
const STACK_BYTES: usize = 32 << 20;

/// Why a heavy job did not return a value.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HeavyError {
    /// Every slot stayed taken until the deadline.
    #[error("the coordinator is busy with other {what} work: retry later")]
    Busy {
        /// The job.
        what: &'static str,
    },
    /// The job ran past its deadline.
    #[error("{what} took longer than {seconds} s and was abandoned")]
    Deadline {
        /// The job.
        what: &'static str,
        /// The deadline, in seconds.
        seconds: u64,
    },
    /// The job's thread could not start, or it panicked.
    #[error("{what} failed inside the coordinator")]
    Failed {
        /// The job.
        what: &'static str,
    },
}

/// A bounded set of threads for heavy jobs.
#[derive(Debug)]
pub(crate) struct Heavy {
    slots: Arc<Semaphore>,
    deadline: Duration,
}

impl Heavy {
    /// At most `slots` jobs at once, each answered within `deadline` of being asked for.
    pub(crate) fn new(slots: usize, deadline: Duration) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(slots.max(1))),
            deadline,
        }
    }

    /// Run `work` (given its deadline) on a heavy thread and wait for it, no longer than the
    /// deadline.
    pub(crate) async fn run<T, F>(&self, what: &'static str, work: F) -> Result<T, HeavyError>
    where
        T: Send + 'static,
        F: FnOnce(Instant) -> T + Send + 'static,
    {
        let deadline = Instant::now() + self.deadline;
        let slot =
            tokio::time::timeout_at(deadline.into(), Arc::clone(&self.slots).acquire_owned())
                .await
                .map_err(|_| HeavyError::Busy { what })?
                .map_err(|_| HeavyError::Failed { what })?;
        let (reply, answer) = oneshot::channel();
        std::thread::Builder::new()
            .name(format!("heavy {what}"))
            .stack_size(STACK_BYTES)
            .spawn(move || {
                let _slot = slot;
                let _ = reply.send(work(deadline));
            })
            .map_err(|_| HeavyError::Failed { what })?;
        match tokio::time::timeout_at(deadline.into(), answer).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(_)) => Err(HeavyError::Failed { what }),
            Err(_) => Err(HeavyError::Deadline {
                what,
                seconds: self.deadline.as_secs(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use super::*;

    #[tokio::test]
    async fn a_job_past_its_deadline_is_abandoned_and_keeps_its_slot_until_it_ends() {
        let heavy = Heavy::new(1, Duration::from_millis(200));
        let started = Instant::now();
        let slow = heavy
            .run("slow", |_| std::thread::sleep(Duration::from_millis(600)))
            .await;
        assert!(matches!(slow, Err(HeavyError::Deadline { .. })), "{slow:?}");
        assert!(started.elapsed() < Duration::from_millis(500));
        // The slow job still holds the only slot.
        let next = heavy.run("next", |_| 1).await;
        assert!(matches!(next, Err(HeavyError::Busy { .. })), "{next:?}");
        std::thread::sleep(Duration::from_millis(500));
        assert_eq!(heavy.run("after", |_| 2).await.unwrap(), 2);
    }

    #[tokio::test]
    async fn a_panicking_job_is_a_failure_not_a_crash() {
        let heavy = Heavy::new(1, Duration::from_secs(5));
        let failed = heavy.run("boom", |_| -> u8 { panic!("boom") }).await;
        assert!(
            matches!(failed, Err(HeavyError::Failed { .. })),
            "{failed:?}"
        );
        assert_eq!(heavy.run("after", |_| 3).await.unwrap(), 3);
    }
}
