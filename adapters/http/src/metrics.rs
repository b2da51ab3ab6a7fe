//! `GET /metrics`: Prometheus text exposition (format 0.0.4). Not part of the JSON API:
//! scrapers authenticate with `metrics.token` (a bearer token), or, when no token is
//! configured, only clients on this machine may scrape: the client address is resolved
//! through `server.trusted_proxies` like everywhere else, and a request relayed
//! (`X-Forwarded-For`, `Forwarded`, `X-Real-IP`) by a proxy that is not trusted is
//! refused, so a reverse proxy on this machine does not make the metrics public. Scrapes are not audited: they change nothing and come every few
//! seconds.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::sync::Arc;

use coffer_domain::auth::{Actor, ClientInfo, Role};
use poem::http::StatusCode;
use poem::web::Data;
use poem::{Request, Response, handler};
use subtle::ConstantTimeEq as _;

use crate::AppState;
use crate::auth::client_info;
use crate::error::ApiError;

/// Who may scrape.
#[derive(Clone, Default)]
pub struct MetricsAccess {
    /// Bearer token scrapers must send; `None`: local clients only.
    pub token: Option<String>,
}

impl std::fmt::Debug for MetricsAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsAccess")
            .field("token", &self.token.as_ref().map(|_| "***"))
            .finish()
    }
}

fn refuse(status: StatusCode, code: &str, message: &str) -> Response {
    crate::middleware::error_response(status, code, message)
}

/// Whether the scraper may read the metrics; the refusal to send when not.
fn allowed(req: &Request, state: &AppState) -> Result<(), Box<Response>> {
    if let Some(token) = &state.metrics.token {
        let sent = req
            .headers()
            .get(poem::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default();
        if bool::from(sent.as_bytes().ct_eq(token.as_bytes())) {
            return Ok(());
        }
        return Err(Box::new(refuse(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "send the metrics token (metrics.token) as `Authorization: Bearer <token>`",
        )));
    }
    let client = client_info(req, &state.trusted_proxies);
    // A request relayed by a proxy Coffer does not trust comes from someone unknown: a
    // reverse proxy on this machine must not make the metrics public.
    let socket_ip = req
        .remote_addr()
        .as_socket_addr()
        .map(std::net::SocketAddr::ip);
    let relayed_untrusted = ["x-forwarded-for", "forwarded", "x-real-ip"]
        .iter()
        .any(|h| req.headers().contains_key(*h))
        && !socket_ip.is_some_and(|ip| state.trusted_proxies.contains(&ip));
    let local = !relayed_untrusted
        && client
            .ip
            .as_deref()
            .and_then(|ip| ip.parse::<IpAddr>().ok())
            .is_some_and(|ip| ip.is_loopback());
    if local {
        Ok(())
    } else {
        Err(Box::new(refuse(
            StatusCode::FORBIDDEN,
            "forbidden",
            "metrics are served to this machine only; set metrics.token to let a remote scraper in",
        )))
    }
}

/// Escapes a label value.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

struct Out(String);

impl Out {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}");
        let _ = writeln!(self.0, "# TYPE {name} {kind}");
    }
    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        self.0.push_str(name);
        if !labels.is_empty() {
            self.0.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.0.push(',');
                }
                let _ = write!(self.0, "{k}=\"{}\"", label(v));
            }
            self.0.push('}');
        }
        let _ = writeln!(self.0, " {value}");
    }
}

#[allow(clippy::cast_precision_loss)]
fn secs(t: chrono::DateTime<chrono::Utc>) -> f64 {
    t.timestamp_millis() as f64 / 1000.0
}

#[handler]
pub async fn metrics(req: &Request, state: Data<&Arc<AppState>>) -> Response {
    if let Err(refused) = allowed(req, &state) {
        return *refused;
    }
    let actor = Actor {
        username: "system:metrics".into(),
        user_id: None,
        role: Role::Viewer,
        client: ClientInfo::default(),
    };
    let d = match state.dashboard.overview(&actor).await {
        Ok(d) => d,
        Err(e) => return poem::IntoResponse::into_response(ApiError::internal(&e)),
    };
    let mut o = Out(String::with_capacity(4096));
    o.family("coffer_up", "gauge", "1 while the server answers.");
    o.sample("coffer_up", &[], 1);
    o.family(
        "coffer_backups",
        "gauge",
        "Snapshots in the catalog, by status.",
    );
    for (status, n) in &d.backups.count_by_status {
        o.sample("coffer_backups", &[("status", status)], n);
    }
    o.family(
        "coffer_backups_logical_bytes",
        "gauge",
        "Logical bytes of every snapshot in the catalog.",
    );
    o.sample("coffer_backups_logical_bytes", &[], d.backups.logical_bytes);
    o.family(
        "coffer_protected_bytes",
        "gauge",
        "Logical bytes of the newest snapshot of every source.",
    );
    o.sample("coffer_protected_bytes", &[], d.protected_bytes);
    o.family(
        "coffer_storage_stored_bytes",
        "gauge",
        "Bytes the repository occupies, after deduplication and compression.",
    );
    o.sample("coffer_storage_stored_bytes", &[], d.storage.stored_bytes);
    if let Some(max) = d.storage.quota.max_bytes {
        o.family("coffer_storage_quota_bytes", "gauge", "The storage quota.");
        o.sample("coffer_storage_quota_bytes", &[], max);
    }
    if let Some(w) = d.storage.quota.warning_bytes {
        o.family(
            "coffer_storage_quota_warning_bytes",
            "gauge",
            "Storage use that raises a warning.",
        );
        o.sample("coffer_storage_quota_warning_bytes", &[], w);
    }
    o.family(
        "coffer_storage_quota_state",
        "gauge",
        "1 for the quota's current state (ok, warning, exceeded).",
    );
    for state_name in ["ok", "warning", "exceeded"] {
        o.sample(
            "coffer_storage_quota_state",
            &[("state", state_name)],
            u8::from(d.storage.state.as_str() == state_name),
        );
    }
    if let Some(r) = d.dedup_ratio {
        o.family(
            "coffer_dedup_ratio",
            "gauge",
            "Logical bytes of every snapshot per byte stored.",
        );
        o.sample("coffer_dedup_ratio", &[], format!("{r:.4}"));
    }
    if let Some(disk) = &d.disk {
        o.family(
            "coffer_disk_free_bytes",
            "gauge",
            "Free bytes on the repository's volume.",
        );
        o.sample("coffer_disk_free_bytes", &[], disk.available_bytes);
        o.family(
            "coffer_disk_total_bytes",
            "gauge",
            "Size of the repository's volume.",
        );
        o.sample("coffer_disk_total_bytes", &[], disk.total_bytes);
    }
    o.family(
        "coffer_source_last_backup_timestamp_seconds",
        "gauge",
        "When the newest snapshot of each source was taken (Unix time).",
    );
    for s in &d.sources {
        if let Some(b) = &s.last_backup {
            o.sample(
                "coffer_source_last_backup_timestamp_seconds",
                &[("source", &s.name), ("status", b.status.as_str())],
                secs(b.created_at),
            );
        }
    }
    o.family(
        "coffer_source_last_success_timestamp_seconds",
        "gauge",
        "When the newest snapshot of each source that read everything (status ok) was taken.",
    );
    for s in &d.sources {
        if let Some(b) = s
            .last_backup
            .as_ref()
            .filter(|b| b.status == coffer_domain::engine::SnapshotStatus::Ok)
        {
            o.sample(
                "coffer_source_last_success_timestamp_seconds",
                &[("source", &s.name)],
                secs(b.created_at),
            );
        }
    }
    o.family(
        "coffer_source_next_run_timestamp_seconds",
        "gauge",
        "When the scheduler next backs up each scheduled source (Unix time).",
    );
    for s in &d.sources {
        if let Some(next) = s.next_run_at {
            o.sample(
                "coffer_source_next_run_timestamp_seconds",
                &[("source", &s.name)],
                secs(next),
            );
        }
    }
    o.family(
        "coffer_alerts_active",
        "gauge",
        "Alerts not yet acknowledged, by severity.",
    );
    for (severity, n) in [
        ("critical", d.alert_counts.critical),
        ("warning", d.alert_counts.warning),
        ("info", d.alert_counts.info),
    ] {
        o.sample("coffer_alerts_active", &[("severity", severity)], n);
    }
    o.family(
        "coffer_jobs_running",
        "gauge",
        "Background jobs running now.",
    );
    o.sample("coffer_jobs_running", &[], d.running_jobs.len());
    o.family(
        "coffer_job_duration_seconds",
        "summary",
        "How long the jobs that ended since start-up ran, by kind and outcome.",
    );
    for j in state.jobs.durations() {
        let labels = [("kind", j.kind.as_str()), ("state", j.state.as_str())];
        o.sample("coffer_job_duration_seconds_count", &labels, j.count);
        o.sample(
            "coffer_job_duration_seconds_sum",
            &labels,
            format!("{:.3}", j.total_secs),
        );
    }
    match state.replicas.list(&actor).await {
        Ok(replicas) => replica_metrics(&mut o, &replicas, chrono::Utc::now()),
        Err(e) => return poem::IntoResponse::into_response(ApiError::from(e)),
    }
    Response::builder()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(o.0)
}

/// Each replica's last copies and lag.
fn replica_metrics(
    o: &mut Out,
    replicas: &[coffer_application::ReplicaStatus],
    now: chrono::DateTime<chrono::Utc>,
) {
    o.family(
        "coffer_replica_last_success_timestamp_seconds",
        "gauge",
        "When the last successful copy into each replica ended (Unix time).",
    );
    for r in replicas {
        if let Some(t) = r.replica.last_success_at {
            o.sample(
                "coffer_replica_last_success_timestamp_seconds",
                &[("replica", r.replica.spec.name.as_str())],
                secs(t),
            );
        }
    }
    o.family(
        "coffer_replica_last_failure_timestamp_seconds",
        "gauge",
        "When the last failed copy into each replica ended (Unix time).",
    );
    for r in replicas {
        if let Some(t) = r.replica.last_failure_at {
            o.sample(
                "coffer_replica_last_failure_timestamp_seconds",
                &[("replica", r.replica.spec.name.as_str())],
                secs(t),
            );
        }
    }
    o.family(
        "coffer_replica_lag_snapshots",
        "gauge",
        "Snapshots of the repository not yet copied into each replica.",
    );
    for r in replicas {
        o.sample(
            "coffer_replica_lag_snapshots",
            &[("replica", r.replica.spec.name.as_str())],
            r.lag.snapshots,
        );
    }
    o.family(
        "coffer_replica_lag_seconds",
        "gauge",
        "Age of the oldest snapshot not yet copied into each replica (0: none).",
    );
    for r in replicas {
        o.sample(
            "coffer_replica_lag_seconds",
            &[("replica", r.replica.spec.name.as_str())],
            r.lag.age(now).map_or(0, |a| a.num_seconds()),
        );
    }
    o.family(
        "coffer_replica_lagging",
        "gauge",
        "1 while a replica is further behind than its limits (replica_lagging).",
    );
    for r in replicas {
        o.sample(
            "coffer_replica_lagging",
            &[("replica", r.replica.spec.name.as_str())],
            u8::from(r.lagging.is_some()),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_and_labels_follow_the_text_format() {
        let mut o = Out(String::new());
        o.family("x_total", "gauge", "Help.");
        o.sample("x_total", &[("source", "a \"q\" \\ b\nc"), ("k", "v")], 3);
        o.sample("x_total", &[], 1.5);
        assert_eq!(
            o.0,
            "# HELP x_total Help.\n# TYPE x_total gauge\n\
             x_total{source=\"a \\\"q\\\" \\\\ b\\nc\",k=\"v\"} 3\nx_total 1.5\n"
        );
    }
}
