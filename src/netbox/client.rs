//! The HTTP client for NetBox's REST API: authentication (v1 and v2 tokens), TLS, status codes
//! mapped to [`NetBoxError`], pagination, and the [`DeviceStore`] the reconciler uses.

use reqwest::{Method, StatusCode, header};
use serde_json::{Value, json};

use super::{Device, DeviceId, DeviceStore, DeviceUpdate, NetBoxError};
use crate::config::{NetBoxConfig, Scope, Secret};
use crate::lifecycle::{JournalKind, Lifecycle};

/// NetBox's largest page by default (`MAX_PAGE_SIZE`).
const PAGE: usize = 1000;
/// How much of an error body goes into an error message.
const ERROR_BODY_CHARS: usize = 500;

#[derive(Debug, Clone)]
pub struct NetBoxClient {
    http: reqwest::Client,
    base: url::Url,
    authorization: Secret,
}

#[derive(Debug, thiserror::Error)]
pub enum ClientSetupError {
    #[error("cannot read the NetBox CA file {path}")]
    CaFile {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the NetBox CA file {path} holds no usable PEM certificate")]
    CaPem {
        path: std::path::PathBuf,
        #[source]
        source: reqwest::Error,
    },
    #[error("cannot build the HTTP client for NetBox")]
    Build(#[source] reqwest::Error),
}

/// The `Authorization` header for a NetBox token: v2 tokens (`nbt_<key>.<token>`) are bearer
/// tokens; anything else is a v1 token.
fn authorization(token: &Secret) -> Secret {
    let token = token.expose();
    if token.starts_with("nbt_") {
        Secret::new(format!("Bearer {token}"))
    } else {
        Secret::new(format!("Token {token}"))
    }
}

impl NetBoxClient {
    pub fn new(config: &NetBoxConfig) -> Result<Self, ClientSetupError> {
        let mut builder = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout.min(std::time::Duration::from_secs(5)))
            .user_agent(concat!("racklift/", env!("CARGO_PKG_VERSION")));
        if let Some(path) = &config.ca_file {
            let pem = std::fs::read(path).map_err(|source| ClientSetupError::CaFile {
                path: path.clone(),
                source,
            })?;
            let cert =
                reqwest::Certificate::from_pem(&pem).map_err(|source| ClientSetupError::CaPem {
                    path: path.clone(),
                    source,
                })?;
            builder = builder.add_root_certificate(cert);
        }
        if !config.tls_verify {
            tracing::warn!(url = %config.url, "TLS verification of NetBox is OFF (netbox.tls_verify: false)");
            builder = builder.danger_accept_invalid_certs(true);
        }
        let mut base = config.url.clone();
        if !base.path().ends_with('/') {
            base.set_path(&format!("{}/", base.path()));
        }
        Ok(Self {
            http: builder.build().map_err(ClientSetupError::Build)?,
            base,
            authorization: authorization(&config.token),
        })
    }

    pub fn base_url(&self) -> &url::Url {
        &self.base
    }

    /// Sends one request to `path` (relative to the API root, e.g. `dcim/devices/1/`; from
    /// NetBox's root when it starts with `/`, e.g. `/graphql/`) and maps the status to an
    /// error. Returns the body and the `ETag`, if any.
    async fn call(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
        if_match: Option<&str>,
    ) -> Result<(Value, Option<String>), NetBoxError> {
        let method_name = method_name(&method);
        if let Some((key, _)) = query.iter().find(|(_, value)| value.trim().is_empty()) {
            return Err(NetBoxError::EmptyFilter {
                path: path.to_owned(),
                key: (*key).to_owned(),
            });
        }
        let url = match path.strip_prefix('/') {
            Some(from_root) => self.base.join(from_root),
            None => self.base.join("api/").and_then(|api| api.join(path)),
        }
        .map_err(|e| NetBoxError::Unexpected {
            method: method_name,
            path: path.to_owned(),
            detail: format!("cannot build the URL: {e}"),
        })?;
        let mut request = self
            .http
            .request(method, url)
            .header(header::AUTHORIZATION, self.authorization.expose())
            .header(header::ACCEPT, "application/json")
            .query(query);
        if let Some(tag) = if_match {
            request = request.header(header::IF_MATCH, tag);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let unreachable = |source| NetBoxError::Unreachable {
            url: self.base.to_string(),
            method: method_name,
            path: path.to_owned(),
            source,
        };
        let response = request.send().await.map_err(unreachable)?;
        let status = response.status();
        let etag = response
            .headers()
            .get(header::ETAG)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let text = response.text().await.map_err(unreachable)?;
        match status {
            s if s.is_success() => {
                let value = if text.is_empty() {
                    Value::Null
                } else {
                    serde_json::from_str(&text).map_err(|e| NetBoxError::Unexpected {
                        method: method_name,
                        path: path.to_owned(),
                        detail: format!("invalid JSON: {e}"),
                    })?
                };
                Ok((value, etag))
            }
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Err(NetBoxError::TokenRefused {
                status: status.as_u16(),
                method: method_name,
                path: path.to_owned(),
            }),
            StatusCode::PRECONDITION_FAILED => Err(NetBoxError::Changed {
                path: path.to_owned(),
            }),
            s if s.is_server_error() => Err(NetBoxError::Server {
                status: s.as_u16(),
                method: method_name,
                path: path.to_owned(),
                body: excerpt(&text),
            }),
            s => Err(NetBoxError::Rejected {
                status: s.as_u16(),
                method: method_name,
                path: path.to_owned(),
                body: excerpt(&text),
            }),
        }
    }

    pub async fn get(&self, path: &str, query: &[(&str, String)]) -> Result<Value, NetBoxError> {
        Ok(self.call(Method::GET, path, query, None, None).await?.0)
    }

    pub async fn post(&self, path: &str, body: &Value) -> Result<Value, NetBoxError> {
        Ok(self
            .call(Method::POST, path, &[], Some(body), None)
            .await?
            .0)
    }

    pub async fn patch(&self, path: &str, body: &Value) -> Result<Value, NetBoxError> {
        Ok(self
            .call(Method::PATCH, path, &[], Some(body), None)
            .await?
            .0)
    }

    /// One GraphQL query (NetBox's `/graphql/`): several related reads in one request. An
    /// answer with `errors` is an error naming the first.
    pub async fn graphql(&self, query: &str, variables: &Value) -> Result<Value, NetBoxError> {
        const PATH: &str = "/graphql/";
        let body = json!({ "query": query, "variables": variables });
        let (answer, _) = self
            .call(Method::POST, PATH, &[], Some(&body), None)
            .await?;
        if let Some(first) = answer
            .get("errors")
            .and_then(Value::as_array)
            .and_then(|e| e.first())
        {
            return Err(NetBoxError::Unexpected {
                method: "POST",
                path: PATH.into(),
                detail: format!(
                    "GraphQL error: {}",
                    excerpt(first.get("message").and_then(Value::as_str).unwrap_or("?"))
                ),
            });
        }
        answer
            .get("data")
            .filter(|d| d.is_object())
            .cloned()
            .ok_or_else(|| NetBoxError::Unexpected {
                method: "POST",
                path: PATH.into(),
                detail: "no data in the GraphQL answer".into(),
            })
    }

    /// Every object of a list endpoint matching `query`, page by page.
    pub async fn list(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<Vec<Value>, NetBoxError> {
        let mut all = Vec::new();
        loop {
            let mut page_query = query.to_vec();
            page_query.push(("limit", PAGE.to_string()));
            page_query.push(("offset", all.len().to_string()));
            let page = self.get(path, &page_query).await?;
            let results = page
                .get("results")
                .and_then(Value::as_array)
                .ok_or_else(|| NetBoxError::Unexpected {
                    method: "GET",
                    path: path.to_owned(),
                    detail: "no `results` list in a list answer".into(),
                })?;
            let got = results.len();
            all.extend(results.iter().cloned());
            let more = page.get("next").is_some_and(|next| !next.is_null());
            if !more || got == 0 {
                return Ok(all);
            }
        }
    }

    /// Journals `text` on the device unless it is already the device's latest entry, so a
    /// warning repeated by every DHCP renewal or every refused report is written once.
    pub async fn journal_once(
        &self,
        device: DeviceId,
        kind: JournalKind,
        text: &str,
    ) -> Result<(), NetBoxError> {
        let latest = self
            .get(
                "extras/journal-entries/",
                &[
                    ("assigned_object_type", "dcim.device".into()),
                    ("assigned_object_id", device.to_string()),
                    ("ordering", "-created".into()),
                    ("limit", "1".into()),
                ],
            )
            .await?;
        if latest["results"][0]["comments"].as_str() == Some(text) {
            return Ok(());
        }
        self.journal(device, kind, text).await
    }

    /// The device's whole record (device type, config context, every custom field) and the
    /// device as racklift reads it, from one read with its ETag; `None` when NetBox has no
    /// such device.
    pub async fn device_record(
        &self,
        id: DeviceId,
    ) -> Result<Option<(Value, Device)>, NetBoxError> {
        let path = device_path(id);
        match self.call(Method::GET, &path, &[], None, None).await {
            Ok((body, etag)) => {
                let etag = etag.ok_or_else(|| NetBoxError::Unexpected {
                    method: "GET",
                    path: path.clone(),
                    detail: "no ETag header (racklift needs NetBox ≥ 4.7 for safe writes)".into(),
                })?;
                let device =
                    Device::from_api(&body, etag).ok_or_else(|| NetBoxError::Unexpected {
                        method: "GET",
                        path,
                        detail: "the answer is not a device".into(),
                    })?;
                Ok(Some((body, device)))
            }
            Err(NetBoxError::Rejected { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `GET /api/status/`: checks the URL and that the token is accepted (NetBox answers it
    /// only to an authenticated client).
    pub async fn status(&self) -> Result<Value, NetBoxError> {
        self.get("status/", &[]).await
    }
}

fn method_name(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PATCH => "PATCH",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        _ => "HTTP",
    }
}

fn excerpt(text: &str) -> String {
    let mut chars = text.chars();
    let head: String = chars.by_ref().take(ERROR_BODY_CHARS).collect();
    if chars.next().is_some() {
        format!("{head}…")
    } else {
        head
    }
}

fn device_path(id: DeviceId) -> String {
    format!("dcim/devices/{id}/")
}

impl DeviceStore for NetBoxClient {
    async fn device(&self, id: DeviceId) -> Result<Option<Device>, NetBoxError> {
        Ok(self.device_record(id).await?.map(|(_, device)| device))
    }

    async fn update_device(
        &self,
        device: &Device,
        update: &DeviceUpdate,
    ) -> Result<String, NetBoxError> {
        let path = device_path(device.id);
        let (_, etag) = self
            .call(
                Method::PATCH,
                &path,
                &[],
                Some(&update.to_json()),
                Some(&device.etag),
            )
            .await?;
        etag.ok_or_else(|| NetBoxError::Unexpected {
            method: "PATCH",
            path,
            detail: "no ETag header (racklift needs NetBox ≥ 4.7 for safe writes)".into(),
        })
    }

    async fn journal(
        &self,
        id: DeviceId,
        kind: JournalKind,
        text: &str,
    ) -> Result<(), NetBoxError> {
        let body = json!({
            "assigned_object_type": "dcim.device",
            "assigned_object_id": id.0,
            "kind": kind.as_str(),
            "comments": text,
        });
        self.post("extras/journal-entries/", &body).await.map(drop)
    }

    async fn devices_in(
        &self,
        states: &[Lifecycle],
        scope: &Scope,
    ) -> Result<Vec<DeviceId>, NetBoxError> {
        if states.is_empty() {
            return Ok(Vec::new());
        }
        let mut query: Vec<(&str, String)> = states
            .iter()
            .map(|state| ("cf_lifecycle", state.as_str().to_owned()))
            .collect();
        // Repeated `site` and `role` filters are OR'd by NetBox; repeated `tag` filters are
        // AND'd, so several tags are left to the per-device scope check.
        query.extend(scope.sites.iter().map(|site| ("site", site.clone())));
        query.extend(scope.roles.iter().map(|role| ("role", role.clone())));
        if let [tag] = scope.tags.as_slice() {
            query.push(("tag", tag.clone()));
        }
        query.push(("fields", "id".into()));
        let devices = self.list("dcim/devices/", &query).await?;
        Ok(devices
            .iter()
            .filter_map(|d| d.get("id").and_then(Value::as_u64).map(DeviceId))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v2_tokens_are_bearer_tokens_and_v1_tokens_are_not() {
        assert_eq!(
            authorization(&Secret::new("nbt_abc123.xyz")).expose(),
            "Bearer nbt_abc123.xyz"
        );
        assert_eq!(
            authorization(&Secret::new("0123456789abcdef0123456789abcdef01234567")).expose(),
            "Token 0123456789abcdef0123456789abcdef01234567"
        );
    }

    #[test]
    fn long_error_bodies_are_cut() {
        let long = "x".repeat(2000);
        let cut = excerpt(&long);
        assert_eq!(cut.chars().count(), ERROR_BODY_CHARS + 1);
        assert_eq!(excerpt("short"), "short");
    }
}
