//! Kubernetes-shaped failures: every error the simulated API server returns is a `Status`
//! object with the `code` and `reason` a real API server would use, so clients (kubectl,
//! kube-rs, coldstart itself) take the same error paths they take in production.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// One broken field rule, as apimachinery's `field.Error` words it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// The path, e.g. `metadata.annotations[api-approved.kubernetes.io]`.
    pub field: String,
    pub problem: FieldProblem,
    pub detail: String,
}

/// What is wrong with a field (`field.ErrorType`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldProblem {
    Required,
    /// The value given, shown quoted.
    Invalid(String),
    /// A value outside an enumeration, shown quoted.
    Unsupported(String),
}

impl FieldError {
    fn reason(&self) -> &'static str {
        match self.problem {
            FieldProblem::Required => "FieldValueRequired",
            FieldProblem::Invalid(_) => "FieldValueInvalid",
            FieldProblem::Unsupported(_) => "FieldValueNotSupported",
        }
    }

    /// The cause's message: the error without its field.
    fn message(&self) -> String {
        let what = match &self.problem {
            FieldProblem::Required => "Required value".to_owned(),
            FieldProblem::Invalid(v) => format!("Invalid value: {v:?}"),
            FieldProblem::Unsupported(v) => format!("Unsupported value: {v:?}"),
        };
        if self.detail.is_empty() {
            what
        } else {
            format!("{what}: {}", self.detail)
        }
    }
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message())
    }
}

/// A failed API call, as the API server reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    pub details: Option<Box<Value>>,
    /// Seconds, for 429 and 503 (sent as `Retry-After`).
    pub retry_after: Option<u64>,
}

impl ApiError {
    fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            code,
            reason,
            message: message.into(),
            details: None,
            retry_after: None,
        }
    }

    fn with_details(mut self, name: &str, kind: &str) -> Self {
        self.details = Some(Box::new(json!({"name": name, "kind": kind})));
        self
    }

    /// An error another API server returned (kube-apiserver, for the controllers running
    /// beside it), with its code and reason kept.
    pub fn remote(code: u16, reason: &str, message: impl Into<String>) -> Self {
        const REASONS: &[&str] = &[
            "NotFound",
            "AlreadyExists",
            "Conflict",
            "Invalid",
            "BadRequest",
            "Forbidden",
            "Unauthorized",
            "MethodNotAllowed",
            "Gone",
            "TooManyRequests",
            "ServiceUnavailable",
            "InternalError",
            "Timeout",
        ];
        let reason = REASONS
            .iter()
            .copied()
            .find(|r| *r == reason)
            .unwrap_or("Unknown");
        Self::new(code, reason, message)
    }

    pub fn not_found(resource: &str, name: &str) -> Self {
        Self::new(404, "NotFound", format!("{resource} \"{name}\" not found"))
            .with_details(name, resource)
    }

    pub fn path_not_found() -> Self {
        Self::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )
    }

    pub fn already_exists(resource: &str, name: &str) -> Self {
        Self::new(
            409,
            "AlreadyExists",
            format!("{resource} \"{name}\" already exists"),
        )
        .with_details(name, resource)
    }

    pub fn conflict(resource: &str, name: &str) -> Self {
        Self::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {resource} \"{name}\": the object has been modified; please apply your changes to the latest version and try again"
            ),
        )
        .with_details(name, resource)
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    pub fn invalid(kind: &str, name: &str, message: impl Into<String>) -> Self {
        let message = message.into();
        let mut e = Self::new(
            422,
            "Invalid",
            format!("{kind} \"{name}\" is invalid: {message}"),
        );
        // kubectl prints an Invalid error from its causes, so the reason must be one.
        e.details = Some(Box::new(json!({"name": name, "kind": kind,
            "causes": [{"reason": "FieldValueInvalid", "message": message, "field": ""}]})));
        e
    }

    /// Refused for breaking field rules, worded as `field.ErrorList` is: the message names
    /// the qualified kind (`CustomResourceDefinition.apiextensions.k8s.io`) and each cause,
    /// and the details carry one cause per field, which kubectl prints.
    pub fn invalid_fields(group: &str, kind: &str, name: &str, errors: &[FieldError]) -> Self {
        let qualified = if group.is_empty() {
            kind.to_owned()
        } else {
            format!("{kind}.{group}")
        };
        let shown: Vec<String> = errors.iter().map(FieldError::to_string).collect();
        let joined = match shown.as_slice() {
            [one] => one.clone(),
            many => format!("[{}]", many.join(", ")),
        };
        let mut e = Self::new(
            422,
            "Invalid",
            format!("{qualified} \"{name}\" is invalid: {joined}"),
        );
        let causes: Vec<Value> = errors
            .iter()
            .map(|f| json!({"reason": f.reason(), "message": f.message(), "field": f.field}))
            .collect();
        e.details = Some(Box::new(
            json!({"name": name, "group": group, "kind": kind, "causes": causes}),
        ));
        e
    }

    /// An admission plugin's refusal of one object, worded as `admission.NewForbidden`:
    /// `pods "web" is forbidden: <why>` (`resource` qualified by its group, as
    /// `deployments.apps`).
    pub fn forbidden_object(resource: &str, name: &str, why: &str) -> Self {
        let message = if name.is_empty() {
            format!("{resource} is forbidden: {why}")
        } else {
            format!("{resource} \"{name}\" is forbidden: {why}")
        };
        Self::new(403, "Forbidden", message).with_details(name, resource)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(403, "Forbidden", message)
    }

    pub fn unauthorized() -> Self {
        Self::new(401, "Unauthorized", "Unauthorized")
    }

    pub fn method_not_allowed() -> Self {
        Self::new(
            405,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource",
        )
    }

    pub fn unsupported_media_type(content_type: &str) -> Self {
        Self::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/merge-patch+json, application/json-patch+json, application/strategic-merge-patch+json, application/apply-patch+yaml (got {content_type:?})"
            ),
        )
    }

    pub fn gone(message: impl Into<String>) -> Self {
        Self::new(410, "Expired", message)
    }

    pub fn too_many_requests() -> Self {
        let mut e = Self::new(
            429,
            "TooManyRequests",
            "the server has received too many requests and has asked us to try again later",
        );
        e.retry_after = Some(1);
        e
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(500, "InternalError", message)
    }

    pub fn unavailable() -> Self {
        let mut e = Self::new(
            503,
            "ServiceUnavailable",
            "the server is currently unable to handle the request",
        );
        e.retry_after = Some(1);
        e
    }

    /// The `Status` object for this error.
    pub fn to_status(&self) -> Value {
        let mut s = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(d) = &self.details {
            s["details"] = (**d).clone();
        }
        s
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.code, self.reason, self.message)
    }
}

impl std::error::Error for ApiError {}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = self.to_status().to_string();
        let mut resp = (code, body).into_response();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let Some(secs) = self.retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        resp
    }
}

/// The `Status` a successful delete of a collection returns.
pub fn success() -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"})
}
