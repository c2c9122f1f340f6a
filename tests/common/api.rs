//! A plain NetBox REST client for the tests — what an operator or the UI would do — and what
//! the tests read back: a device's lifecycle, its recorded changes, its journal.

use std::time::Duration;

use serde_json::{Value, json};

use super::lab::lab;

/// A plain NetBox REST client for the tests: what an operator or the UI would do.
#[derive(Debug, Clone)]
pub struct Api {
    http: reqwest::Client,
    base: String,
    auth: String,
}

impl Api {
    pub fn new() -> Self {
        let lab = lab();
        Self {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("client"),
            base: format!("{}/api/", lab.url.trim_end_matches('/')),
            auth: format!("Token {}", lab.token),
        }
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> (u16, Value) {
        let mut request = self
            .http
            .request(method.clone(), format!("{}{path}", self.base))
            .header("Authorization", &self.auth)
            .header("Accept", "application/json");
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub async fn get(&self, path: &str) -> Value {
        let (status, body) = self.send(reqwest::Method::GET, path, None).await;
        assert_eq!(status, 200, "GET {path}: {body}");
        body
    }

    pub async fn post(&self, path: &str, body: Value) -> Value {
        let (status, answer) = self.send(reqwest::Method::POST, path, Some(&body)).await;
        assert_eq!(status, 201, "POST {path} {body}: {answer}");
        answer
    }

    pub async fn patch(&self, path: &str, body: Value) -> Value {
        let (status, answer) = self.send(reqwest::Method::PATCH, path, Some(&body)).await;
        assert_eq!(status, 200, "PATCH {path} {body}: {answer}");
        answer
    }

    pub async fn delete(&self, path: &str) -> u16 {
        self.send(reqwest::Method::DELETE, path, None).await.0
    }

    pub async fn results(&self, path: &str) -> Vec<Value> {
        self.get(path).await["results"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// The object with this slug at `endpoint`, created with `body` if missing.
    pub async fn get_or_create(&self, endpoint: &str, slug: &str, body: Value) -> Value {
        let found = self.results(&format!("{endpoint}?slug={slug}")).await;
        match found.into_iter().next() {
            Some(object) => object,
            None => {
                let (status, answer) = self
                    .send(reqwest::Method::POST, endpoint, Some(&body))
                    .await;
                match status {
                    201 => answer,
                    // Another test created it meanwhile.
                    _ => self
                        .results(&format!("{endpoint}?slug={slug}"))
                        .await
                        .into_iter()
                        .next()
                        .unwrap_or_else(|| panic!("cannot create {endpoint} {slug}: {answer}")),
                }
            }
        }
    }

    pub async fn device(&self, id: u64) -> Value {
        self.get(&format!("dcim/devices/{id}/")).await
    }

    pub async fn set_lifecycle(&self, id: u64, state: &str) {
        self.patch(
            &format!("dcim/devices/{id}/"),
            json!({"custom_fields": {"lifecycle": state}}),
        )
        .await;
    }

    pub async fn journal(&self, id: u64) -> Vec<Value> {
        self.results(&format!(
            "extras/journal-entries/?assigned_object_type=dcim.device&assigned_object_id={id}&ordering=created&limit=1000"
        ))
        .await
    }

    /// Every change NetBox recorded on the device, oldest first.
    pub async fn changes(&self, id: u64) -> Vec<Value> {
        self.results(&format!(
            "core/object-changes/?changed_object_type=dcim.device&changed_object_id={id}&ordering=time&limit=1000"
        ))
        .await
    }

    /// How many recorded changes moved the device's lifecycle from `from` to `to`.
    pub async fn moves(&self, id: u64, from: &str, to: &str) -> usize {
        self.changes(id)
            .await
            .iter()
            .filter(|c| {
                lifecycle_of(&c["prechange_data"]) == Some(from)
                    && lifecycle_of(&c["postchange_data"]) == Some(to)
            })
            .count()
    }
}

/// The lifecycle in a device, or in a change record's pre- or post-change data.
pub fn lifecycle_of(data: &Value) -> Option<&str> {
    let v = &data["custom_fields"]["lifecycle"];
    v.get("value").unwrap_or(v).as_str()
}

/// The device's lifecycle as the API shows it.
pub fn lifecycle(device: &Value) -> Option<String> {
    lifecycle_of(device).map(str::to_owned)
}

/// A device's journal as `kind: text` lines, oldest first.
pub fn journal_texts(entries: &[Value]) -> Vec<String> {
    entries
        .iter()
        .map(|e| {
            format!(
                "{}: {}",
                e["kind"]["value"].as_str().unwrap_or("?"),
                e["comments"].as_str().unwrap_or("")
            )
        })
        .collect()
}
