//! A group's account: what each of its instances is doing (the board behind
//! `wasgi status`) and what the group has used (CPU time in wasm, linear
//! memory, restarts by reason, limits hit), kept by its workers at each
//! change of state and read by the admin listener. What a hosting platform
//! bills and alerts on.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::pool::exchange::RequestInfo;
use crate::sandbox::instance::Instance;
use crate::sandbox::state::Usage;

/// One live instance, as the board shows it.
struct Seen {
    started: Instant,
    served: u64,
    memory: Arc<AtomicUsize>,
    usage: Arc<Usage>,
    busy: Option<Busy>,
}

struct Busy {
    request: Arc<str>,
    method: String,
    target: String,
    since: Instant,
}

#[derive(Default)]
pub struct Accounting {
    board: Mutex<BTreeMap<u64, Seen>>,
    /// Instances being started (not yet on the board).
    starting: AtomicUsize,
    /// CPU time and refused memory growth of instances no longer on the board.
    gone_cpu_nanos: AtomicU64,
    gone_memory_refused: AtomicU64,
    /// The largest the group's linear memory has been, summed over its
    /// instances (sampled at each request's end and each look).
    memory_peak: AtomicUsize,
    /// Instances replaced or stopped, by why.
    ended: Mutex<BTreeMap<&'static str, u64>>,
    /// Limits requests ran into, by limit.
    limits_hit: Mutex<BTreeMap<&'static str, u64>>,
    served: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Accounting {
    /// An instance start begins; the guard counts it until dropped.
    pub fn starting(self: &Arc<Self>) -> Starting {
        self.starting.fetch_add(1, Ordering::Relaxed);
        Starting(self.clone())
    }

    /// `instance` is ready and waits for requests.
    pub fn joined(&self, instance: &Instance) {
        let seen = Seen { started: Instant::now(), served: 0, memory: instance.memory_watch(), usage: instance.usage.clone(), busy: None };
        lock(&self.board).insert(instance.io.id, seen);
    }

    /// Instance `id` takes a request.
    pub fn busy(&self, id: u64, info: &RequestInfo) {
        if let Some(seen) = lock(&self.board).get_mut(&id) {
            seen.busy = Some(Busy { request: info.id.clone(), method: info.method.to_string(), target: info.target.clone(), since: Instant::now() });
        }
    }

    /// Instance `id` is done with its request.
    pub fn idle(&self, id: u64) {
        let memory: usize = {
            let mut board = lock(&self.board);
            if let Some(seen) = board.get_mut(&id) {
                seen.busy = None;
                seen.served += 1;
            }
            board.values().map(|s| s.memory.load(Ordering::Relaxed)).sum()
        };
        self.served.fetch_add(1, Ordering::Relaxed);
        self.memory_peak.fetch_max(memory, Ordering::Relaxed);
    }

    /// Instance `id` is gone, for `why` (None: an ordinary end, such as a
    /// fresh instance per request); its usage stays in the group's totals.
    pub fn left(&self, id: u64, why: Option<&'static str>) {
        if let Some(seen) = lock(&self.board).remove(&id) {
            self.gone_cpu_nanos.fetch_add(seen.usage.cpu_nanos.load(Ordering::Relaxed), Ordering::Relaxed);
            self.gone_memory_refused.fetch_add(seen.usage.memory_refused.load(Ordering::Relaxed), Ordering::Relaxed);
        }
        if let Some(why) = why {
            *lock(&self.ended).entry(why).or_default() += 1;
        }
    }

    /// A request ran into `limit` (cpu_time_limit, request_timeout,
    /// max_queue, queue_timeout, ...).
    pub fn limit_hit(&self, limit: &'static str) {
        *lock(&self.limits_hit).entry(limit).or_default() += 1;
    }

    /// The account as it is now.
    pub fn snapshot(&self) -> GroupUsage {
        let board = lock(&self.board);
        let now = Instant::now();
        let instances: Vec<InstanceStatus> = board
            .iter()
            .map(|(id, seen)| InstanceStatus {
                id: *id,
                age: now - seen.started,
                served: seen.served,
                memory_bytes: seen.memory.load(Ordering::Relaxed) as u64,
                cpu: Duration::from_nanos(seen.usage.cpu_nanos.load(Ordering::Relaxed)),
                request: seen.busy.as_ref().map(|b| RequestStatus {
                    id: b.request.to_string(),
                    method: b.method.clone(),
                    target: b.target.clone(),
                    running: now - b.since,
                }),
            })
            .collect();
        let live_cpu: u64 = board.values().map(|s| s.usage.cpu_nanos.load(Ordering::Relaxed)).sum();
        let live_refused: u64 = board.values().map(|s| s.usage.memory_refused.load(Ordering::Relaxed)).sum();
        drop(board);
        let memory_bytes: u64 = instances.iter().map(|i| i.memory_bytes).sum();
        self.memory_peak.fetch_max(memory_bytes as usize, Ordering::Relaxed);
        let mut limits_hit: Vec<(&'static str, u64)> = lock(&self.limits_hit).iter().map(|(k, v)| (*k, *v)).collect();
        let refused = self.gone_memory_refused.load(Ordering::Relaxed) + live_refused;
        if refused > 0 {
            limits_hit.push(("memory_limit", refused));
        }
        GroupUsage {
            starting: self.starting.load(Ordering::Relaxed),
            cpu: Duration::from_nanos(self.gone_cpu_nanos.load(Ordering::Relaxed) + live_cpu),
            memory_bytes,
            memory_peak_bytes: self.memory_peak.load(Ordering::Relaxed) as u64,
            ended: lock(&self.ended).iter().map(|(k, v)| (*k, *v)).collect(),
            limits_hit,
            served: self.served.load(Ordering::Relaxed),
            instances,
        }
    }
}

/// Counts an instance as starting until dropped.
pub struct Starting(Arc<Accounting>);

impl Drop for Starting {
    fn drop(&mut self) {
        self.0.starting.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One instance now.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct InstanceStatus {
    pub id: u64,
    #[serde(with = "seconds")]
    pub age: Duration,
    pub served: u64,
    pub memory_bytes: u64,
    #[serde(with = "seconds")]
    pub cpu: Duration,
    /// The request it is serving, if busy.
    pub request: Option<RequestStatus>,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct RequestStatus {
    pub id: String,
    pub method: String,
    pub target: String,
    #[serde(with = "seconds")]
    pub running: Duration,
}

/// A group's account now.
#[derive(Debug, Clone)]
pub struct GroupUsage {
    pub starting: usize,
    pub cpu: Duration,
    pub memory_bytes: u64,
    pub memory_peak_bytes: u64,
    /// Instances ended, by reason.
    pub ended: Vec<(&'static str, u64)>,
    /// Limits hit, by limit.
    pub limits_hit: Vec<(&'static str, u64)>,
    /// Requests completed.
    pub served: u64,
    pub instances: Vec<InstanceStatus>,
}

/// Durations as seconds (a float) in JSON.
mod seconds {
    use std::time::Duration;

    pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let secs: f64 = serde::Deserialize::deserialize(d)?;
        Ok(Duration::from_secs_f64(secs.max(0.0)))
    }
}
