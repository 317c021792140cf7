//! A process group: a pool of long-lived instances of one app.
//!
//! Requests wait in one bounded FIFO queue; each instance is a task that takes
//! the next request as soon as it is free, so a busy group hands work over
//! without waking anyone. An instance that trapped, exited or broke the
//! protocol is dropped and replaced in the background; repeated start
//! failures back off instead of storming.
//!
//! With reload_on_change, a watcher starts a new generation of instances when
//! the script (or any file under its directory) changes; once all of them
//! have imported the new code they take requests from the same queue and the
//! old generation finishes what it holds and stops, so no request fails. New
//! code that does not import leaves the old generation serving.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::instance::{Entry, GuestSpec, Instance, Isolation, Prepared, Reload, StartError};
use crate::request::{self, Job};

pub struct Group {
    pub name: Arc<str>,
    pub spec: Arc<GuestSpec>,
    /// The interpreter, linked.
    pre: Prepared,
    size: usize,
    queue: async_channel::Sender<Job>,
    jobs: async_channel::Receiver<Job>,
    next_instance: AtomicU64,
    /// Consecutive failed starts, for the replacement backoff.
    failed_starts: AtomicU64,
    /// The generation that should be serving; older workers retire.
    generation: tokio::sync::watch::Sender<u64>,
    /// Instances serving (or waiting for) requests.
    live: std::sync::atomic::AtomicUsize,
    /// Set while instances are being started for a group that went idle.
    waking: std::sync::atomic::AtomicBool,
}

impl Group {
    /// Starts `size` instances at once and waits until every one has imported
    /// the app; the first failure is returned (an app that cannot load is a
    /// startup error, not a restart loop).
    pub async fn start(spec: GuestSpec, pre: Prepared, size: usize, max_queue: usize) -> Result<Arc<Group>, StartError> {
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
            generation: tokio::sync::watch::Sender::new(0),
            live: std::sync::atomic::AtomicUsize::new(0),
            waking: std::sync::atomic::AtomicBool::new(false),
        });
        let instances = group.start_generation().await?;
        group.live.fetch_add(instances.len(), Ordering::AcqRel);
        let memory = instances.iter().map(Instance::memory_bytes).max().unwrap_or(0);
        let transport = instances.first().map_or("", |i| i.transport.as_str());
        tracing::info!(
            group = %group.name,
            "{size} instance(s) ready; frames over {transport}; linear memory {:.1} MiB each",
            memory as f64 / (1 << 20) as f64
        );
        for instance in instances {
            group.spawn_worker(instance, 0);
        }
        if group.spec.reload != Reload::Off {
            tokio::spawn(watch_for_changes(Arc::downgrade(&group)));
        }
        Ok(group)
    }

    /// Starts `size` instances at once; all must import the app.
    async fn start_generation(self: &Arc<Self>) -> Result<Vec<Instance>, StartError> {
        let boot = self.boot().await?;
        if boot.entry == Entry::Start && self.spec.isolation == Isolation::Request {
            tracing::warn!(group = %self.name, "isolation = \"request\" without a snapshot: every request imports the app anew (snapshots need interpreter cpython-3.13 and snapshot = true)");
        }
        // One task per instance, so they import the app in parallel.
        let starts: Vec<_> = (0..self.size)
            .map(|_| {
                let (group, boot) = (self.clone(), boot.clone());
                tokio::spawn(async move {
                    let id = group.next_instance.fetch_add(1, Ordering::Relaxed);
                    Instance::start(&boot, &group.spec, id).await
                })
            })
            .collect();
        let mut instances = Vec::with_capacity(starts.len());
        for start in starts {
            match start.await {
                Ok(result) => instances.push(result?),
                Err(e) => return Err(StartError::Crashed(format!("the start task failed: {e}"))),
            }
        }
        Ok(instances)
    }

    /// Replaces every instance with one running the code as it is now.
    pub async fn reload(self: &Arc<Self>) {
        let started = std::time::Instant::now();
        match self.start_generation().await {
            Ok(instances) => {
                let next = *self.generation.borrow() + 1;
                self.live.fetch_add(instances.len(), Ordering::AcqRel);
                for instance in instances {
                    self.spawn_worker(instance, next);
                }
                self.generation.send_replace(next);
                tracing::info!(group = %self.name, "reloaded: {} new instance(s) in {:.2}s; the old ones finish their requests and stop", self.size, started.elapsed().as_secs_f64());
            }
            Err(e) => tracing::error!(group = %self.name, "the changed app does not start, so the running instances keep serving the old code:\n{e}"),
        }
    }

    /// True if this group runs `spec` with the same size and queue.
    pub fn runs(&self, spec: &GuestSpec, size: usize, max_queue: usize) -> bool {
        *self.spec == *spec && self.size == size && self.queue.capacity() == Some(max_queue.max(1))
    }

    /// Takes no new requests; the queued ones are served, then every
    /// instance stops (a group removed by a config reload).
    pub fn retire(&self) {
        self.queue.close();
    }

    /// Queues a request; a full queue gives it back (the caller answers 503).
    /// A group whose instances all went idle starts them again.
    pub fn submit(self: &Arc<Self>, job: Job) -> Result<(), Job> {
        self.queue.try_send(job).map_err(|e| e.into_inner())?;
        if self.live.load(Ordering::Acquire) == 0 && !self.waking.swap(true, Ordering::AcqRel) {
            let group = self.clone();
            group.live.fetch_add(group.size, Ordering::AcqRel);
            tokio::spawn(async move {
                tracing::info!(group = %group.name, "a request arrived for an idle group: starting {} instance(s)", group.size);
                let generation = *group.generation.borrow();
                match group.start_generation().await {
                    Ok(instances) => {
                        for instance in instances {
                            group.spawn_worker(instance, generation);
                        }
                    }
                    Err(e) => {
                        tracing::error!(group = %group.name, "the app could not start again: {e}");
                        group.live.fetch_sub(group.size, Ordering::AcqRel);
                        group.replace();
                    }
                }
                group.waking.store(false, Ordering::Release);
            });
        }
        Ok(())
    }

    /// True while instances fail to start (the replacement loop is backing
    /// off): the readiness check reports the group as down.
    pub fn failing(&self) -> bool {
        self.failed_starts.load(Ordering::Relaxed) > 0
    }

    /// Requests waiting for an instance.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// Runs `instance` until it stops. Its place in `live` must have been
    /// reserved by the caller, before the instance started, so that a
    /// request arriving meanwhile does not wake an idle group twice.
    fn spawn_worker(self: &Arc<Self>, instance: Instance, generation: u64) {
        let group = self.clone();
        tokio::spawn(async move {
            serve_requests(group.clone(), instance, generation).await;
            group.live.fetch_sub(1, Ordering::AcqRel);
        });
    }

    /// What an instance of the code as it is now starts from: the app's
    /// snapshot (built again if its files changed), or the interpreter.
    async fn boot(&self) -> Result<Prepared, StartError> {
        Ok(crate::snapshot::prepare(&self.pre, &self.spec).await?.unwrap_or_else(|| self.pre.clone()))
    }

    /// An instance of the code as it is now, as a restarted mod_wsgi daemon
    /// process would load it.
    async fn fresh_instance(&self, id: u64) -> Result<Instance, StartError> {
        Instance::start(&self.boot().await?, &self.spec, id).await
    }

    /// Starts a replacement for a lost instance, backing off after failures.
    fn replace(self: &Arc<Self>) {
        let group = self.clone();
        group.live.fetch_add(1, Ordering::AcqRel);
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
                match group.fresh_instance(id).await {
                    Ok(instance) => {
                        group.failed_starts.store(0, Ordering::Relaxed);
                        tracing::info!(group = %group.name, instance = id, "replacement instance ready");
                        let generation = *group.generation.borrow();
                        group.spawn_worker(instance, generation);
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
async fn serve_requests(group: Arc<Group>, mut instance: Instance, generation: u64) {
    let recycle_after = group.spec.limits.maximum_requests.map(with_jitter);
    let mut current = group.generation.subscribe();
    loop {
        if *current.borrow_and_update() != generation {
            tracing::debug!(group = %group.name, instance = instance.io.id, "retired by a reload");
            return;
        }
        let idle_limit = group.spec.limits.inactivity_timeout;
        let idle = async {
            match idle_limit {
                Some(limit) => tokio::time::sleep(limit).await,
                None => std::future::pending().await,
            }
        };
        let job = tokio::select! {
            biased;
            _ = current.changed() => continue,
            job = group.jobs.recv() => match job {
                Ok(job) => job,
                Err(_) => return,
            },
            _ = idle => {
                tracing::info!(group = %group.name, instance = instance.io.id,
                    "stopped after {}s without a request (inactivity_timeout)", idle_limit.unwrap_or_default().as_secs());
                return;
            }
        };
        if let Err(lost) = request::serve(&group, &mut instance, job).await {
            tracing::warn!(group = %group.name, instance = instance.io.id, "instance discarded ({lost}); starting a replacement");
            drop(instance);
            group.replace();
            return;
        }
        if group.spec.isolation == Isolation::Request {
            // The next request gets an instance nothing has run in yet.
            drop(instance);
            let id = group.next_instance.fetch_add(1, Ordering::Relaxed);
            match group.fresh_instance(id).await {
                Ok(fresh) => {
                    instance = fresh;
                    continue;
                }
                Err(e) => {
                    tracing::error!(group = %group.name, instance = id, "a fresh instance failed to start: {e}");
                    group.replace();
                    return;
                }
            }
        }
        if recycle_after.is_some_and(|limit| instance.served >= limit) {
            tracing::info!(group = %group.name, instance = instance.io.id, "recycling after {} requests (maximum_requests)", instance.served);
            group.replace();
            return;
        }
    }
}

/// What reload_on_change watches: the newest modification among the files.
fn fingerprint(spec: &GuestSpec) -> Option<(std::time::SystemTime, u64)> {
    let stamp = |path: &std::path::Path| std::fs::metadata(path).ok().map(|m| (m.modified().ok(), m.len()));
    let mut newest: Option<(std::time::SystemTime, u64)> = None;
    let mut note = |path: &std::path::Path| {
        if let Some((Some(modified), len)) = stamp(path) {
            let entry = newest.get_or_insert((modified, 0));
            entry.0 = entry.0.max(modified);
            entry.1 = entry.1.wrapping_add(len);
        }
    };
    note(&spec.script);
    if spec.reload == Reload::Tree {
        let mut stack: Vec<std::path::PathBuf> = spec.script.parent().map(|p| vec![p.to_owned()]).unwrap_or_default();
        let mut seen = 0;
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).into_iter().flatten().filter_map(|e| e.ok()) {
                seen += 1;
                if seen > 20_000 {
                    break;
                }
                let path = entry.path();
                match entry.file_type() {
                    Ok(t) if t.is_dir() && entry.file_name() != "__pycache__" => stack.push(path),
                    Ok(t) if t.is_file() => note(&path),
                    _ => {}
                }
            }
        }
    }
    newest
}

/// Polls the app's files once a second and reloads the group when they change.
async fn watch_for_changes(group: std::sync::Weak<Group>) {
    let Some(spec) = group.upgrade().map(|g| g.spec.clone()) else { return };
    // The walk reads directories a tenant controls (a slow mount, a huge
    // tree): on the blocking pool, never on a thread that serves requests.
    let walk = |spec: Arc<GuestSpec>| async move { tokio::task::spawn_blocking(move || fingerprint(&spec)).await.ok().flatten() };
    let mut last = walk(spec.clone()).await;
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let Some(group) = group.upgrade() else { return };
        let now = walk(spec.clone()).await;
        if now != last {
            tracing::info!(group = %group.name, "{} changed; starting new instances", spec.script.display());
            last = now;
            group.reload().await;
        }
    }
}
