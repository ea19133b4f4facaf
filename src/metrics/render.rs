//! Sums every shard's [`ShardStats`] and renders the Prometheus text
//! exposition format (version 0.0.4), on the control thread. Stable keys
//! become names through the current snapshot; a series whose gateway, rule
//! or target is gone from it keeps its key as `#<hex>`.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;
use std::time::Duration;

use crate::config::snapshot::{ServiceKind, Snapshot, Target};
use crate::metrics::{Histogram, ShardStats, TargetStats, BUCKETS};

/// What the control thread knows besides the shards' counters.
pub struct Process {
    pub generation: u64,
    pub last_apply: Option<Duration>,
    pub uptime: Duration,
}

/// The `/metrics` body.
pub fn render(shards: &[ShardStats], snap: &Snapshot, process: &Process) -> String {
    let names = Names::new(snap);
    let mut out = String::with_capacity(8 << 10);
    requests(&mut out, shards, &names);
    targets(&mut out, shards, &names);
    health(&mut out, shards, &names);
    rings(&mut out, shards);
    connections(&mut out, shards);
    plugins(&mut out, shards);
    tokens(&mut out, shards, &names);
    costs(&mut out, shards, &names);
    fallbacks(&mut out, &names);
    cache(&mut out);
    process_families(&mut out, shards, process);
    out
}

/// Requests and their latency by (gateway, rule).
fn requests(out: &mut String, shards: &[ShardStats], names: &Names<'_>) {
    let mut requests: BTreeMap<(String, String, u16), u64> = BTreeMap::new();
    let mut latency: BTreeMap<(String, String), Histogram> = BTreeMap::new();
    for r in shards.iter().flat_map(|s| &s.routes) {
        let (gateway, rule) = (names.gateway(r.gateway), names.rule(r.gateway, r.rule));
        for &(status, n) in &r.statuses {
            *requests
                .entry((gateway.clone(), rule.clone(), status))
                .or_default() += n;
        }
        latency
            .entry((gateway, rule))
            .or_default()
            .merge(&r.latency);
    }
    header(
        out,
        "ringgate_requests_total",
        "counter",
        "Requests answered, by gateway, rule and status (499: the client left before an answer).",
    );
    for ((gateway, rule, status), n) in &requests {
        let status = status.to_string();
        sample(
            out,
            "ringgate_requests_total",
            &[("gateway", gateway), ("rule", rule), ("status", &status)],
            *n,
        );
    }
    header(
        out,
        "ringgate_request_duration_seconds",
        "histogram",
        "Time from a parsed request head to the end of the answer, by gateway and rule.",
    );
    for ((gateway, rule), h) in &latency {
        histogram(
            out,
            "ringgate_request_duration_seconds",
            &[("gateway", gateway), ("rule", rule)],
            h,
        );
    }
}

/// Upstream targets: requests, failures and latency.
fn targets(out: &mut String, shards: &[ShardStats], names: &Names<'_>) {
    let mut targets: BTreeMap<[String; 3], TargetStats> = BTreeMap::new();
    for (key, t) in shards.iter().flat_map(|s| &s.targets) {
        let sum = targets.entry(names.target(*key)).or_default();
        sum.requests += t.requests;
        sum.connect_errors += t.connect_errors;
        sum.timeouts += t.timeouts;
        sum.retries += t.retries;
        sum.latency.merge(&t.latency);
    }
    type Field = fn(&TargetStats) -> u64;
    let counters: [(&str, &str, Field); 4] = [
        (
            "ringgate_upstream_requests_total",
            "Requests whose last attempt went to the target.",
            |t| t.requests,
        ),
        (
            "ringgate_upstream_connect_errors_total",
            "Requests answered 502 because connecting to the target failed (after any retries).",
            |t| t.connect_errors,
        ),
        (
            "ringgate_upstream_timeouts_total",
            "Requests answered 504 because the target's connect or response head timed out.",
            |t| t.timeouts,
        ),
        (
            "ringgate_upstream_retries_total",
            "Failed attempts to the target that were retried (connect failures, stale pooled connections).",
            |t| t.retries,
        ),
    ];
    counter_families(out, &counters, &targets, |k| target_labels(k).to_vec());
    header(
        out,
        "ringgate_upstream_duration_seconds",
        "histogram",
        "Time from the first attempt to the upstream's response head, by target.",
    );
    for (k, t) in &targets {
        if t.latency.count() > 0 {
            let labels = target_labels(k);
            histogram(
                out,
                "ringgate_upstream_duration_seconds",
                &borrowed(&labels),
                &t.latency,
            );
        }
    }
}

/// Target health: every target of the snapshot, served or not.
fn health(out: &mut String, shards: &[ShardStats], names: &Names<'_>) {
    let mut health: BTreeMap<&[String; 3], (bool, u64, u64)> =
        names.targets.values().map(|k| (k, (false, 0, 0))).collect();
    for (key, h) in shards.iter().flat_map(|s| &s.health) {
        if let Some(e) = names.targets.get(key).and_then(|k| health.get_mut(k)) {
            e.0 |= h.active_down;
            e.1 += u64::from(h.passive_down);
            e.2 += u64::from(h.breaker_open);
        }
    }
    header(
        out,
        "ringgate_target_up",
        "gauge",
        "0 while the target's active health check reports it down, else 1 (also without active checks).",
    );
    for (k, (down, _, _)) in &health {
        let labels = target_labels(k);
        sample(
            out,
            "ringgate_target_up",
            &borrowed(&labels),
            u64::from(!down),
        );
    }
    header(
        out,
        "ringgate_target_ejected_shards",
        "gauge",
        "Shards on which the target is out of rotation, by reason: passive (consecutive failures) or circuit_breaker (open, or half-open with its probe out).",
    );
    for (k, (_, passive, breaker)) in &health {
        for (reason, n) in [("passive", passive), ("circuit_breaker", breaker)] {
            let owned = target_labels(k);
            let mut labels = borrowed(&owned);
            labels.push(("reason", reason));
            sample(out, "ringgate_target_ejected_shards", &labels, *n);
        }
    }
}

/// The shards' own rings (absent on glommio's path).
fn rings(out: &mut String, shards: &[ShardStats]) {
    let rings: Vec<(String, crate::runtime::uring::Stats)> = shards
        .iter()
        .filter_map(|s| s.ring.map(|r| (s.shard.to_string(), r)))
        .collect();
    if !rings.is_empty() {
        type Field = fn(&crate::runtime::uring::Stats) -> u64;
        let series: [(&str, &str, Field); 4] = [
            (
                "ringgate_ring_enters_total",
                "io_uring_enter calls of the shard's ring (each submits a batch and collects completions).",
                |r| r.enters,
            ),
            (
                "ringgate_ring_completions_total",
                "Completions collected from the shard's ring.",
                |r| r.completions,
            ),
            (
                "ringgate_ring_parks_total",
                "Times the shard's ring driver ran out of work and waited on its eventfd.",
                |r| r.parks,
            ),
            (
                "ringgate_ring_buffer_shortages_total",
                "Receives that found no provided buffer free and used a buffer of their own.",
                |r| r.no_buffers,
            ),
        ];
        counter_families(out, &series, rings.iter().map(|(k, v)| (k, v)), |shard| {
            vec![("shard", shard.to_string())]
        });
    }
}

/// Pools and connections, per shard.
fn connections(out: &mut String, shards: &[ShardStats]) {
    let (reuses, connects): (u64, u64) = shards
        .iter()
        .fold((0, 0), |(r, c), s| (r + s.pool_reuses, c + s.pool_connects));
    header(
        out,
        "ringgate_upstream_pool_idle_connections",
        "gauge",
        "Idle keep-alive upstream connections, by shard.",
    );
    per_shard(
        out,
        "ringgate_upstream_pool_idle_connections",
        shards,
        |s| s.pool_idle,
    );
    header(
        out,
        "ringgate_upstream_pool_reuses_total",
        "counter",
        "Upstream requests sent on a pooled connection.",
    );
    sample(out, "ringgate_upstream_pool_reuses_total", &[], reuses);
    header(
        out,
        "ringgate_upstream_pool_connects_total",
        "counter",
        "Upstream connections opened (or attempted).",
    );
    sample(out, "ringgate_upstream_pool_connects_total", &[], connects);
    header(
        out,
        "ringgate_upstream_pool_reuse_ratio",
        "gauge",
        "Share of upstream requests sent on a pooled connection since start.",
    );
    let ratio = if reuses + connects == 0 {
        0.0
    } else {
        reuses as f64 / (reuses + connects) as f64
    };
    let _ = writeln!(out, "ringgate_upstream_pool_reuse_ratio {ratio}");
    header(
        out,
        "ringgate_open_connections",
        "gauge",
        "Open client connections, by shard.",
    );
    per_shard(out, "ringgate_open_connections", shards, |s| {
        s.open_connections
    });
    header(
        out,
        "ringgate_connections_refused_total",
        "counter",
        "Client connections closed at once because the shard was full, by shard.",
    );
    per_shard(out, "ringgate_connections_refused_total", shards, |s| {
        s.connections_refused
    });
    header(
        out,
        "ringgate_cross_shard_late_answers_total",
        "counter",
        "Rate-limit answers from another shard that took longer than the wake-up bell's interval (50 ms): a wake-up glommio lost, ended by the bell, or an overloaded shard. By the asking shard.",
    );
    per_shard(
        out,
        "ringgate_cross_shard_late_answers_total",
        shards,
        |s| s.late_answers,
    );
}

/// Refusals by plugin.
fn plugins(out: &mut String, shards: &[ShardStats]) {
    let mut plugins: BTreeMap<&str, u64> = BTreeMap::new();
    for (p, n) in shards.iter().flat_map(|s| &s.plugins) {
        *plugins.entry(p).or_default() += n;
    }
    header(
        out,
        "ringgate_plugin_rejections_total",
        "counter",
        "Requests refused by a plugin, by plugin.",
    );
    for (p, n) in plugins {
        sample(out, "ringgate_plugin_rejections_total", &[("plugin", p)], n);
    }
}

/// Tokens by gateway and model.
fn tokens(out: &mut String, shards: &[ShardStats], names: &Names<'_>) {
    let mut tokens: BTreeMap<(String, &str), (u64, u64)> = BTreeMap::new();
    for t in shards.iter().flat_map(|s| &s.tokens) {
        let sum = tokens
            .entry((names.gateway(t.gateway), t.model.as_str()))
            .or_default();
        sum.0 += t.prompt;
        sum.1 += t.completion;
    }
    for (name, help, completion) in [
        (
            "ringgate_prompt_tokens_total",
            "Prompt (input) tokens reported in responses' usage (JSON bodies and streams' usage events), by gateway and model.",
            false,
        ),
        (
            "ringgate_completion_tokens_total",
            "Completion (output) tokens reported in responses' usage (JSON bodies and streams' usage events), by gateway and model.",
            true,
        ),
    ] {
        header(out, name, "counter", help);
        for ((gateway, model), (p, c)) in &tokens {
            let n = if completion { *c } else { *p };
            sample(out, name, &[("gateway", gateway), ("model", model)], n);
        }
    }
}

/// Cost by gateway, key and model.
fn costs(out: &mut String, shards: &[ShardStats], names: &Names<'_>) {
    let mut costs: BTreeMap<(String, &str, &str), u64> = BTreeMap::new();
    for c in shards.iter().flat_map(|s| &s.costs) {
        *costs
            .entry((
                names.gateway(c.gateway),
                c.key_id.as_str(),
                c.model.as_str(),
            ))
            .or_default() += c.micros;
    }
    header(
        out,
        "ringgate_cost_micro_usd_total",
        "counter",
        "Cost of answers in micro-dollars (1e-6 USD) from their usage and the price table, by gateway, key id and model (unpriced models are not counted).",
    );
    for ((gateway, key, model), n) in &costs {
        sample(
            out,
            "ringgate_cost_micro_usd_total",
            &[("gateway", gateway), ("key", key), ("model", model)],
            *n,
        );
    }
}

/// Model fallbacks (node-wide, see [`super::fallbacks`]).
fn fallbacks(out: &mut String, names: &Names<'_>) {
    header(
        out,
        "ringgate_fallbacks_total",
        "counter",
        "Requests moved to the next model-fallback step, by gateway and the reason the step was left.",
    );
    for (gateway, reason, n) in super::fallbacks::counts() {
        let gateway = names.gateway(gateway);
        sample(
            out,
            "ringgate_fallbacks_total",
            &[("gateway", &gateway), ("reason", reason)],
            n,
        );
    }
}

/// Response cache (node-wide stores, see `plugin::cache`).
fn cache(out: &mut String) {
    let [hits, misses, evictions, saved, entries, bytes] = crate::plugin::cache::totals();
    for (name, kind, help, v) in [
        (
            "ringgate_cache_hits_total",
            "counter",
            "Requests answered from the response cache.",
            hits,
        ),
        (
            "ringgate_cache_misses_total",
            "counter",
            "Cacheable requests the response cache did not hold.",
            misses,
        ),
        (
            "ringgate_cache_evictions_total",
            "counter",
            "Entries evicted from the response cache to stay within its bounds.",
            evictions,
        ),
        (
            "ringgate_cache_tokens_saved_total",
            "counter",
            "Tokens (prompt plus completion) of the answers served from the cache.",
            saved,
        ),
        (
            "ringgate_cache_entries",
            "gauge",
            "Entries in the response cache.",
            entries,
        ),
        (
            "ringgate_cache_bytes",
            "gauge",
            "Bytes of answers in the response cache.",
            bytes,
        ),
    ] {
        header(out, name, kind, help);
        sample(out, name, &[], v);
    }
}

/// Configuration and process.
fn process_families(out: &mut String, shards: &[ShardStats], process: &Process) {
    header(
        out,
        "ringgate_config_generation",
        "gauge",
        "Generation of the configuration the control plane last applied.",
    );
    sample(out, "ringgate_config_generation", &[], process.generation);
    header(
        out,
        "ringgate_shard_config_generation",
        "gauge",
        "Generation of the configuration each shard serves.",
    );
    per_shard(out, "ringgate_shard_config_generation", shards, |s| {
        s.generation
    });
    header(
        out,
        "ringgate_config_last_apply_duration_seconds",
        "gauge",
        "Time the last configuration change took to reach every shard.",
    );
    let last = process.last_apply.map_or(0.0, |d| d.as_secs_f64());
    let _ = writeln!(out, "ringgate_config_last_apply_duration_seconds {last}");
    header(
        out,
        "ringgate_access_log_lines_total",
        "counter",
        "Access-log lines handed to the writer.",
    );
    let lines: u64 = shards.iter().map(|s| s.log_lines).sum();
    sample(out, "ringgate_access_log_lines_total", &[], lines);
    header(
        out,
        "ringgate_access_log_dropped_lines_total",
        "counter",
        "Access-log lines dropped because the writer fell behind.",
    );
    let dropped: u64 = shards.iter().map(|s| s.log_dropped).sum();
    sample(out, "ringgate_access_log_dropped_lines_total", &[], dropped);
    header(
        out,
        "ringgate_uptime_seconds",
        "gauge",
        "Seconds since the gateway started.",
    );
    let _ = writeln!(
        out,
        "ringgate_uptime_seconds {}",
        process.uptime.as_secs_f64()
    );
    header(
        out,
        "ringgate_build_info",
        "gauge",
        "Always 1; the version is a label.",
    );
    sample(
        out,
        "ringgate_build_info",
        &[("version", env!("CARGO_PKG_VERSION"))],
        1,
    );
}

/// A target's labels, from its names (gateway, upstream, target).
fn target_labels(k: &[String; 3]) -> [(&'static str, String); 3] {
    [
        ("gateway", k[0].clone()),
        ("upstream", k[1].clone()),
        ("target", k[2].clone()),
    ]
}

/// Counter families over the same items: for each `(name, help, field)` a
/// header, then one sample per item, labelled by `labels`.
fn counter_families<'a, K: 'a, T: 'a>(
    out: &mut String,
    families: &[(&str, &str, fn(&T) -> u64)],
    items: impl IntoIterator<Item = (&'a K, &'a T)> + Clone,
    labels: impl Fn(&K) -> Vec<(&'static str, String)>,
) {
    for (name, help, field) in families {
        header(out, name, "counter", help);
        for (k, t) in items.clone() {
            let l = labels(k);
            sample(out, name, &borrowed(&l), field(t));
        }
    }
}

fn borrowed<'a>(labels: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    labels.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn labels(out: &mut String, labels: &[(&str, &str)], extra: Option<(&str, &str)>) {
    let mut all = labels.iter().copied().chain(extra).peekable();
    if all.peek().is_none() {
        return;
    }
    out.push('{');
    for (i, (k, v)) in all.enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(k);
        out.push_str("=\"");
        escape(out, v);
        out.push('"');
    }
    out.push('}');
}

fn sample(out: &mut String, name: &str, l: &[(&str, &str)], value: u64) {
    out.push_str(name);
    labels(out, l, None);
    let _ = writeln!(out, " {value}");
}

fn per_shard(out: &mut String, name: &str, shards: &[ShardStats], f: impl Fn(&ShardStats) -> u64) {
    for s in shards {
        let shard = s.shard.to_string();
        sample(out, name, &[("shard", &shard)], f(s));
    }
}

fn histogram(out: &mut String, name: &str, l: &[(&str, &str)], h: &Histogram) {
    let mut cumulative = 0;
    for (i, (_, le)) in BUCKETS.iter().enumerate() {
        cumulative += h.counts[i];
        out.push_str(name);
        out.push_str("_bucket");
        labels(out, l, Some(("le", le)));
        let _ = writeln!(out, " {cumulative}");
    }
    let count = h.count();
    out.push_str(name);
    out.push_str("_bucket");
    labels(out, l, Some(("le", "+Inf")));
    let _ = writeln!(out, " {count}");
    out.push_str(name);
    out.push_str("_sum");
    labels(out, l, None);
    let _ = writeln!(out, " {}", h.sum_us as f64 / 1e6);
    out.push_str(name);
    out.push_str("_count");
    labels(out, l, None);
    let _ = writeln!(out, " {count}");
}

/// Label value escaping: backslash, double quote and line feed.
fn escape(out: &mut String, v: &str) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Stable keys → names, from one snapshot.
pub(crate) struct Names<'s> {
    gateways: HashMap<u64, &'s crate::config::snapshot::Gateway>,
    targets: HashMap<u64, [String; 3]>,
}

impl<'s> Names<'s> {
    pub(crate) fn new(snap: &'s Snapshot) -> Names<'s> {
        let mut targets = HashMap::new();
        let mut add = |gateway: &str, group: &str, t: &Target| {
            targets.insert(
                t.key,
                [gateway.to_string(), group.to_string(), t.authority.clone()],
            );
        };
        for g in &snap.gateways {
            for u in &g.upstreams {
                for t in &u.targets {
                    add(&g.name, &u.name, t);
                }
            }
            for s in &g.services {
                if let ServiceKind::Endpoint(t) = &s.kind {
                    add(&g.name, &s.name, t);
                }
            }
        }
        Names {
            gateways: snap.gateways.iter().map(|g| (g.key, g)).collect(),
            targets,
        }
    }

    /// The gateway's name (`""` for none, `#<hex>` when gone from the snapshot).
    pub(crate) fn gateway(&self, key: u64) -> String {
        match (key, self.gateways.get(&key)) {
            (0, _) => String::new(),
            (_, Some(g)) => g.name.clone(),
            (_, None) => format!("#{key:016x}"),
        }
    }

    fn rule(&self, gateway: u64, key: u64) -> String {
        if key == 0 {
            return String::new();
        }
        self.gateways
            .get(&gateway)
            .and_then(|g| g.rules.iter().find(|r| r.key == key))
            .map_or_else(|| format!("#{key:016x}"), |r| r.name.clone())
    }

    fn target(&self, key: u64) -> [String; 3] {
        self.targets
            .get(&key)
            .cloned()
            .unwrap_or_else(|| [String::new(), String::new(), format!("#{key:016x}")])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_is_cumulative_with_inf_sum_and_count() {
        let mut h = Histogram::default();
        h.observe(Duration::from_micros(50));
        h.observe(Duration::from_micros(700));
        h.observe(Duration::from_secs(90));
        let mut out = String::new();
        histogram(&mut out, "x_seconds", &[("a", "q\"\\\n")], &h);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], r#"x_seconds_bucket{a="q\"\\\n",le="0.0001"} 1"#);
        assert_eq!(lines[2], r#"x_seconds_bucket{a="q\"\\\n",le="0.0005"} 1"#);
        assert_eq!(lines[3], r#"x_seconds_bucket{a="q\"\\\n",le="0.001"} 2"#);
        assert_eq!(lines[17], r#"x_seconds_bucket{a="q\"\\\n",le="60"} 2"#);
        assert_eq!(lines[18], r#"x_seconds_bucket{a="q\"\\\n",le="+Inf"} 3"#);
        assert_eq!(lines[19], r#"x_seconds_sum{a="q\"\\\n"} 90.00075"#);
        assert_eq!(lines[20], r#"x_seconds_count{a="q\"\\\n"} 3"#);
        assert_eq!(lines.len(), 21);
    }

    #[test]
    fn empty_scrape_has_every_family() {
        let out = render(
            &[ShardStats::default()],
            &Snapshot::empty(),
            &Process {
                generation: 3,
                last_apply: Some(Duration::from_millis(2)),
                uptime: Duration::from_secs(1),
            },
        );
        assert!(out.contains("# TYPE ringgate_requests_total counter\n"));
        assert!(out.contains("# TYPE ringgate_request_duration_seconds histogram\n"));
        assert!(out.contains("\nringgate_config_generation 3\n"));
        assert!(out.contains("\nringgate_config_last_apply_duration_seconds 0.002\n"));
        assert!(out.contains("\nringgate_open_connections{shard=\"0\"} 0\n"));
        assert!(out.contains("\nringgate_cross_shard_late_answers_total{shard=\"0\"} 0\n"));
        assert!(out.ends_with('\n'));
    }

    #[test]
    fn the_grafana_dashboard_only_uses_exported_metrics() {
        let dashboard = include_str!("../../tuning/grafana-dashboard.json");
        let out = render(
            &[ShardStats::default()],
            &Snapshot::empty(),
            &Process {
                generation: 0,
                last_apply: None,
                uptime: Duration::ZERO,
            },
        );
        let mut names = 0;
        for (i, _) in dashboard.match_indices("ringgate_") {
            let name: String = dashboard[i..]
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                .collect();
            let family = name.strip_suffix("_bucket").unwrap_or(&name);
            if family == "ringgate_" {
                continue; // the dashboard's uid
            }
            assert!(
                out.contains(&format!("# TYPE {family} ")),
                "the dashboard queries {name}, which /metrics does not export"
            );
            names += 1;
        }
        assert!(names >= 15);
    }
}
