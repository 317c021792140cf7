//! A process group: a pool of long-lived instances of one app.
//!
//! Requests wait in one bounded FIFO queue; each instance is a task that takes
//! the next request as soon as it is free, so a busy group hands work over
//! without waking anyone. An instance that trapped, exited or broke the
//! protocol is dropped and replaced in the background; repeated start
//! failures back off instead of storming.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use wasmtime::InstancePre;

use crate::instance::{GuestSpec, GuestState, Instance, StartError};
use crate::request::{self, Job};

pub struct Group {
    pub name: Arc<str>,
    pub spec: Arc<GuestSpec>,
    pre: InstancePre<GuestState>,
    size: usize,
    queue: async_channel::Sender<Job>,
    jobs: async_channel::Receiver<Job>,
    next_instance: AtomicU64,
    /// Consecutive failed starts, for the replacement backoff.
    failed_starts: AtomicU64,
}

impl Group {
    /// Starts `size` instances at once and waits until every one has imported
    /// the app; the first failure is returned (an app that cannot load is a
    /// startup error, not a restart loop).
    pub async fn start(spec: GuestSpec, pre: InstancePre<GuestState>, size: usize, max_queue: usize) -> Result<Arc<Group>, StartError> {
        let spec = Arc::new(spec);
        let (queue, jobs) = async_channel::bounded(max_queue.max(1));
        let group = Arc::new(Group {
            name: spec.name.clone(),
            spec,
            pre,
            size,
            queue,
            jobs,
            next_instance: AtomicU64::new(1),
            failed_starts: AtomicU64::new(0),
        });
        let starts = (0..size).map(|_| {
            let group = group.clone();
            async move {
                let id = group.next_instance.fetch_add(1, Ordering::Relaxed);
                Instance::start(&group.pre, &group.spec, id).await
            }
        });
        let mut instances = Vec::with_capacity(size);
        for result in futures::future::join_all(starts).await {
            instances.push(result?);
        }
        let memory = instances.iter().map(Instance::memory_bytes).max().unwrap_or(0);
        tracing::info!(group = %group.name, "{size} instance(s) ready; linear memory {:.1} MiB each", memory as f64 / (1 << 20) as f64);
        for instance in instances {
            group.spawn_worker(instance);
        }
        Ok(group)
    }

    pub fn size(&self) -> usize {
        self.size
    }

    /// Queues a request; a full queue gives it back (the caller answers 503).
    pub fn submit(&self, job: Job) -> Result<(), Job> {
        self.queue.try_send(job).map_err(|e| e.into_inner())
    }

    /// Requests waiting for an instance.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    fn spawn_worker(self: &Arc<Self>, instance: Instance) {
        tokio::spawn(serve_requests(self.clone(), instance));
    }

    /// Starts a replacement for a lost instance, backing off after failures.
    fn replace(self: &Arc<Self>) {
        let group = self.clone();
        tokio::spawn(async move {
            loop {
                let failures = group.failed_starts.load(Ordering::Relaxed);
                if failures > 0 {
                    // 0.2 s, 0.4 s, 0.8 s … capped at 30 s.
                    let delay = Duration::from_millis(100u64.saturating_mul(1 << failures.min(9))).min(Duration::from_secs(30));
                    tracing::warn!(group = %group.name, "waiting {:.1}s before starting an instance ({failures} failed starts in a row)", delay.as_secs_f64());
                    tokio::time::sleep(delay).await;
                }
                let id = group.next_instance.fetch_add(1, Ordering::Relaxed);
                match Instance::start(&group.pre, &group.spec, id).await {
                    Ok(instance) => {
                        group.failed_starts.store(0, Ordering::Relaxed);
                        tracing::info!(group = %group.name, instance = id, "replacement instance ready");
                        group.spawn_worker(instance);
                        return;
                    }
                    Err(e) => {
                        group.failed_starts.fetch_add(1, Ordering::Relaxed);
                        tracing::error!(group = %group.name, instance = id, "replacement instance failed to start: {e}");
                    }
                }
            }
        });
    }
}

/// `maximum` plus up to 10% more, so instances started together do not all
/// recycle at the same moment.
fn with_jitter(maximum: u64) -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let random = std::collections::hash_map::RandomState::new().build_hasher().finish();
    maximum + random % (maximum / 10 + 1)
}

/// One instance's life: take the next request, serve it, repeat. If the
/// instance is lost on the way, or has served its maximum_requests, a
/// replacement is started and this one ends.
async fn serve_requests(group: Arc<Group>, mut instance: Instance) {
    let recycle_after = group.spec.limits.maximum_requests.map(with_jitter);
    while let Ok(job) = group.jobs.recv().await {
        if let Err(lost) = request::serve(&group, &mut instance, job).await {
            tracing::warn!(group = %group.name, instance = instance.io.id, "instance discarded ({lost}); starting a replacement");
            drop(instance);
            group.replace();
            return;
        }
        if recycle_after.is_some_and(|limit| instance.served >= limit) {
            tracing::info!(group = %group.name, instance = instance.io.id, "recycling after {} requests (maximum_requests)", instance.served);
            group.replace();
            return;
        }
    }
}
