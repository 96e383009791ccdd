//! CPU-heavy work off the async workers: parsing and validating a manifest, compiling and
//! evaluating Rego, generating keys. A pool is a few threads of its own, with deep stacks (the
//! Rego engine recurses), and every job is answered within a deadline; `/health` and
//! activations never wait for it.
//!
//! A job that has not started by its deadline is dropped unrun (the pool is busy); one that
//! overruns it is answered with an error at once, and its thread finishes it in the background.
//! Work that can check the deadline itself (key generation) is handed it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

/// The stack of a pool thread: what the Rego engine needs for a policy at the limits of
/// `kbs::policy` (measured: 32 MiB for the deepest evaluation of a 64 KiB policy).
const STACK_BYTES: usize = 64 << 20;

/// Why a heavy job did not return a value.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HeavyError {
    /// The pool stayed busy with other jobs until the deadline.
    #[error("the coordinator is busy with other {what} work: retry later")]
    Busy {
        /// The job.
        what: &'static str,
    },
    /// The job ran past its deadline.
    #[error("{what} took longer than {millis} ms and was abandoned")]
    Deadline {
        /// The job.
        what: &'static str,
        /// The deadline, in milliseconds.
        millis: u128,
    },
    /// The pool is gone, or the job panicked.
    #[error("{what} failed inside the coordinator")]
    Failed {
        /// The job.
        what: &'static str,
    },
}

type Job = Box<dyn FnOnce() + Send>;

/// A fixed set of threads for heavy jobs.
#[derive(Debug)]
pub(crate) struct Heavy {
    jobs: mpsc::Sender<Job>,
    deadline: Duration,
}

impl Heavy {
    /// `threads` threads named `name`, each job answered within `deadline` of being asked for.
    pub(crate) fn new(name: &str, threads: usize, deadline: Duration) -> std::io::Result<Self> {
        let (jobs, queue) = mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        for _ in 0..threads.max(1) {
            let queue = Arc::clone(&queue);
            std::thread::Builder::new()
                .name(name.to_string())
                .stack_size(STACK_BYTES)
                .spawn(move || {
                    loop {
                        let job = match queue.lock() {
                            Ok(queue) => queue.recv(),
                            Err(_) => return,
                        };
                        match job {
                            Ok(job) => job(),
                            Err(_) => return,
                        }
                    }
                })?;
        }
        Ok(Self { jobs, deadline })
    }

    /// Run `work` (given its deadline) on a pool thread and wait for it, no longer than the
    /// deadline.
    pub(crate) async fn run<T, F>(&self, what: &'static str, work: F) -> Result<T, HeavyError>
    where
        T: Send + 'static,
        F: FnOnce(Instant) -> T + Send + 'static,
    {
        let deadline = Instant::now() + self.deadline;
        let started = Arc::new(AtomicBool::new(false));
        let (reply, answer) = oneshot::channel();
        let job_started = Arc::clone(&started);
        let job: Job = Box::new(move || {
            if Instant::now() >= deadline {
                return;
            }
            job_started.store(true, Ordering::SeqCst);
            // A panic ends the job, not the thread: the reply is dropped and the caller told.
            if let Ok(value) =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work(deadline)))
            {
                let _ = reply.send(value);
            }
        });
        self.jobs
            .send(job)
            .map_err(|_| HeavyError::Failed { what })?;
        match tokio::time::timeout_at(deadline.into(), answer).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(_)) => Err(HeavyError::Failed { what }),
            Err(_) if started.load(Ordering::SeqCst) => Err(HeavyError::Deadline {
                what,
                millis: self.deadline.as_millis(),
            }),
            Err(_) => Err(HeavyError::Busy { what }),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use super::*;

    #[tokio::test]
    async fn a_job_past_its_deadline_is_abandoned_and_a_busy_pool_says_so() {
        let heavy = Heavy::new("test", 1, Duration::from_millis(200)).unwrap();
        let started = Instant::now();
        let slow = heavy
            .run("slow", |_| std::thread::sleep(Duration::from_millis(600)))
            .await;
        assert!(matches!(slow, Err(HeavyError::Deadline { .. })), "{slow:?}");
        assert!(started.elapsed() < Duration::from_millis(500));
        // The slow job still holds the only thread.
        let next = heavy.run("next", |_| 1).await;
        assert!(matches!(next, Err(HeavyError::Busy { .. })), "{next:?}");
        std::thread::sleep(Duration::from_millis(500));
        assert_eq!(heavy.run("after", |_| 2).await.unwrap(), 2);
    }

    #[tokio::test]
    async fn a_panicking_job_is_a_failure_not_a_crash() {
        let heavy = Heavy::new("test", 1, Duration::from_secs(5)).unwrap();
        let failed = heavy.run("boom", |_| -> u8 { panic!("boom") }).await;
        assert!(
            matches!(failed, Err(HeavyError::Failed { .. })),
            "{failed:?}"
        );
        assert_eq!(heavy.run("after", |_| 3).await.unwrap(), 3);
    }

    #[tokio::test]
    async fn jobs_run_on_deep_stacks() {
        fn depth(n: u32) -> u32 {
            let pad = std::hint::black_box([0u8; 1024]);
            if n == 0 {
                u32::from(pad[0])
            } else {
                1 + depth(n - 1)
            }
        }
        // About 20 MiB of stack: far past a tokio worker's 2 MiB.
        let heavy = Heavy::new("test", 1, Duration::from_secs(20)).unwrap();
        assert_eq!(heavy.run("deep", |_| depth(20_000)).await.unwrap(), 20_000);
    }
}
