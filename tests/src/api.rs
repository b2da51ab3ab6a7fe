//! A small client of the JSON API for end-to-end tests.

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

use crate::TestApp;

/// A signed-in client of the JSON API.
pub struct Api<'a> {
    pub app: &'a TestApp,
    pub token: String,
}

impl Api<'_> {
    pub async fn send(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = self
            .app
            .client
            .request(method.parse().expect("method"), self.app.url(path))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.send("GET", path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.send("POST", path, Some(body)).await
    }

    pub async fn bytes(&self, path: &str) -> (u16, String, Vec<u8>) {
        let resp = self
            .app
            .client
            .get(self.app.url(path))
            .bearer_auth(&self.token)
            .send()
            .await
            .expect("request");
        let status = resp.status().as_u16();
        let disposition = resp
            .headers()
            .get("content-disposition")
            .map(|v| v.to_str().expect("ascii").to_owned())
            .unwrap_or_default();
        (
            status,
            disposition,
            resp.bytes().await.expect("body").to_vec(),
        )
    }

    /// Polls a job until it ends; returns its final record.
    pub async fn wait(&self, job_id: &str) -> Value {
        for _ in 0..2400 {
            let (status, job) = self.get(&format!("/api/jobs/{job_id}")).await;
            assert_eq!(status, 200, "{job}");
            if ["succeeded", "failed", "cancelled"].contains(&job["state"].as_str().unwrap_or("")) {
                return job;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("job {job_id} did not end in 2 minutes");
    }

    pub async fn create_source(&self, name: &str, path: &Path) -> i64 {
        let (status, body) = self
            .post(
                "/api/sources",
                json!({"name": name, "path": path.to_str().expect("utf8")}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        body["id"].as_i64().expect("id")
    }

    /// Starts a backup and waits for it; returns the snapshot id.
    pub async fn backup(&self, source_id: i64) -> String {
        let (status, job) = self
            .post("/api/backup", json!({"source_id": source_id}))
            .await;
        assert_eq!(status, 202, "{job}");
        let done = self.wait(job["id"].as_str().expect("id")).await;
        assert_eq!(done["state"], "succeeded", "{done}");
        done["result"]["snapshot_id"]
            .as_str()
            .expect("snapshot id")
            .to_owned()
    }
}

/// A client signed in as the first admin.
pub async fn admin(app: &TestApp) -> Api<'_> {
    Api {
        app,
        token: app.admin_token().await,
    }
}
