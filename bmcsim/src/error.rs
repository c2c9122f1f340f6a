//! Redfish error answers: the status code plus the standard body
//! `{"error": {"code", "message", "@Message.ExtendedInfo": [...]}}` with Base registry message ids,
//! which is what clients (and racklift's error reporting) read.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

const REGISTRY: &str = "Base.1.8";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedfishError {
    pub status: StatusCode,
    /// The Base registry message, e.g. `PropertyValueNotInList`.
    pub message_id: &'static str,
    pub message: String,
    pub args: Vec<String>,
    /// A JSON pointer to the property at fault, when there is one.
    pub related: Option<String>,
}

impl RedfishError {
    fn new(status: StatusCode, message_id: &'static str, message: String) -> Self {
        RedfishError {
            status,
            message_id,
            message,
            args: Vec::new(),
            related: None,
        }
    }

    pub fn not_found(path: &str) -> Self {
        let mut e = Self::new(
            StatusCode::NOT_FOUND,
            "ResourceMissingAtURI",
            format!("The resource at the URI {path} was not found."),
        );
        e.args = vec![path.to_owned()];
        e
    }

    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "NoValidSession",
            "There is no valid session established with the implementation.".to_owned(),
        )
    }

    pub fn precondition_failed() -> Self {
        Self::new(
            StatusCode::PRECONDITION_FAILED,
            "PreconditionFailed",
            "The ETag supplied did not match the ETag required to change this resource.".to_owned(),
        )
    }

    /// A PATCHed property whose value is not in its `@Redfish.AllowableValues`.
    pub fn value_not_in_list(property: &str, value: &Value) -> Self {
        let shown = value_text(value);
        let mut e = Self::new(
            StatusCode::BAD_REQUEST,
            "PropertyValueNotInList",
            format!(
                "The value '{shown}' for the property {property} is not in the list of acceptable values."
            ),
        );
        e.args = vec![shown, property.to_owned()];
        e.related = Some(format!("#/{property}"));
        e
    }

    /// An action parameter whose value the action does not allow.
    pub fn action_value_not_in_list(param: &str, value: &Value, action: &str) -> Self {
        let shown = value_text(value);
        let mut e = Self::new(
            StatusCode::BAD_REQUEST,
            "ActionParameterValueNotInList",
            format!(
                "The value '{shown}' for the parameter {param} in the action {action} is not in the list of acceptable values."
            ),
        );
        e.args = vec![shown, param.to_owned(), action.to_owned()];
        e.related = Some(format!("#/{param}"));
        e
    }

    pub fn action_parameter_missing(param: &str, action: &str) -> Self {
        let mut e = Self::new(
            StatusCode::BAD_REQUEST,
            "ActionParameterMissing",
            format!(
                "The action {action} requires the parameter {param} to be present in the request body."
            ),
        );
        e.args = vec![action.to_owned(), param.to_owned()];
        e
    }

    pub fn property_missing(property: &str) -> Self {
        let mut e = Self::new(
            StatusCode::BAD_REQUEST,
            "PropertyMissing",
            format!(
                "The property {property} is a required property and must be included in the request."
            ),
        );
        e.args = vec![property.to_owned()];
        e
    }

    pub fn malformed_json() -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "MalformedJSON",
            "The request body submitted was malformed JSON and could not be parsed by the receiving service.".to_owned(),
        )
    }

    pub fn session_limit() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "SessionLimitExceeded",
            "The session establishment failed due to the number of simultaneous sessions exceeding the limit of the implementation.".to_owned(),
        )
    }

    pub fn unavailable() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceTemporarilyUnavailable",
            "The service is temporarily unavailable. Retry later.".to_owned(),
        )
    }

    pub fn method_not_allowed(method: &str, path: &str) -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "OperationNotAllowed",
            format!("The HTTP method {method} is not allowed on {path}."),
        )
    }

    /// An injected fixed status (the `status` fault).
    pub fn injected(status: StatusCode) -> Self {
        Self::new(
            status,
            "GeneralError",
            "A general error has occurred. See Resolution for information on how to resolve the error.".to_owned(),
        )
    }

    pub fn body(&self) -> Value {
        let mut info = json!({
            "@odata.type": "#Message.v1_1_1.Message",
            "MessageId": format!("{REGISTRY}.{}", self.message_id),
            "Message": self.message,
            "MessageArgs": self.args,
            "Severity": if self.status.is_server_error() { "Critical" } else { "Warning" },
            "MessageSeverity": if self.status.is_server_error() { "Critical" } else { "Warning" },
            "Resolution": "None.",
        });
        if let Some(related) = &self.related {
            info["RelatedProperties"] = json!([related]);
        }
        json!({
            "error": {
                "code": format!("{REGISTRY}.{}", self.message_id),
                "message": self.message,
                "@Message.ExtendedInfo": [info],
            }
        })
    }
}

fn value_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

impl IntoResponse for RedfishError {
    fn into_response(self) -> Response {
        let body = serde_json::to_vec(&self.body()).unwrap_or_default();
        let mut response = (self.status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        );
        headers.insert("OData-Version", HeaderValue::from_static("4.0"));
        if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"bmcsim\""),
            );
        }
        response
    }
}
