//! A process group: a pool of long-lived instances of one app.
//!
//! Requests wait in a bounded queue for a free instance (a fair semaphore
//! whose permits count the idle instances). An instance that trapped, exited
//! or broke the protocol is dropped and replaced in the background; repeated
//! start failures back off instead of storming.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Result;
use tokio::sync::Semaphore;
use wasmtime::InstancePre;

use crate::instance::{GuestSpec, GuestState, Instance, StartError};

pub struct Group {
    pub name: Arc<str>,
    pub spec: Arc<GuestSpec>,
    pre: InstancePre<GuestState>,
    size: usize,
    idle: Mutex<Vec<Instance>>,
    /// One permit per idle instance; tokio's semaphore is FIFO-fair.
    available: Semaphore,
    /// Requests waiting for an instance, bounded by `max_queue`.
    waiting: AtomicUsize,
    max_queue: usize,
    next_instance: AtomicU64,
    /// Consecutive failed starts, for the replacement backoff.
    failed_starts: AtomicU64,
}

/// No instance could be had for a request.
#[derive(Debug, thiserror::Error)]
pub enum Unavailable {
    #[error("the request queue of group {0} is full ({1} waiting)")]
    QueueFull(Arc<str>, usize),
}

impl Group {
    /// Starts `size` instances at once and waits until every one has imported
    /// the app; the first failure is returned (an app that cannot load is a
    /// startup error, not a restart loop).
    pub async fn start(spec: GuestSpec, pre: InstancePre<GuestState>, size: usize, max_queue: usize) -> Result<Arc<Group>, StartError> {
        let spec = Arc::new(spec);
        let group = Arc::new(Group {
            name: spec.name.clone(),
            spec,
            pre,
            size,
            idle: Mutex::new(Vec::with_capacity(size)),
            available: Semaphore::new(0),
            waiting: AtomicUsize::new(0),
            max_queue,
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
        for result in futures::future::join_all(starts).await {
            let instance = result?;
            group.check_in(instance);
        }
        Ok(group)
    }

    pub fn size(&self) -> usize {
        self.size
    }

    /// Waits for a free instance.
    pub async fn check_out(self: &Arc<Self>) -> Result<Lease, Unavailable> {
        let waiting = self.waiting.fetch_add(1, Ordering::AcqRel);
        let _queued = Queued(&self.waiting);
        if waiting >= self.max_queue {
            return Err(Unavailable::QueueFull(self.name.clone(), waiting));
        }
        let permit = self.available.acquire().await.expect("the semaphore is never closed");
        permit.forget();
        let instance = self.idle.lock().unwrap().pop().expect("a permit stands for an idle instance");
        Ok(Lease { group: self.clone(), instance: Some(instance) })
    }

    fn check_in(&self, instance: Instance) {
        self.idle.lock().unwrap().push(instance);
        self.available.add_permits(1);
    }

    /// Starts a replacement for a lost instance, backing off after failures.
    fn replace(self: &Arc<Self>) {
        let group = self.clone();
        tokio::spawn(async move {
            loop {
                let failures = group.failed_starts.load(Ordering::Relaxed);
                if failures > 0 {
                    // 0.1 s, 0.2 s, 0.4 s … capped at 30 s.
                    let delay = Duration::from_millis(100u64.saturating_mul(1 << failures.min(9))).min(Duration::from_secs(30));
                    tracing::warn!(group = %group.name, "waiting {:.1}s before starting an instance ({failures} failed starts in a row)", delay.as_secs_f64());
                    tokio::time::sleep(delay).await;
                }
                let id = group.next_instance.fetch_add(1, Ordering::Relaxed);
                match Instance::start(&group.pre, &group.spec, id).await {
                    Ok(instance) => {
                        group.failed_starts.store(0, Ordering::Relaxed);
                        tracing::info!(group = %group.name, instance = id, "replacement instance ready");
                        group.check_in(instance);
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

struct Queued<'a>(&'a AtomicUsize);

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// An instance borrowed for one request. Give it back with [`Lease::release`]
/// when the exchange ended cleanly; dropped any other way, the instance is
/// discarded (it may be mid-request) and a replacement started.
pub struct Lease {
    group: Arc<Group>,
    instance: Option<Instance>,
}

impl Lease {
    pub fn instance(&mut self) -> &mut Instance {
        self.instance.as_mut().expect("the lease holds its instance until dropped")
    }

    pub fn release(mut self) {
        let mut instance = self.instance.take().expect("released once");
        instance.served += 1;
        instance.set_request(0);
        self.group.check_in(instance);
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(instance) = self.instance.take() {
            tracing::warn!(group = %self.group.name, instance = instance.id, "instance discarded; starting a replacement");
            drop(instance);
            self.group.replace();
        }
    }
}
