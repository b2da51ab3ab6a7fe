//! The webhook notifier against a tiny HTTP/1.1 server on a local port that records each
//! request and answers as the test scripts it.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use coffer_domain::alerts::{Alert, AlertKind, AlertNotifier, Severity};
use coffer_domain::{AlertId, SourceId};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::{WebhookError, WebhookNotifier};

/// How the server answers one request.
#[derive(Debug, Clone, Copy)]
enum Answer {
    Status(u16),
    /// Reads the request and never answers.
    Hang,
}

/// One request as the server read it.
#[derive(Debug, Clone)]
struct Seen {
    request_line: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

struct Hook {
    port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Hook {
    /// A server answering the n-th request with `script[n]` (the last one repeats).
    async fn start(script: Vec<Answer>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let recorded = seen.clone();
        tokio::spawn(async move {
            loop {
                let Ok((socket, _)) = listener.accept().await else {
                    return;
                };
                let recorded = recorded.clone();
                let script = script.clone();
                tokio::spawn(async move {
                    let Some(request) = read_request(socket).await else {
                        return;
                    };
                    let (mut socket, seen) = request;
                    let n = {
                        let mut all = recorded.lock().unwrap();
                        all.push(seen);
                        all.len()
                    };
                    let answer = script[(n - 1).min(script.len() - 1)];
                    match answer {
                        Answer::Hang => {
                            tokio::time::sleep(Duration::from_hours(1)).await;
                        }
                        Answer::Status(code) => {
                            let response = format!(
                                "HTTP/1.1 {code} Scripted\r\nContent-Length: 2\r\n\
                                 Content-Type: text/plain\r\nConnection: close\r\n\r\nok"
                            );
                            let _ = socket.write_all(response.as_bytes()).await;
                            let _ = socket.shutdown().await;
                        }
                    }
                });
            }
        });
        Self { port, seen }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

/// Reads one request: the head up to the blank line, then `Content-Length` bytes.
async fn read_request(mut socket: TcpStream) -> Option<(TcpStream, Seen)> {
    let mut buf = Vec::new();
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        let mut chunk = [0u8; 4096];
        let n = socket.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8(buf[..head_end].to_vec()).ok()?;
    let mut lines = head.split("\r\n");
    let request_line = lines.next()?.to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < length {
        let mut chunk = [0u8; 4096];
        let n = socket.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Some((
        socket,
        Seen {
            request_line,
            headers,
            body,
        },
    ))
}

fn alert() -> Alert {
    Alert {
        id: AlertId::new(17),
        severity: Severity::Critical,
        kind: AlertKind::BackupFailed,
        message: "backup of `docs` failed: permission denied".to_owned(),
        source_id: Some(SourceId::new(3)),
        created_at: Utc.with_ymd_and_hms(2026, 11, 26, 12, 30, 5).unwrap(),
        acknowledged_at: None,
        acknowledged_by: None,
    }
}

fn fast(url: &str, waits: usize) -> WebhookNotifier {
    WebhookNotifier::with_retry(
        url,
        Duration::from_secs(5),
        vec![Duration::from_millis(30); waits],
    )
    .expect("notifier")
}

#[tokio::test]
async fn posts_the_alert_as_json() {
    let hook = Hook::start(vec![Answer::Status(204)]).await;
    let notifier = fast(&hook.url("/hooks/coffer?token=s3cret"), 3);
    notifier.notify(&alert()).await.expect("delivered");
    let seen = hook.seen();
    assert_eq!(seen.len(), 1, "one attempt is enough");
    assert_eq!(
        seen[0].request_line,
        "POST /hooks/coffer?token=s3cret HTTP/1.1"
    );
    assert_eq!(seen[0].header("content-type"), Some("application/json"));
    let body: Value = serde_json::from_slice(&seen[0].body).expect("JSON body");
    assert_eq!(
        body,
        json!({
            "product": "coffer",
            "id": 17,
            "severity": "critical",
            "kind": "backup_failed",
            "message": "backup of `docs` failed: permission denied",
            "source_id": 3,
            "created_at": "2026-11-26T12:30:05.000000Z",
        })
    );

    let mut server_wide = alert();
    server_wide.source_id = None;
    notifier.notify(&server_wide).await.expect("delivered");
    let body: Value = serde_json::from_slice(&hook.seen()[1].body).expect("JSON body");
    assert_eq!(body["source_id"], Value::Null);
}

#[tokio::test]
async fn failures_are_retried_until_one_succeeds() {
    let hook = Hook::start(vec![
        Answer::Status(500),
        Answer::Status(500),
        Answer::Status(200),
    ])
    .await;
    let notifier = fast(&hook.url("/hook"), 3);
    notifier.notify(&alert()).await.expect("third time lucky");
    let seen = hook.seen();
    assert_eq!(seen.len(), 3);
    assert!(
        seen.iter().all(|s| s.body == seen[0].body),
        "every attempt sends the same alert"
    );
}

#[tokio::test]
async fn it_gives_up_after_four_attempts_with_the_backoff_between() {
    let hook = Hook::start(vec![Answer::Status(503)]).await;
    let notifier = fast(&hook.url("/hook/s3cret-path?token=s3cret"), 3);
    let started = Instant::now();
    let err = notifier.notify(&alert()).await.expect_err("never 2xx");
    assert_eq!(hook.seen().len(), 4, "1 attempt + 3 retries");
    assert!(
        started.elapsed() >= Duration::from_millis(90),
        "three waits of 30 ms: {:?}",
        started.elapsed()
    );
    let message = err.to_string();
    assert!(message.contains("127.0.0.1"), "{message}");
    assert!(message.contains("503"), "{message}");
    assert!(
        !message.contains("s3cret"),
        "the URL's secret leaked: {message}"
    );
}

#[tokio::test]
async fn redirects_are_failures_not_followed() {
    let hook = Hook::start(vec![Answer::Status(302)]).await;
    let err = fast(&hook.url("/hook"), 0)
        .notify(&alert())
        .await
        .expect_err("a redirect is not a delivery");
    assert_eq!(hook.seen().len(), 1);
    assert!(err.to_string().contains("302"), "{err}");
}

#[tokio::test]
async fn an_endpoint_that_never_answers_times_out() {
    let hook = Hook::start(vec![Answer::Hang]).await;
    let notifier = WebhookNotifier::with_retry(
        &hook.url("/slow?token=s3cret"),
        Duration::from_millis(200),
        vec![Duration::ZERO],
    )
    .expect("notifier");
    let started = Instant::now();
    let err = notifier.notify(&alert()).await.expect_err("no answer");
    assert!(started.elapsed() < Duration::from_secs(5));
    // Both attempts reached the endpoint. Not `== 2`: one run saw three requests
    // arrive, as if the HTTP client had sent one again on a new connection (hyper
    // resends a request whose pooled connection closed under it); what this test is
    // about is that a silent endpoint ends in a timely "timed out" without the secret.
    assert!(hook.seen().len() >= 2, "{}", hook.seen().len());
    let message = err.to_string();
    assert!(message.contains("timed out"), "{message}");
    assert!(!message.contains("s3cret"), "{message}");
}

#[tokio::test]
async fn an_endpoint_that_is_down_is_a_failure_without_the_url() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let err = fast(&format!("http://127.0.0.1:{port}/x?token=s3cret"), 1)
        .notify(&alert())
        .await
        .expect_err("nothing listens");
    let message = err.to_string();
    assert!(message.contains("cannot connect"), "{message}");
    assert!(!message.contains("s3cret"), "{message}");
}

#[test]
fn only_http_urls_with_a_host_are_accepted() {
    for bad in [
        "ftp://example.com/x",
        "not a url",
        "file:///etc/passwd",
        "http://",
    ] {
        assert!(
            matches!(
                WebhookNotifier::new(bad),
                Err(WebhookError::UnsupportedUrl | WebhookError::InvalidUrl(_))
            ),
            "{bad}"
        );
    }
    let ok = WebhookNotifier::new("https://hooks.example.com/T000/B000/XXXX").expect("https");
    assert_eq!(ok.host(), "hooks.example.com");
    let shown = format!("{ok:?}");
    assert!(!shown.contains("XXXX"), "{shown}");
    assert!(shown.contains("attempts: 4"), "{shown}");
}
