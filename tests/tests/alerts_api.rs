//! Alerts end to end: a real condition (the storage volume below a threshold set
//! impossibly high) raises an alert at start-up; it is listed, acknowledged by an admin
//! only, audited, and sent to a webhook.

use std::io::{BufRead, BufReader, Read, Write};
use std::sync::mpsc;
use std::time::Duration;

use coffer_tests::{Backend, TestApp, on_both, spawn_app_with};
use serde_json::Value;

const STRONG: &str = "a long enough passphrase";

/// More free space than any disk has, in MiB (1 EiB).
const ALWAYS_LOW_MB: u64 = 1 << 40;

/// The disk thresholds set so that a `disk_low` warning is raised at start-up.
fn low_disk(settings: &mut coffer_config::Settings) {
    settings.disk.warning_free_mb = ALWAYS_LOW_MB;
    settings.disk.min_free_mb = 0;
}

async fn post_as(app: &TestApp, token: &str, path: &str) -> (u16, Value) {
    let resp = app
        .client
        .post(app.url(path))
        .bearer_auth(token)
        .send()
        .await
        .expect("request");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

fn items(body: &Value) -> &Vec<Value> {
    body["items"].as_array().expect("items")
}

/// The listed alerts of one kind (a new server also warns that its key was never
/// exported).
fn of_kind<'a>(body: &'a Value, kind: &str) -> Vec<&'a Value> {
    items(body).iter().filter(|a| a["kind"] == kind).collect()
}

async fn alerts_are_listed_acknowledged_by_admins_and_audited(app: &TestApp) {
    let admin = app.admin_token().await;
    app.create_user(&admin, "vera", STRONG, "viewer").await;
    app.create_user(&admin, "otto", STRONG, "operator").await;
    let viewer = app.token("vera", STRONG).await;
    let operator = app.token("otto", STRONG).await;

    // No token, no alerts.
    let anonymous = app
        .client
        .get(app.url("/api/alerts"))
        .send()
        .await
        .expect("request");
    assert_eq!(anonymous.status(), 401);

    // A viewer sees the alert the start-up disk check raised.
    let (status, body) = app.get_as(&viewer, "/api/alerts").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["total"], 2, "{body}");
    assert_eq!(of_kind(&body, "key_not_exported").len(), 1, "{body}");
    let disk = of_kind(&body, "disk_low");
    assert_eq!(disk.len(), 1, "{body}");
    let alert = disk[0];
    assert_eq!(alert["severity"], "warning");
    assert_eq!(alert["active"], true);
    assert!(
        alert["message"]
            .as_str()
            .expect("message")
            .contains("warning threshold"),
        "{alert}"
    );
    assert!(alert["created_at"].is_string());
    for absent in ["acknowledged_at", "acknowledged_by", "source_id"] {
        assert!(
            alert.get(absent).is_none(),
            "{absent} must be absent: {alert}"
        );
    }
    let id = alert["id"].as_i64().expect("id");

    let (status, body) = app.get_as(&viewer, "/api/alerts?severity=critical").await;
    assert_eq!(status, 200);
    assert_eq!(body["total"], 0, "{body}");
    for bad in ["limit=0", "limit=501", "severity=fatal", "offset=-1"] {
        let (status, body) = app.get_as(&viewer, &format!("/api/alerts?{bad}")).await;
        assert_eq!(status, 400, "{bad}: {body}");
    }

    // Only an admin acknowledges.
    for token in [&viewer, &operator] {
        let (status, body) = post_as(app, token, &format!("/api/alerts/{id}/ack")).await;
        assert_eq!(status, 403, "{body}");
        assert_eq!(body["error"]["code"], "forbidden");
    }
    let (status, body) = post_as(app, &admin, "/api/alerts/987654/ack").await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"]["code"], "not_found");

    let (status, acked) = post_as(app, &admin, &format!("/api/alerts/{id}/ack")).await;
    assert_eq!(status, 200, "{acked}");
    assert_eq!(acked["id"], id);
    assert_eq!(acked["active"], false);
    assert_eq!(acked["acknowledged_by"], "admin");
    assert!(acked["acknowledged_at"].is_string());

    // Gone from the active list, kept in the full one.
    let (_, active) = app.get_as(&viewer, "/api/alerts").await;
    assert!(of_kind(&active, "disk_low").is_empty(), "{active}");
    let (_, every) = app.get_as(&viewer, "/api/alerts?active=false").await;
    assert_eq!(every["total"], 2, "{every}");
    assert_eq!(of_kind(&every, "disk_low")[0]["acknowledged_by"], "admin");

    // The acknowledgement is in the audit trail, and the refused ones are not.
    let (status, audit) = app.get_as(&admin, "/api/audit?action=alert_ack").await;
    assert_eq!(status, 200, "{audit}");
    let rows = items(&audit);
    assert_eq!(rows.len(), 1, "{audit}");
    assert_eq!(rows[0]["username"], "admin");
    assert_eq!(rows[0]["resource"], format!("alert:{id}"));
    assert_eq!(rows[0]["success"], true);
    assert!(
        rows[0]["detail"]
            .as_str()
            .expect("detail")
            .contains("disk_low")
    );
}
on_both!(
    alerts_are_listed_acknowledged_by_admins_and_audited,
    low_disk
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn below_the_reserve_the_disk_alert_is_critical() {
    let app = spawn_app_with(Backend::Sqlite, "below_the_reserve", |s| {
        s.disk.warning_free_mb = ALWAYS_LOW_MB;
        s.disk.min_free_mb = ALWAYS_LOW_MB;
    })
    .await
    .expect("sqlite");
    let admin = app.admin_token().await;
    let (status, body) = app.get_as(&admin, "/api/alerts?severity=critical").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["total"], 1, "{body}");
    let alert = &items(&body)[0];
    assert_eq!(alert["kind"], "disk_low");
    assert!(
        alert["message"]
            .as_str()
            .expect("message")
            .contains("new backups are refused"),
        "{alert}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_room_to_spare_there_is_no_alert() {
    let app = spawn_app_with(Backend::Sqlite, "room_to_spare", |s| {
        s.disk.warning_free_mb = 0;
        s.disk.min_free_mb = 0;
    })
    .await
    .expect("sqlite");
    let admin = app.admin_token().await;
    let (status, body) = app.get_as(&admin, "/api/alerts?active=false").await;
    assert_eq!(status, 200, "{body}");
    assert!(of_kind(&body, "disk_low").is_empty(), "{body}");
    app.stop().await;
}

/// One request as a tiny blocking HTTP/1.1 server read it: request line, headers, body.
struct Received {
    request_line: String,
    headers: Vec<String>,
    body: Vec<u8>,
}

/// Accepts connections, reads one request from each, answers 204, and reports the
/// requests.
fn webhook_receiver() -> (u16, mpsc::Receiver<Received>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for socket in listener.incoming() {
            let Ok(socket) = socket else {
                return;
            };
            if !receive_one(socket, &tx) {
                return;
            }
        }
    });
    (port, rx)
}

/// Reads one request and answers it; `false` once nobody listens for requests.
fn receive_one(socket: std::net::TcpStream, tx: &mpsc::Sender<Received>) -> bool {
    let mut reader = BufReader::new(socket);
    let mut request_line = String::new();
    reader.read_line(&mut request_line).expect("request line");
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).expect("header");
        let line = line.trim_end().to_owned();
        if line.is_empty() {
            break;
        }
        headers.push(line);
    }
    let length: usize = headers
        .iter()
        .find_map(|h| {
            h.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse().expect("length"))
        })
        .unwrap_or(0);
    let mut body = vec![0; length];
    reader.read_exact(&mut body).expect("body");
    let mut socket = reader.into_inner();
    let _ = socket
        .write_all(b"HTTP/1.1 204 No Content\r\nConnection: close\r\nContent-Length: 0\r\n\r\n");
    tx.send(Received {
        request_line: request_line.trim_end().to_owned(),
        headers,
        body,
    })
    .is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_alert_is_posted_to_the_webhook() {
    let (port, received) = webhook_receiver();
    let app = spawn_app_with(Backend::Sqlite, "webhook", |s| {
        low_disk(s);
        s.alerts.webhook_url = Some(format!("http://127.0.0.1:{port}/hook?token=s3cret"));
    })
    .await
    .expect("sqlite");
    // The disk alert's POST (a new server also reports its never-exported key).
    let request = tokio::task::spawn_blocking(move || {
        loop {
            let r = received
                .recv_timeout(Duration::from_secs(20))
                .expect("the webhook is called within 20 s");
            let body: Value = serde_json::from_slice(&r.body).expect("JSON");
            if body["kind"] == "disk_low" {
                return r;
            }
        }
    })
    .await
    .expect("join");
    assert_eq!(request.request_line, "POST /hook?token=s3cret HTTP/1.1");
    assert!(
        request
            .headers
            .iter()
            .any(|h| h.eq_ignore_ascii_case("content-type: application/json")),
        "{:?}",
        request.headers
    );
    let body: Value = serde_json::from_slice(&request.body).expect("JSON");
    assert_eq!(body["product"], "coffer");
    assert_eq!(body["kind"], "disk_low");
    assert_eq!(body["severity"], "warning");
    assert_eq!(body["source_id"], Value::Null);

    let admin = app.admin_token().await;
    let (_, listed) = app.get_as(&admin, "/api/alerts").await;
    assert_eq!(
        of_kind(&listed, "disk_low")[0]["id"],
        body["id"],
        "the stored alert was sent"
    );
    app.stop().await;
}
