//! One BMC, one session: TLS as configured (verified by default, a per-BMC CA), a Redfish
//! session (`X-Auth-Token`) with basic auth as the fallback for BMCs without sessions, every
//! request bounded by the endpoint's timeout, a token the BMC stopped taking (it expired the
//! session) replaced by one new login, and the session deleted when done — by [`Session::close`],
//! or, for a session dropped without it, by a DELETE spawned from `Drop`.

use std::path::PathBuf;
use std::time::Duration;

use reqwest::{Method, StatusCode, header};
use serde_json::{Value, json};

use super::{RedfishError, Vendor, error_message};
use crate::config::Secret;

/// Where a BMC is and how to talk to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BmcEndpoint {
    /// `https://<OOB IP>:<port>`.
    pub url: url::Url,
    pub username: String,
    pub password: Secret,
    pub tls_verify: bool,
    pub ca_file: Option<PathBuf>,
    pub timeout: Duration,
}

#[derive(Debug, Clone)]
enum Auth {
    /// A Redfish session: the token, and the session's URI to delete.
    Token {
        token: Secret,
        location: Option<String>,
    },
    /// HTTP basic auth with the endpoint's credentials on every request.
    Basic,
    /// The session was deleted ([`Session::close`]); a request made after that logs in again.
    Closed,
}

/// The credentials requests carry now, and how many logins replaced them: a request that met a
/// 401 logs in again only if no one else has since it read them.
#[derive(Debug)]
struct Login {
    auth: Auth,
    generation: u64,
}

/// A resource as read: its body and the `ETag` header, if any.
#[derive(Debug, Clone)]
pub struct Resource {
    pub body: Value,
    pub etag: Option<String>,
}

/// An open connection to one BMC. Call [`Session::close`] when done: BMCs cap their sessions
/// (a session dropped without it is deleted by a spawned DELETE).
///
/// A session may be used by several tasks at once (it is shared through
/// [`Sessions`](super::Sessions)): requests carry the current token, and a 401 makes one of
/// them log in again while the others wait for it and use its token.
#[derive(Debug)]
pub struct Session {
    http: reqwest::Client,
    endpoint: BmcEndpoint,
    /// Where to log in: the session collection the service root links, if it has one.
    sessions: Option<String>,
    /// Never held across an `.await` (a std mutex: every critical section is a clone).
    login: std::sync::Mutex<Login>,
    /// One login again at a time: held across the login POST, hence tokio's mutex.
    relogin: tokio::sync::Mutex<()>,
    /// Where `Drop` spawns the DELETE of a session not closed.
    runtime: Option<tokio::runtime::Handle>,
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
        let mut session = Self::new(http, endpoint.clone());
        session.root = session.read("/redfish/v1/", false).await?.body;
        session.vendor = Vendor::detect(&session.root);
        // A BMC without a session service (sushy-tools) gets basic auth on every request, as
        // Redfish allows.
        session.sessions = session
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
        let auth = session.log_in().await?;
        session.lock_login().auth = auth;
        Ok(session)
    }

    /// Not logged in yet: basic auth, an empty service root.
    fn new(http: reqwest::Client, endpoint: BmcEndpoint) -> Self {
        Self {
            http,
            endpoint,
            sessions: None,
            login: std::sync::Mutex::new(Login {
                auth: Auth::Basic,
                generation: 0,
            }),
            relogin: tokio::sync::Mutex::new(()),
            runtime: tokio::runtime::Handle::try_current().ok(),
            vendor: Vendor::Generic,
            root: Value::Null,
        }
    }

    /// The endpoint this session was opened for (its password included: compared, never shown).
    pub fn endpoint(&self) -> &BmcEndpoint {
        &self.endpoint
    }

    fn lock_login(&self) -> std::sync::MutexGuard<'_, Login> {
        self.login.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new session on the BMC, or basic auth where it has no session service (or no session
    /// slot left).
    async fn log_in(&self) -> Result<Auth, RedfishError> {
        let Some(sessions) = &self.sessions else {
            return Ok(Auth::Basic);
        };
        let body = json!({"UserName": self.endpoint.username, "Password": self.endpoint.password.expose()});
        match self.create_session(sessions, &body).await {
            Ok(auth) => Ok(auth),
            Err(RedfishError::Status {
                status: 404 | 405 | 501,
                ..
            }) => Ok(Auth::Basic),
            // Every session slot is taken (by sessions a killed racklift could not delete,
            // say, which the BMC keeps until its own timeout): Redfish services take basic
            // auth too, so racklift is not locked out until then.
            Err(RedfishError::Status { status: 503, .. }) => {
                tracing::warn!(bmc = %self.endpoint.url, "the BMC refused a new session (503, its sessions are all taken); using basic auth");
                Ok(Auth::Basic)
            }
            Err(e) => Err(e),
        }
    }

    /// Logs in again after a 401 to a request sent with the login of `generation`, unless
    /// another request already has: then its login is used. A failed login (the password
    /// refused) is the caller's error; there is no second try.
    async fn log_in_again(&self, generation: u64) -> Result<Auth, RedfishError> {
        let _one_at_a_time = self.relogin.lock().await;
        {
            let login = self.lock_login();
            if login.generation != generation && !matches!(login.auth, Auth::Closed) {
                return Ok(login.auth.clone());
            }
        }
        tracing::info!(bmc = %self.endpoint.url, user = %self.endpoint.username, "the BMC no longer takes racklift's Redfish session (expired or deleted): logging in again");
        let auth = self.log_in().await?;
        let mut login = self.lock_login();
        login.auth = auth.clone();
        login.generation += 1;
        Ok(auth)
    }

    async fn create_session(&self, path: &str, body: &Value) -> Result<Auth, RedfishError> {
        let response = self
            .request(Method::POST, path, Some(body), None, None)
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
        let base = &self.endpoint.url;
        let url = base
            .join(path)
            .map_err(|e| self.unexpected(path, &format!("not a usable link: {e}")))?;
        if url.origin() != base.origin() {
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
            url: self.endpoint.url.to_string(),
            path: path.to_owned(),
            detail: detail.to_owned(),
        }
    }

    /// Sends one request with `auth` (`None`: unauthenticated).
    async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        if_match: Option<&str>,
        auth: Option<&Auth>,
    ) -> Result<reqwest::Response, RedfishError> {
        let method_name = method_name(&method);
        let mut request = self
            .http
            .request(method, self.url(path)?)
            .header(header::ACCEPT, "application/json");
        request = match auth {
            Some(Auth::Token { token, .. }) => request.header("X-Auth-Token", token.expose()),
            Some(Auth::Basic) => request.basic_auth(
                &self.endpoint.username,
                Some(self.endpoint.password.expose()),
            ),
            None | Some(Auth::Closed) => request,
        };
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
                url: self.endpoint.url.to_string(),
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
                url: self.endpoint.url.to_string(),
                status: status.as_u16(),
            }),
            s => Err(RedfishError::Status {
                url: self.endpoint.url.to_string(),
                method,
                path: path.to_owned(),
                status: s.as_u16(),
                message: error_message(body),
            }),
        }
    }

    /// Sends one request and checks its status; returns the answer's text and `ETag`. An
    /// authenticated request answered 401 while racklift holds a session token (the BMC expired
    /// or deleted the session) logs in again and is sent once more: a 401 means the BMC did
    /// nothing with it. A second 401, or a refused login, is the error.
    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        if_match: Option<&str>,
        authenticated: bool,
    ) -> Result<(String, Option<String>), RedfishError> {
        let method_name = method_name(&method);
        let response = if authenticated {
            let (mut auth, generation) = {
                let login = self.lock_login();
                (login.auth.clone(), login.generation)
            };
            if matches!(auth, Auth::Closed) {
                auth = self.log_in_again(generation).await?;
            }
            let response = self
                .request(method.clone(), path, body, if_match, Some(&auth))
                .await?;
            if response.status() == StatusCode::UNAUTHORIZED && matches!(auth, Auth::Token { .. }) {
                let auth = self.log_in_again(generation).await?;
                self.request(method, path, body, if_match, Some(&auth))
                    .await?
            } else {
                response
            }
        } else {
            self.request(method, path, body, if_match, None).await?
        };
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
                url: self.endpoint.url.to_string(),
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
        self.endpoint.url.to_string()
    }

    /// Deletes the session on the BMC (awaited, bounded by the request timeout). A BMC that
    /// does not answer keeps it until its own timeout; that is logged, not an error of the
    /// stage. A request made afterwards logs in again.
    pub async fn close(&self) {
        if let Some(logout) = self.logout() {
            logout.send().await;
        }
    }

    /// The DELETE of the session, if there is one to delete; from now on the session is
    /// closed.
    fn logout(&self) -> Option<Logout> {
        let auth = {
            let mut login = self.lock_login();
            if !matches!(login.auth, Auth::Token { .. }) {
                return None;
            }
            login.generation += 1;
            std::mem::replace(&mut login.auth, Auth::Closed)
        };
        let Auth::Token {
            token,
            location: Some(location),
        } = auth
        else {
            return None;
        };
        let url = match self.url(&location) {
            Ok(url) => url,
            Err(e) => {
                tracing::warn!(bmc = %self.endpoint.url, error = %e, "cannot delete the Redfish session; the BMC will expire it");
                return None;
            }
        };
        Some(Logout {
            http: self.http.clone(),
            url,
            token,
            bmc: self.endpoint.url.clone(),
        })
    }
}

/// A session dropped without [`Session::close`] (left in no cache, no reconcile using it) is
/// deleted on the BMC by a task of its own: dropping cannot wait for the BMC's answer.
impl Drop for Session {
    fn drop(&mut self) {
        let Some(logout) = self.logout() else {
            return;
        };
        match &self.runtime {
            Some(runtime) => {
                runtime.spawn(logout.send());
            }
            None => {
                tracing::warn!(bmc = %self.endpoint.url, "cannot delete the Redfish session (no runtime); the BMC will expire it");
            }
        }
    }
}

/// The DELETE of one Redfish session: what a session needs to log out once it is gone.
#[derive(Debug)]
struct Logout {
    http: reqwest::Client,
    url: url::Url,
    token: Secret,
    bmc: url::Url,
}

impl Logout {
    /// Bounded by the client's request timeout (`bmc.timeout`).
    async fn send(self) {
        let answer = self
            .http
            .delete(self.url.clone())
            .header(header::ACCEPT, "application/json")
            .header("X-Auth-Token", self.token.expose())
            .send()
            .await;
        match answer {
            Ok(response) if response.status().is_success() => {
                tracing::debug!(bmc = %self.bmc, "Redfish session deleted");
            }
            Ok(response) => {
                tracing::warn!(bmc = %self.bmc, status = response.status().as_u16(), "could not delete the Redfish session; the BMC will expire it");
            }
            Err(e) => {
                tracing::warn!(bmc = %self.bmc, error = %e, "could not delete the Redfish session; the BMC will expire it");
            }
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
        Session::new(
            reqwest::Client::new(),
            BmcEndpoint {
                url: base.parse().expect("url"),
                username: "admin".into(),
                password: Secret::new("pw"),
                tls_verify: true,
                ca_file: None,
                timeout: Duration::from_secs(1),
            },
        )
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
