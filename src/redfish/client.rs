//! One BMC, one session: TLS as configured (verified by default, a per-BMC CA), a Redfish
//! session (`X-Auth-Token`) with basic auth as the fallback for BMCs without sessions, every
//! request bounded by the endpoint's timeout, and the session deleted when done.

use std::path::PathBuf;
use std::time::Duration;

use reqwest::{Method, StatusCode, header};
use serde_json::{Value, json};

use super::{RedfishError, Vendor, error_message};
use crate::config::Secret;

/// Where a BMC is and how to talk to it.
#[derive(Debug, Clone)]
pub struct BmcEndpoint {
    /// `https://<OOB IP>:<port>`.
    pub url: url::Url,
    pub username: String,
    pub password: Secret,
    pub tls_verify: bool,
    pub ca_file: Option<PathBuf>,
    pub timeout: Duration,
}

#[derive(Debug)]
enum Auth {
    /// A Redfish session: the token, and the session's URI to delete.
    Token {
        token: Secret,
        location: Option<String>,
    },
    Basic {
        username: String,
        password: Secret,
    },
}

/// A resource as read: its body and the `ETag` header, if any.
#[derive(Debug, Clone)]
pub struct Resource {
    pub body: Value,
    pub etag: Option<String>,
}

/// An open connection to one BMC. Call [`Session::close`] when done: BMCs cap their sessions.
#[derive(Debug)]
pub struct Session {
    http: reqwest::Client,
    base: url::Url,
    auth: Auth,
    pub vendor: Vendor,
    pub root: Value,
}

const SESSIONS_DEFAULT: &str = "/redfish/v1/SessionService/Sessions";

impl Session {
    /// Reads the service root (unauthenticated, as Redfish allows), detects the vendor, and
    /// logs in.
    pub async fn open(endpoint: &BmcEndpoint) -> Result<Self, RedfishError> {
        let url = endpoint.url.to_string();
        let tls = |detail: String| RedfishError::Tls {
            url: url.clone(),
            detail,
        };
        let mut builder = reqwest::Client::builder()
            .timeout(endpoint.timeout)
            .connect_timeout(endpoint.timeout)
            .user_agent(concat!("racklift/", env!("CARGO_PKG_VERSION")));
        if let Some(path) = &endpoint.ca_file {
            let pem = std::fs::read(path)
                .map_err(|e| tls(format!("cannot read the CA file {}: {e}", path.display())))?;
            let ca = reqwest::Certificate::from_pem(&pem).map_err(|e| {
                tls(format!(
                    "the CA file {} holds no PEM certificate: {e}",
                    path.display()
                ))
            })?;
            builder = builder.add_root_certificate(ca);
        }
        if !endpoint.tls_verify {
            builder = builder.danger_accept_invalid_certs(true);
        }
        let http = builder.build().map_err(|e| tls(e.to_string()))?;
        let mut session = Self {
            http,
            base: endpoint.url.clone(),
            auth: Auth::Basic {
                username: endpoint.username.clone(),
                password: endpoint.password.clone(),
            },
            vendor: Vendor::Generic,
            root: Value::Null,
        };
        session.root = session.read("/redfish/v1/", false).await?.body;
        session.vendor = Vendor::detect(&session.root);
        // A BMC without a session service (sushy-tools) gets basic auth on every request, as
        // Redfish allows.
        let sessions = session
            .root
            .pointer("/Links/Sessions/@odata.id")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .or_else(|| {
                session
                    .root
                    .get("SessionService")
                    .map(|_| SESSIONS_DEFAULT.to_owned())
            });
        if let Some(sessions) = sessions {
            let login =
                json!({"UserName": endpoint.username, "Password": endpoint.password.expose()});
            match session.login(&sessions, &login).await {
                Ok(auth) => session.auth = auth,
                Err(RedfishError::Status {
                    status: 404 | 405 | 501,
                    ..
                }) => {}
                // Every session slot is taken (by sessions a killed racklift could not delete,
                // say, which the BMC keeps until its own timeout): Redfish services take basic
                // auth too, so racklift is not locked out until then.
                Err(RedfishError::Status { status: 503, .. }) => {
                    tracing::warn!(bmc = %session.base, "the BMC refused a new session (503, its sessions are all taken); using basic auth");
                }
                Err(e) => return Err(e),
            }
        }
        Ok(session)
    }

    async fn login(&self, path: &str, body: &Value) -> Result<Auth, RedfishError> {
        let response = self
            .request(Method::POST, path, Some(body), None, false)
            .await?;
        let token = response
            .headers()
            .get("X-Auth-Token")
            .and_then(|v| v.to_str().ok())
            .map(Secret::new);
        let location = response
            .headers()
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        self.check(status, "POST", path, &text)?;
        let location = location.or_else(|| {
            serde_json::from_str::<Value>(&text).ok().and_then(|v| {
                v.get("@odata.id")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            })
        });
        let token = token.ok_or_else(|| {
            self.unexpected(
                path,
                "the session was created without an X-Auth-Token header",
            )
        })?;
        Ok(Auth::Token { token, location })
    }

    /// The URL of a link the BMC gave. Only links on the BMC's own origin are followed: an
    /// absolute link to another host (a hostile or misconfigured BMC) would otherwise receive
    /// racklift's credentials or a reset.
    fn url(&self, path: &str) -> Result<url::Url, RedfishError> {
        let url = self
            .base
            .join(path)
            .map_err(|e| self.unexpected(path, &format!("not a usable link: {e}")))?;
        if url.origin() != self.base.origin() {
            return Err(self.unexpected(
                path,
                &format!(
                    "the link leads to {}, not to this BMC; racklift follows a BMC's links only on the BMC itself",
                    url.origin().ascii_serialization()
                ),
            ));
        }
        Ok(url)
    }

    /// An answer racklift cannot use, at `path` of this BMC.
    pub fn unexpected(&self, path: &str, detail: &str) -> RedfishError {
        RedfishError::Unexpected {
            url: self.base.to_string(),
            path: path.to_owned(),
            detail: detail.to_owned(),
        }
    }

    async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        if_match: Option<&str>,
        authenticated: bool,
    ) -> Result<reqwest::Response, RedfishError> {
        let method_name = method_name(&method);
        let mut request = self
            .http
            .request(method, self.url(path)?)
            .header(header::ACCEPT, "application/json");
        if authenticated {
            request = match &self.auth {
                Auth::Token { token, .. } => request.header("X-Auth-Token", token.expose()),
                Auth::Basic { username, password } => {
                    request.basic_auth(username, Some(password.expose()))
                }
            };
        }
        if let Some(tag) = if_match {
            request = request.header(header::IF_MATCH, tag);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        request
            .send()
            .await
            .map_err(|source| RedfishError::Unreachable {
                url: self.base.to_string(),
                method: method_name,
                path: path.to_owned(),
                source,
            })
    }

    fn check(
        &self,
        status: StatusCode,
        method: &'static str,
        path: &str,
        body: &str,
    ) -> Result<(), RedfishError> {
        match status {
            s if s.is_success() => Ok(()),
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Err(RedfishError::Credentials {
                url: self.base.to_string(),
                status: status.as_u16(),
            }),
            s => Err(RedfishError::Status {
                url: self.base.to_string(),
                method,
                path: path.to_owned(),
                status: s.as_u16(),
                message: error_message(body),
            }),
        }
    }

    /// Sends one request and checks its status; returns the answer's text and `ETag`.
    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        if_match: Option<&str>,
        authenticated: bool,
    ) -> Result<(String, Option<String>), RedfishError> {
        let method_name = method_name(&method);
        let response = self
            .request(method, path, body, if_match, authenticated)
            .await?;
        let status = response.status();
        let etag = response
            .headers()
            .get(header::ETAG)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let text = response
            .text()
            .await
            .map_err(|source| RedfishError::Unreachable {
                url: self.base.to_string(),
                method: method_name,
                path: path.to_owned(),
                source,
            })?;
        self.check(status, method_name, path, &text)?;
        Ok((text, etag))
    }

    /// Reads a resource. (A PATCH or an action is judged by its status alone: what a BMC puts
    /// in the body of a success varies, and racklift reads the resource back anyway.)
    pub async fn get(&self, path: &str) -> Result<Resource, RedfishError> {
        self.read(path, true).await
    }

    async fn read(&self, path: &str, authenticated: bool) -> Result<Resource, RedfishError> {
        let (text, etag) = self
            .send(Method::GET, path, None, None, authenticated)
            .await?;
        let body = if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text)
                .map_err(|e| self.unexpected(path, &format!("invalid JSON: {e}")))?
        };
        Ok(Resource { body, etag })
    }

    pub async fn patch(
        &self,
        path: &str,
        body: &Value,
        if_match: Option<&str>,
    ) -> Result<(), RedfishError> {
        self.send(Method::PATCH, path, Some(body), if_match, true)
            .await
            .map(drop)
    }

    pub async fn post(&self, path: &str, body: &Value) -> Result<(), RedfishError> {
        self.send(Method::POST, path, Some(body), None, true)
            .await
            .map(drop)
    }

    pub fn url_text(&self) -> String {
        self.base.to_string()
    }

    /// Deletes the session. A BMC that does not answer keeps it until its own timeout; that is
    /// logged, not an error of the stage.
    pub async fn close(self) {
        if let Auth::Token {
            location: Some(location),
            ..
        } = &self.auth
            && let Err(e) = self.send(Method::DELETE, location, None, None, true).await
        {
            tracing::warn!(bmc = %self.base, error = %e, "could not delete the Redfish session; the BMC will expire it");
        }
    }
}

fn method_name(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        _ => "HTTP",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(base: &str) -> Session {
        Session {
            http: reqwest::Client::new(),
            base: base.parse().expect("url"),
            auth: Auth::Basic {
                username: "admin".into(),
                password: Secret::new("pw"),
            },
            vendor: Vendor::Generic,
            root: Value::Null,
        }
    }

    #[test]
    fn links_are_followed_only_on_the_bmcs_own_origin() {
        let s = session("https://10.0.0.5:443/");
        assert_eq!(
            s.url("/redfish/v1/Systems/1").expect("relative").as_str(),
            "https://10.0.0.5/redfish/v1/Systems/1"
        );
        assert!(
            s.url("https://10.0.0.5/redfish/v1/SessionService/Sessions/7")
                .is_ok(),
            "an absolute link to the BMC itself"
        );
        for foreign in [
            "https://10.0.0.6/redfish/v1/Systems/1",
            "//evil.example/redfish/v1/",
            "http://10.0.0.5/redfish/v1/",
            "https://10.0.0.5:8443/redfish/v1/",
        ] {
            let err = s.url(foreign).expect_err(foreign).to_string();
            assert!(err.contains("not to this BMC"), "{foreign}: {err}");
        }
    }
}
