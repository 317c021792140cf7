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
//!
//! Every instance, from the moment its start is decided until it is gone,
//! holds a [`Seat`]: the count of seats and the queue's hand-off are checked
//! under one lock, so a request is never left in a queue that no instance
//! will read (the last idle instance stopping as a request arrives wakes the
//! group). A worker task that panics or vanishes hands its seat to a
//! replacement and is logged and counted ([`Worker`]'s drop guard).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use crate::pool::accounting::Accounting;
use crate::pool::exchange::{self, Job};
use crate::sandbox::gone::Gone;
use crate::sandbox::instance::{Instance, StartError};
use crate::sandbox::prepared::{Entry, Prepared};
use crate::spec::guest::GuestSpec;
use crate::spec::limits::{Isolation, Reload};

/// This module's log target: its name before the folders, so log lines
/// and `WASGI_LOG` filters read as they did.
const LOG_TARGET: &str = "wasgi::group";

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
    /// Seats taken: instances serving, starting, or a replacement on its way.
    /// Locked around every change and around `submit`'s hand-off to the
    /// queue, so the two cannot interleave (see [`Seat`]).
    seats: Mutex<usize>,
    /// Worker tasks that panicked or were dropped without stopping properly.
    lost_workers: AtomicU64,
    /// Workers lost since one last served a request: a worker that dies at
    /// once, again and again, backs off like a failed start.
    lost_in_a_row: AtomicU64,
    /// A test-only fault (WASGI_TEST_PANIC_WORKER_AFTER): see [`Worker::run`].
    panic_after: Option<u64>,
    /// What its instances are doing and what it has used.
    pub accounting: Arc<Accounting>,
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
            seats: Mutex::new(0),
            lost_workers: AtomicU64::new(0),
            lost_in_a_row: AtomicU64::new(0),
            panic_after: std::env::var("WASGI_TEST_PANIC_WORKER_AFTER").ok().and_then(|n| n.parse().ok()),
            accounting: Arc::default(),
        });
        let instances = group.start_generation().await?;
        let seats = group.take_seats(instances.len());
        let memory = instances.iter().map(Instance::memory_bytes).max().unwrap_or(0);
        let transport = instances.first().map_or("", |i| i.transport.as_str());
        tracing::info!(
            target: LOG_TARGET,
            group = %group.name,
            "{size} instance(s) ready; frames over {transport}; linear memory {:.1} MiB each",
            memory as f64 / (1 << 20) as f64
        );
        for (instance, seat) in instances.into_iter().zip(seats) {
            group.spawn_worker(instance, 0, seat);
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
            tracing::warn!(target: LOG_TARGET, group = %self.name, "isolation = \"request\" without a snapshot: every request imports the app anew (snapshots need interpreter cpython-3.13 and snapshot = true)");
        }
        // One task per instance, so they import the app in parallel.
        let starts: Vec<_> = (0..self.size)
            .map(|_| {
                let (group, boot) = (self.clone(), boot.clone());
                tokio::spawn(async move {
                    let id = group.next_instance.fetch_add(1, Ordering::Relaxed);
                    let _starting = group.accounting.starting();
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
                // Seats first, so the old generation retiring never leaves
                // the group at none; the bump is atomic, so two reloads at
                // once (SIGHUP and a changed file) leave one generation.
                let seats = self.take_seats(instances.len());
                let mut next = 0;
                self.generation.send_modify(|generation| {
                    *generation += 1;
                    next = *generation;
                });
                for (instance, seat) in instances.into_iter().zip(seats) {
                    self.spawn_worker(instance, next, seat);
                }
                tracing::info!(target: LOG_TARGET, group = %self.name, "reloaded: {} new instance(s) in {:.2}s; the old ones finish their requests and stop", self.size, started.elapsed().as_secs_f64());
            }
            Err(e) => tracing::error!(target: LOG_TARGET, group = %self.name, "the changed app does not start, so the running instances keep serving the old code:\n{e}"),
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
        let wake = {
            let mut seats = self.lock_seats();
            self.queue.try_send(job).map_err(|e| e.into_inner())?;
            if *seats > 0 {
                // A seated instance reads the queue, or its seat's drop
                // (which takes this lock) sees the request and wakes us.
                return Ok(());
            }
            *seats += self.size;
            self.size
        };
        self.wake(self.seats_taken(wake));
        Ok(())
    }

    /// Starts the instances of a group that went idle, on `seats` already
    /// counted (so that requests arriving meanwhile do not wake it twice).
    fn wake(self: &Arc<Self>, mut seats: Vec<Seat>) {
        let group = self.clone();
        spawn_if_running(async move {
            tracing::info!(target: LOG_TARGET, group = %group.name, "a request arrived for an idle group: starting {} instance(s)", group.size);
            let generation = *group.generation.borrow();
            match group.start_generation().await {
                Ok(instances) => {
                    for (instance, seat) in instances.into_iter().zip(seats) {
                        group.spawn_worker(instance, generation, seat);
                    }
                }
                Err(e) => {
                    tracing::error!(target: LOG_TARGET, group = %group.name, "the app could not start again: {e}");
                    // One seat goes on to the replacement loop, which backs off.
                    let kept = seats.pop().expect("a group has at least one instance");
                    drop(seats);
                    group.replace(kept);
                }
            }
        });
    }

    /// Wakes the group if requests wait and no instance is seated to read
    /// them (the last one stopped as they arrived).
    fn wake_if_stranded(self: &Arc<Self>) {
        let wake = {
            let mut seats = self.lock_seats();
            if *seats > 0 || self.jobs.is_empty() {
                return;
            }
            *seats += self.size;
            self.size
        };
        self.wake(self.seats_taken(wake));
    }

    /// Counts `n` more seats.
    fn take_seats(self: &Arc<Self>, n: usize) -> Vec<Seat> {
        *self.lock_seats() += n;
        self.seats_taken(n)
    }

    /// The `n` seats just counted under the lock.
    fn seats_taken(self: &Arc<Self>, n: usize) -> Vec<Seat> {
        (0..n).map(|_| Seat(self.clone())).collect()
    }

    fn lock_seats(&self) -> MutexGuard<'_, usize> {
        // The count is a plain integer, right after any panic too.
        self.seats.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Worker tasks lost (panicked or dropped) since the group started.
    pub fn lost_workers(&self) -> u64 {
        self.lost_workers.load(Ordering::Relaxed)
    }

    /// True while instances fail to start (the replacement loop is backing
    /// off): the readiness check reports the group as down.
    pub fn failing(&self) -> bool {
        self.failed_starts.load(Ordering::Relaxed) > 0
    }

    /// The app it runs, as the metrics label it: the script's file name
    /// (its name without the configured group's prefix).
    pub fn app(&self) -> &str {
        self.name.strip_prefix(self.spec.group.as_str()).and_then(|rest| rest.strip_prefix(':')).unwrap_or(&self.name)
    }

    /// The instances it is configured to run.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Requests waiting for an instance.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// Runs `instance` in a task of its own until it stops, in `seat`.
    fn spawn_worker(self: &Arc<Self>, instance: Instance, generation: u64, seat: Seat) {
        self.accounting.joined(&instance);
        let worker = Worker { group: self.clone(), instance: instance.io.id, seat: Some(seat) };
        spawn_if_running(worker.run(instance, generation));
    }

    /// What an instance of the code as it is now starts from: the app's
    /// snapshot (built again if its files changed), or the interpreter.
    async fn boot(&self) -> Result<Prepared, StartError> {
        Ok(crate::sandbox::snapshot::prepare(&self.pre, &self.spec).await?.unwrap_or_else(|| self.pre.clone()))
    }

    /// An instance of the code as it is now, as a restarted mod_wsgi daemon
    /// process would load it.
    async fn fresh_instance(&self, id: u64) -> Result<Instance, StartError> {
        let _starting = self.accounting.starting();
        Instance::start(&self.boot().await?, &self.spec, id).await
    }

    /// Starts a replacement for a lost instance in its `seat`, backing off
    /// after failed starts and lost workers.
    fn replace(self: &Arc<Self>, seat: Seat) {
        let group = self.clone();
        spawn_if_running(async move {
            loop {
                let failed = group.failed_starts.load(Ordering::Relaxed);
                let lost = group.lost_in_a_row.load(Ordering::Relaxed);
                let failures = failed + lost.saturating_sub(1);
                if failures > 0 {
                    // 0.2 s, 0.4 s, 0.8 s … capped at 30 s.
                    let delay = Duration::from_millis(100u64.saturating_mul(1 << failures.min(9))).min(Duration::from_secs(30));
                    let why = match lost {
                        0 => format!("{failed} failed starts in a row"),
                        _ => format!("{failed} failed starts and {lost} lost workers in a row"),
                    };
                    tracing::warn!(target: LOG_TARGET, group = %group.name, "waiting {:.1}s before starting an instance ({why})", delay.as_secs_f64());
                    tokio::time::sleep(delay).await;
                }
                let id = group.next_instance.fetch_add(1, Ordering::Relaxed);
                match group.fresh_instance(id).await {
                    Ok(instance) => {
                        group.failed_starts.store(0, Ordering::Relaxed);
                        tracing::info!(target: LOG_TARGET, group = %group.name, instance = id, "replacement instance ready");
                        let generation = *group.generation.borrow();
                        group.spawn_worker(instance, generation, seat);
                        return;
                    }
                    Err(e) => {
                        group.failed_starts.fetch_add(1, Ordering::Relaxed);
                        tracing::error!(target: LOG_TARGET, group = %group.name, instance = id, "replacement instance failed to start: {e}");
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

/// One instance's place among the group's `seats`, held from the moment its
/// start is decided until it is gone (by the start, then its worker, or by
/// the replacement loop). Dropping the last seat while requests wait starts
/// the group again: the seat count and the queue are looked at under the
/// lock `submit` holds, so a request that arrives as the last idle instance
/// stops either finds a seat taken (and that seat's drop sees the request)
/// or finds none and wakes the group itself.
struct Seat(Arc<Group>);

impl Drop for Seat {
    fn drop(&mut self) {
        let group = &self.0;
        let stranded = {
            let mut seats = group.lock_seats();
            *seats -= 1;
            *seats == 0 && !group.jobs.is_empty()
        };
        if stranded {
            // Woken from a task, not from here: a runtime that is shutting
            // down drops it unrun, where a wake's seats, dropped unrun too,
            // would come back here.
            let group = group.clone();
            spawn_if_running(async move { group.wake_if_stranded() });
        }
    }
}

/// `tokio::spawn`, except where no runtime is left (a drop as the process
/// stops): a runtime shutting down drops what is spawned, unrun.
fn spawn_if_running(task: impl std::future::Future<Output = ()> + Send + 'static) {
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        runtime.spawn(task);
    }
}

/// How a worker's loop ended.
enum End {
    /// For good: idle, retired by a reload, or its group retired.
    Stop,
    /// Its instance is gone or used up: a replacement takes the seat.
    Replace,
}

/// An instance's task. Its drop is the guard against a worker lost without
/// ending properly (a panic in the host, or the task dropped): the seat is
/// still held then, and goes to a replacement, with an error in the log that
/// names the instance and a count.
struct Worker {
    group: Arc<Group>,
    /// The instance being served (a new one after each request under
    /// request isolation), for the log.
    instance: u64,
    /// Taken when the loop ends properly.
    seat: Option<Seat>,
}

impl Drop for Worker {
    fn drop(&mut self) {
        let Some(seat) = self.seat.take() else { return };
        let how = if std::thread::panicking() { "panicked" } else { "was dropped while serving" };
        let (group, instance) = (self.group.clone(), self.instance);
        // In a task rather than here: a runtime that is shutting down drops
        // its tasks, this one among them, and runs nothing new, so a server
        // that stops logs no lost workers.
        group.accounting.left(instance, Some("worker_lost"));
        spawn_if_running(async move {
            let lost = group.lost_workers.fetch_add(1, Ordering::Relaxed) + 1;
            group.lost_in_a_row.fetch_add(1, Ordering::Relaxed);
            tracing::error!(target: LOG_TARGET, group = %group.name, instance,
                "the worker task of instance {instance} {how} (a bug in wasgi; a request it was serving, if any, failed); starting a replacement ({lost} worker(s) lost in this group so far)");
            group.replace(seat);
        });
    }
}

impl Worker {
    /// Serves requests until the instance stops, then gives up the seat or
    /// hands it to a replacement.
    async fn run(mut self, instance: Instance, generation: u64) {
        let end = self.serve_requests(instance, generation).await;
        let seat = self.seat.take().expect("the seat is held until the loop ends");
        match end {
            End::Stop => drop(seat),
            End::Replace => self.group.replace(seat),
        }
    }

    /// One instance's life: take the next request, serve it, repeat. If the
    /// instance is lost on the way, or has served its maximum_requests, it
    /// asks for a replacement.
    async fn serve_requests(&mut self, mut instance: Instance, generation: u64) -> End {
        let group = self.group.clone();
        let kind = Kind::of(&group.spec);
        let mut current = group.generation.subscribe();
        loop {
            if *current.borrow_and_update() != generation {
                tracing::debug!(target: LOG_TARGET, group = %group.name, instance = instance.io.id, "retired by a reload");
                group.accounting.left(instance.io.id, Some("reload"));
                return End::Stop;
            }
            // A test-only fault, the one way the tests have to make a worker
            // task panic (no guest can: the host answers a misbehaving guest
            // by discarding its instance). Only the environment variable
            // WASGI_TEST_PANIC_WORKER_AFTER=N, read once when the group
            // starts, turns it on: each instance's task panics once it has
            // served N requests, between requests, for Worker's drop guard.
            if group.panic_after.is_some_and(|n| instance.served >= n) {
                panic!("WASGI_TEST_PANIC_WORKER_AFTER: instance {} served {} requests", instance.io.id, instance.served);
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
                    Err(_) => {
                        group.accounting.left(instance.io.id, Some("group_retired"));
                        return End::Stop;
                    }
                },
                _ = idle => {
                    // A request that arrives from here on finds this seat
                    // gone, or is seen by its drop (Seat): it is not stranded.
                    tracing::info!(target: LOG_TARGET, group = %group.name, instance = instance.io.id,
                        "stopped after {}s without a request (inactivity_timeout)", idle_limit.unwrap_or_default().as_secs());
                    group.accounting.left(instance.io.id, Some("inactivity_timeout"));
                    return End::Stop;
                }
            };
            group.accounting.busy(instance.io.id, &job.info);
            if let Err(lost) = exchange::serve(&group.name, &group.spec.limits, &mut instance, job).await {
                tracing::warn!(target: LOG_TARGET, group = %group.name, instance = instance.io.id, "instance discarded ({lost}); starting a replacement");
                let reason = lost.reason();
                if matches!(lost, Gone::CpuLimit(_) | Gone::Deadline(_)) {
                    group.accounting.limit_hit(reason);
                }
                group.accounting.left(instance.io.id, Some(reason));
                return End::Replace;
            }
            group.accounting.idle(instance.io.id);
            group.lost_in_a_row.store(0, Ordering::Relaxed);
            instance = match self.after_request(&kind, instance).await {
                Ok(next) => next,
                Err(end) => return end,
            };
        }
    }

    /// The instance for the next request, as the worker's kind decides, or
    /// how the worker ends.
    async fn after_request(&mut self, kind: &Kind, instance: Instance) -> Result<Instance, End> {
        let group = &self.group;
        match kind {
            Kind::PerRequest => {
                group.accounting.left(instance.io.id, None);
                drop(instance);
                let id = group.next_instance.fetch_add(1, Ordering::Relaxed);
                match group.fresh_instance(id).await {
                    Ok(fresh) => {
                        self.instance = id;
                        group.accounting.joined(&fresh);
                        Ok(fresh)
                    }
                    Err(e) => {
                        tracing::error!(target: LOG_TARGET, group = %group.name, instance = id, "a fresh instance failed to start: {e}");
                        Err(End::Replace)
                    }
                }
            }
            Kind::LongLived { recycle_after } => {
                if recycle_after.is_some_and(|limit| instance.served >= limit) {
                    tracing::info!(target: LOG_TARGET, group = %group.name, instance = instance.io.id, "recycling after {} requests (maximum_requests)", instance.served);
                    group.accounting.left(instance.io.id, Some("maximum_requests"));
                    return Err(End::Replace);
                }
                Ok(instance)
            }
        }
    }
}

/// The kinds of worker, one per isolation mode: what becomes of an instance
/// once it has served a request. Everything else (the queue, reloads,
/// inactivity, replacement) is the same for both.
enum Kind {
    /// `isolation = "instance"`, as under mod_wsgi: the instance serves
    /// request after request, until about `maximum_requests` of them.
    LongLived { recycle_after: Option<u64> },
    /// `isolation = "request"`: the next request gets an instance nothing
    /// has run in yet, started from the group's snapshot.
    PerRequest,
}

impl Kind {
    fn of(spec: &GuestSpec) -> Kind {
        match spec.isolation {
            Isolation::Instance => Kind::LongLived { recycle_after: spec.limits.maximum_requests.map(with_jitter) },
            Isolation::Request => Kind::PerRequest,
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
            tracing::info!(target: LOG_TARGET, group = %group.name, "{} changed; starting new instances", spec.script.display());
            last = now;
            group.reload().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};
    use std::sync::Arc;
    use std::time::{Duration, SystemTime};

    use super::{fingerprint, with_jitter, Kind};
    use crate::spec::guest::{GuestSpec, HostFacts};
    use crate::spec::interpreter::Choice;
    use crate::spec::limits::{Isolation, Limits, Reload};

    fn spec(script: &Path, reload: Reload, isolation: Isolation, maximum_requests: Option<u64>) -> GuestSpec {
        GuestSpec {
            name: Arc::from("app"),
            script: script.to_owned(),
            callable: "application".into(),
            python_path: Vec::new(),
            grants: Vec::new(),
            home: None,
            env: Vec::new(),
            group: "app".into(),
            policies: Vec::new(),
            memory_limit: 256 << 20,
            limits: Limits { maximum_requests, ..Limits::default() },
            reload,
            restrict_stdout: false,
            snapshot: false,
            isolation,
            warmup: Vec::new(),
            interpreter: Choice::Pinned,
            extensions: Vec::new(),
            host_facts: HostFacts { user: "wasgi".into(), group: "wasgi".into(), hostname: "localhost".into() },
            network: Default::default(),
        }
    }

    /// A scratch app directory, removed when dropped.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(label: &str) -> Scratch {
            let dir = std::env::temp_dir().join(format!("wasgi-group-{label}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(dir.join("pkg/__pycache__")).unwrap();
            std::fs::write(dir.join("app.wsgi"), "application = None\n").unwrap();
            std::fs::write(dir.join("pkg/views.py"), "x = 1\n").unwrap();
            Scratch(dir)
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// Sets `path`'s modification time `secs` into the future, so that a
    /// change is seen whatever the file system's time resolution.
    fn touch(path: &Path, secs: u64) {
        let file = std::fs::File::options().write(true).open(path).unwrap();
        file.set_modified(SystemTime::now() + Duration::from_secs(secs)).unwrap();
    }

    #[test]
    fn recycling_is_spread_over_ten_per_cent_above_maximum_requests() {
        for maximum in [1, 9, 10, 100, 1000] {
            for _ in 0..200 {
                let n = with_jitter(maximum);
                assert!((maximum..=maximum + maximum / 10).contains(&n), "{maximum} -> {n}");
            }
        }
        let seen: std::collections::HashSet<u64> = (0..200).map(|_| with_jitter(1000)).collect();
        assert!(seen.len() > 10, "instances started together do not all recycle at once: {seen:?}");
    }

    #[test]
    fn each_isolation_mode_is_its_kind_of_worker() {
        let script = Path::new("/nonexistent/app.wsgi");
        assert!(matches!(Kind::of(&spec(script, Reload::Off, Isolation::Request, Some(5))), Kind::PerRequest));
        assert!(matches!(Kind::of(&spec(script, Reload::Off, Isolation::Instance, None)), Kind::LongLived { recycle_after: None }));
        match Kind::of(&spec(script, Reload::Off, Isolation::Instance, Some(100))) {
            Kind::LongLived { recycle_after: Some(n) } => assert!((100..=110).contains(&n), "{n}"),
            _ => panic!("maximum_requests gives a long-lived worker that recycles"),
        }
    }

    #[test]
    fn reload_on_change_sees_the_script_or_the_tree_and_never_pycache() {
        let scratch = Scratch::new("fingerprint");
        let script = scratch.0.join("app.wsgi");
        let (script_only, tree) = (spec(&script, Reload::Script, Isolation::Instance, None), spec(&script, Reload::Tree, Isolation::Instance, None));
        let (a, b) = (fingerprint(&script_only).unwrap(), fingerprint(&tree).unwrap());

        // A module under the script's directory: the tree sees it, the script alone does not.
        touch(&scratch.0.join("pkg/views.py"), 10);
        assert_eq!(fingerprint(&script_only), Some(a));
        let b2 = fingerprint(&tree).unwrap();
        assert_ne!(b2, b);

        // Bytecode the guest writes is not a change of the app.
        std::fs::write(scratch.0.join("pkg/__pycache__/views.cpython-313.pyc"), b"bytecode").unwrap();
        touch(&scratch.0.join("pkg/__pycache__/views.cpython-313.pyc"), 20);
        assert_eq!(fingerprint(&tree), Some(b2));

        // The script itself: both see it, also a same-second edit that changes its size.
        std::fs::write(&script, "application = None  # edited\n").unwrap();
        touch(&script, 10);
        assert_ne!(fingerprint(&script_only), Some(a));
        assert_ne!(fingerprint(&tree), Some(b2));

        // A script that is gone has no fingerprint (the watcher then waits).
        assert_eq!(fingerprint(&spec(&scratch.0.join("gone.wsgi"), Reload::Script, Isolation::Instance, None)), None);
    }
}
