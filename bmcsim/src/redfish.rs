//! The Redfish service of one BMC: authentication, sessions, GET/PATCH/POST/DELETE on the
//! tree plus this BMC's overlay. Faults that act before this point (latency, injected status,
//! dropped connections) are applied by the listener (`server.rs`).

use std::sync::Arc;
use std::time::Instant;

use axum::body::{Body, to_bytes};
use axum::http::{HeaderMap, HeaderValue, Method, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde_json::Value;

use crate::error::RedfishError;
use crate::etag::Rendered;
use crate::state::{Bmc, BmcState, is_account_collection};
use crate::tree::normalize_path;

/// Request bodies larger than this are refused (Redfish bodies are small JSON documents).
const MAX_BODY: usize = 1 << 20;

/// Resources any client may GET without credentials (DSP0266 §13.3.1: the service root, the
/// OData service document and `$metadata`, plus `/redfish` which lists versions).
fn is_open(path: &str) -> bool {
    matches!(
        path,
        "/redfish" | "/redfish/v1" | "/redfish/v1/odata" | "/redfish/v1/$metadata"
    )
}

pub async fn handle(bmc: Arc<Bmc>, request: Request<Body>) -> Response {
    let (parts, body) = request.into_parts();
    let body = match to_bytes(body, MAX_BODY).await {
        Ok(body) => body,
        Err(_) => return RedfishError::malformed_json().into_response(),
    };
    let path = normalize_path(parts.uri.path());
    tracing::debug!(bmc = %bmc.name, method = %parts.method, %path, "request");
    match dispatch(&bmc, &parts.method, &path, &parts.headers, &body) {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

fn dispatch(
    bmc: &Bmc,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, RedfishError> {
    let tree = &bmc.tree;
    let now = Instant::now();
    let mut state = bmc.state();
    let sessions = tree.sessions_path.as_str();
    let is_sessions = path.eq_ignore_ascii_case(sessions);

    // Logging in needs no credentials; the open resources need none to read.
    let login = *method == Method::POST && is_sessions;
    let open_read = matches!(*method, Method::GET | Method::HEAD) && is_open(path);
    if !login && !open_read {
        let authorized = !state.faults.unauthorized && authenticate(bmc, &mut state, headers, now);
        if !authorized {
            return Err(RedfishError::unauthorized());
        }
    }

    let session_id = session_member(sessions, path);
    match *method {
        Method::GET | Method::HEAD => {
            if is_sessions {
                return Ok(resource(StatusCode::OK, state.session_collection(tree)));
            }
            if let Some(id) = session_member(sessions, path) {
                let rendered = id.and_then(|id| state.session_resource(tree, id));
                return rendered
                    .map(|r| resource(StatusCode::OK, r))
                    .ok_or_else(|| RedfishError::not_found(path));
            }
            let key = tree
                .resolve(path)
                .ok_or_else(|| RedfishError::not_found(path))?;
            let rendered = state
                .current(tree, key)
                .ok_or_else(|| RedfishError::not_found(path))?;
            Ok(resource(StatusCode::OK, rendered))
        }
        Method::PATCH => {
            if is_sessions || session_id.is_some() {
                return Err(RedfishError::method_not_allowed("PATCH", path));
            }
            let key = tree
                .resolve(path)
                .ok_or_else(|| RedfishError::not_found(path))?;
            let body = parse_json(body)?;
            let if_match = headers.get(header::IF_MATCH).and_then(|v| v.to_str().ok());
            let rendered = state.patch(tree, key, &body, if_match)?;
            Ok(resource(StatusCode::OK, rendered))
        }
        Method::POST => {
            let body = parse_json(body)?;
            if is_sessions {
                return login_session(bmc, &mut state, &body, now);
            }
            if let Some(action) = tree.reset_action(path) {
                state.reset(tree, action, &body)?;
                return Ok(StatusCode::NO_CONTENT.into_response());
            }
            // Any other action or collection POST is accepted and recorded, changing nothing
            // (except that creating an account adds a login).
            if let Some(key) = tree.resolve(path)
                && is_account_collection(tree, &state, key)
            {
                state.post_account(&body);
            }
            state.record_post(path, body);
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        Method::DELETE => match session_id {
            Some(Some(id)) if state.delete_session(id) => {
                Ok(StatusCode::NO_CONTENT.into_response())
            }
            Some(_) => Err(RedfishError::not_found(path)),
            None => Err(RedfishError::method_not_allowed("DELETE", path)),
        },
        _ => Err(RedfishError::method_not_allowed(method.as_str(), path)),
    }
}

/// HTTP Basic with a known user, or the `X-Auth-Token` of an open session.
fn authenticate(bmc: &Bmc, state: &mut BmcState, headers: &HeaderMap, now: Instant) -> bool {
    if let Some(token) = headers.get("X-Auth-Token").and_then(|v| v.to_str().ok()) {
        return state
            .session_user(token, bmc.session_timeout, now)
            .is_some();
    }
    let Some(basic) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
    else {
        return false;
    };
    let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(basic.trim()) else {
        return false;
    };
    let decoded = String::from_utf8_lossy(&decoded);
    let Some((user, password)) = decoded.split_once(':') else {
        return false;
    };
    state.check_password(user, password)
}

/// POST to the session collection: 201 with `X-Auth-Token`, `Location` and the session.
fn login_session(
    bmc: &Bmc,
    state: &mut BmcState,
    body: &Value,
    now: Instant,
) -> Result<Response, RedfishError> {
    let field = |name: &str| {
        body.get(name)
            .and_then(Value::as_str)
            .ok_or_else(|| RedfishError::property_missing(name))
    };
    let (user, password) = (field("UserName")?, field("Password")?);
    let (id, token) =
        state.create_session(user, password, bmc.max_sessions, bmc.session_timeout, now)?;
    let tree = &bmc.tree;
    let location = format!("{}/{id}", tree.sessions_path);
    let rendered = state
        .session_resource(tree, id)
        .ok_or_else(RedfishError::unavailable)?;
    let mut response = resource(StatusCode::CREATED, rendered);
    let headers = response.headers_mut();
    if let Ok(token) = HeaderValue::from_str(&token) {
        headers.insert("X-Auth-Token", token);
    }
    if let Ok(location) = HeaderValue::from_str(&location) {
        headers.insert(header::LOCATION, location);
    }
    Ok(response)
}

/// `Some(Some(id))` for `<sessions>/<id>`, `Some(None)` for another path one level under the
/// session collection (a captured session that is not open, or a bad id), `None` elsewhere.
fn session_member(sessions: &str, path: &str) -> Option<Option<u64>> {
    let prefix = path.get(..sessions.len())?;
    if !prefix.eq_ignore_ascii_case(sessions) {
        return None;
    }
    let rest = path[sessions.len()..].strip_prefix('/')?;
    if rest.contains('/') {
        return Some(None);
    }
    Some(rest.parse().ok())
}

fn parse_json(body: &[u8]) -> Result<Value, RedfishError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        // Some clients POST actions with an empty body.
        return Ok(Value::Object(Default::default()));
    }
    serde_json::from_slice(body).map_err(|_| RedfishError::malformed_json())
}

/// A resource answer: JSON body, `ETag` matching its `@odata.etag`.
fn resource(status: StatusCode, rendered: Rendered) -> Response {
    let mut response = (status, rendered.body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    headers.insert("OData-Version", HeaderValue::from_static("4.0"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(etag) = HeaderValue::from_str(&rendered.etag) {
        headers.insert(header::ETAG, etag);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_member_paths() {
        let s = "/redfish/v1/SessionService/Sessions";
        assert_eq!(session_member(s, s), None);
        assert_eq!(
            session_member(s, "/redfish/v1/SessionService/Sessions/7"),
            Some(Some(7))
        );
        assert_eq!(
            session_member(s, "/redfish/v1/sessionservice/sessions/7"),
            Some(Some(7))
        );
        assert_eq!(
            session_member(s, "/redfish/v1/SessionService/Sessions/274x"),
            Some(None)
        );
        assert_eq!(
            session_member(s, "/redfish/v1/SessionService/Sessions0000"),
            None
        );
        assert_eq!(session_member(s, "/redfish/v1/Systems"), None);
    }

    #[test]
    fn open_resources() {
        assert!(is_open("/redfish/v1"));
        assert!(is_open("/redfish/v1/$metadata"));
        assert!(!is_open("/redfish/v1/Systems"));
    }
}
