//! /metrics: what the server has done and what each group uses, in the
//! Prometheus (OpenMetrics) text format, through prometheus-client.
//!
//! Two kinds of series. Per request, counted as each response ends:
//! requests by group, app and status class, durations, time waited in the
//! queue, request and response bytes. Per group, read from its account at
//! each scrape: instances busy, idle and starting, the queue, instance ends
//! by reason, limits hit, CPU time in wasm, linear memory (current and
//! peak), and outbound connections and bytes where granted.

use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::http::access_log::AccessRecord;
use crate::pool::accounting::GroupUsage;

type Labels = Vec<(&'static str, String)>;

/// The label the server's own answers (no app mounted, a refusal before
/// routing) carry for their group.
pub const NO_GROUP: &str = "(server)";

fn seconds_histogram() -> Histogram {
    // 1 ms to about 33 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

/// The per-request series.
pub struct Metrics {
    registry: Registry,
    requests: Family<Labels, Counter>,
    duration: Family<Labels, Histogram, fn() -> Histogram>,
    queue_wait: Family<Labels, Histogram, fn() -> Histogram>,
    request_bytes: Family<Labels, Counter>,
    response_bytes: Family<Labels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let requests = Family::<Labels, Counter>::default();
        let duration = Family::<Labels, Histogram, fn() -> Histogram>::new_with_constructor(seconds_histogram as fn() -> Histogram);
        let queue_wait = Family::<Labels, Histogram, fn() -> Histogram>::new_with_constructor(seconds_histogram as fn() -> Histogram);
        let request_bytes = Family::<Labels, Counter>::default();
        let response_bytes = Family::<Labels, Counter>::default();
        registry.register("wasgi_requests", "Responses, by group, app (its script) and status class", requests.clone());
        registry.register("wasgi_request_duration_seconds", "Time from a request's arrival to its response's last byte", duration.clone());
        registry.register("wasgi_queue_wait_seconds", "Time a request waited for a free instance", queue_wait.clone());
        registry.register("wasgi_request_body_bytes", "Request body bytes read by apps", request_bytes.clone());
        registry.register("wasgi_response_body_bytes", "Response body bytes sent", response_bytes.clone());
        Metrics { registry, requests, duration, queue_wait, request_bytes, response_bytes }
    }

    /// Counts a response that has ended.
    pub fn record(&self, r: &AccessRecord, queue_wait: Option<Duration>) {
        let group = r.group.clone().unwrap_or_else(|| NO_GROUP.to_owned());
        let class = match r.status {
            100..=599 => format!("{}xx", r.status / 100),
            _ => "other".to_owned(),
        };
        let app = r.app.clone().unwrap_or_default();
        self.requests.get_or_create(&vec![("group", group.clone()), ("app", app), ("status", class)]).inc();
        let by_group = vec![("group", group), ("app", r.app.clone().unwrap_or_default())];
        self.duration.get_or_create(&by_group).observe(r.duration.as_secs_f64());
        if let Some(wait) = queue_wait {
            self.queue_wait.get_or_create(&by_group).observe(wait.as_secs_f64());
        }
        self.request_bytes.get_or_create(&by_group).inc_by(r.received);
        self.response_bytes.get_or_create(&by_group).inc_by(r.bytes);
    }

    /// The text a scrape gets: the per-request series, then each group's.
    pub fn encode(&self, groups: Vec<GroupView>) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode_registry(&mut out, &self.registry);
        let mut scrape = Registry::default();
        scrape.register_collector(Box::new(GroupSeries(groups)));
        let _ = prometheus_client::encoding::text::encode_registry(&mut out, &scrape);
        prometheus_client::encoding::text::encode_eof(&mut out).expect("writing to a String");
        out
    }
}

/// What a scrape reads of one group.
#[derive(Debug)]
pub struct GroupView {
    /// The configured group, and the app its pool runs.
    pub name: String,
    pub app: String,
    pub size: usize,
    pub queued: usize,
    pub failing: bool,
    pub usage: GroupUsage,
    /// Outbound connections: open now, made, refused, bytes in, bytes out.
    pub outbound: (u64, u64, u64, u64, u64),
}

#[derive(Debug)]
struct GroupSeries(Vec<GroupView>);

/// One family: its descriptor, then a value per label set.
fn family<M: EncodeMetric>(encoder: &mut DescriptorEncoder, name: &str, help: &str, kind: MetricType, values: Vec<(Labels, M)>) -> Result<(), std::fmt::Error> {
    let mut metric = encoder.encode_descriptor(name, help, None, kind)?;
    for (labels, value) in values {
        value.encode(metric.encode_family(&labels)?)?;
    }
    Ok(())
}

impl Collector for GroupSeries {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let g = |v: &GroupView| vec![("group", v.name.clone()), ("app", v.app.clone())];
        let gauge = |f: &dyn Fn(&GroupView) -> i64| self.0.iter().map(|v| (g(v), ConstGauge::new(f(v)))).collect::<Vec<_>>();
        let counter = |f: &dyn Fn(&GroupView) -> u64| self.0.iter().map(|v| (g(v), ConstCounter::new(f(v)))).collect::<Vec<_>>();

        let mut instances = Vec::new();
        for v in &self.0 {
            let busy = v.usage.instances.iter().filter(|i| i.request.is_some()).count();
            let idle = v.usage.instances.len() - busy;
            for (state, n) in [("busy", busy), ("idle", idle), ("starting", v.usage.starting)] {
                instances.push((vec![("group", v.name.clone()), ("app", v.app.clone()), ("state", state.to_owned())], ConstGauge::new(n as i64)));
            }
        }
        family(&mut e, "wasgi_instances", "Instances by state", MetricType::Gauge, instances)?;
        family(&mut e, "wasgi_instances_configured", "The group's configured instances", MetricType::Gauge, gauge(&|v| v.size as i64))?;
        family(&mut e, "wasgi_queue_depth", "Requests waiting for a free instance", MetricType::Gauge, gauge(&|v| v.queued as i64))?;
        family(&mut e, "wasgi_group_failing", "1 while the group's instances fail to start", MetricType::Gauge, gauge(&|v| i64::from(v.failing)))?;
        let ended = self.0.iter().flat_map(|v| v.usage.ended.iter().map(|(why, n)| (vec![("group", v.name.clone()), ("app", v.app.clone()), ("reason", (*why).to_owned())], ConstCounter::new(*n))));
        family(&mut e, "wasgi_instance_ends", "Instances ended or replaced, by reason", MetricType::Counter, ended.collect())?;
        let limits = self.0.iter().flat_map(|v| v.usage.limits_hit.iter().map(|(limit, n)| (vec![("group", v.name.clone()), ("app", v.app.clone()), ("limit", (*limit).to_owned())], ConstCounter::new(*n))));
        family(&mut e, "wasgi_limit_hits", "Requests or instances that ran into a limit, by limit", MetricType::Counter, limits.collect())?;
        let cpu: Vec<_> = self.0.iter().map(|v| (g(v), ConstCounter::new(v.usage.cpu.as_secs_f64()))).collect();
        family(&mut e, "wasgi_cpu_seconds", "CPU time spent running the group's guests (wasm and their host calls)", MetricType::Counter, cpu)?;
        family(&mut e, "wasgi_memory_bytes", "Linear memory of the group's live instances", MetricType::Gauge, gauge(&|v| v.usage.memory_bytes as i64))?;
        family(&mut e, "wasgi_memory_peak_bytes", "The most linear memory the group's instances have held together", MetricType::Gauge, gauge(&|v| v.usage.memory_peak_bytes as i64))?;
        family(&mut e, "wasgi_requests_served", "Requests the group's instances completed", MetricType::Counter, counter(&|v| v.usage.served))?;
        family(&mut e, "wasgi_outbound_open_connections", "Outbound connections open now", MetricType::Gauge, gauge(&|v| v.outbound.0 as i64))?;
        family(&mut e, "wasgi_outbound_connections", "Outbound connections made", MetricType::Counter, counter(&|v| v.outbound.1))?;
        family(&mut e, "wasgi_outbound_denied", "Outbound connections refused by the grants", MetricType::Counter, counter(&|v| v.outbound.2))?;
        let bytes = self.0.iter().flat_map(|v| {
            [("in", v.outbound.3), ("out", v.outbound.4)].map(|(direction, n)| (vec![("group", v.name.clone()), ("app", v.app.clone()), ("direction", direction.to_owned())], ConstCounter::new(n)))
        });
        family(&mut e, "wasgi_outbound_bytes", "Bytes moved on outbound connections", MetricType::Counter, bytes.collect())?;
        Ok(())
    }
}
