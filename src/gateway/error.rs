//! The gateway's one error type and its one mapping to an HTTP answer: a
//! gRPC status keeps its code name and ErrorInfo reason, under the HTTP
//! status the gRPC code stands for; the gateway's own refusals (bad JSON,
//! unknown path, ...) use the same body shape.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use tonic::{Code, Status};
use tonic_types::StatusExt;

use crate::api::error::reason_of;

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("no RPC at {0}; /v1/openapi.json lists the paths")]
    UnknownPath(String),
    #[error("method {0} not allowed: every RPC is a POST")]
    MethodNotAllowed(axum::http::Method),
    #[error("content-type must be application/json, not {0:?}")]
    UnsupportedMediaType(String),
    #[error("request body is larger than {0} bytes")]
    TooLarge(usize),
    #[error("reading the request body: {0}")]
    Body(String),
    #[error("request body is not a valid {message} in JSON: {error}")]
    BadJson { message: String, error: String },
    /// The service's own answer, exactly as a gRPC client would get it.
    #[error("{}", .0.message())]
    Rpc(Status),
}

impl From<Status> for GatewayError {
    fn from(s: Status) -> Self {
        GatewayError::Rpc(s)
    }
}

/// The HTTP status a gRPC code stands for (the google.rpc.Code mapping).
pub fn http_status(code: Code) -> StatusCode {
    match code {
        Code::Ok => StatusCode::OK,
        // nginx's "client closed request": the caller gave up.
        Code::Cancelled => StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST),
        Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => {
            StatusCode::BAD_REQUEST
        }
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists | Code::Aborted => StatusCode::CONFLICT,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Code::Unknown | Code::Internal | Code::DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The canonical name of a gRPC code, as grpc-gateway and Google APIs spell it.
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

#[derive(serde::Serialize)]
struct Body<'a> {
    code: &'a str,
    reason: String,
    message: String,
}

impl GatewayError {
    /// HTTP status, gRPC code name and machine-readable reason.
    fn classify(&self) -> (StatusCode, &'static str, String) {
        let own = |status, code, reason: &str| (status, code, reason.to_string());
        match self {
            GatewayError::UnknownPath(_) => {
                own(StatusCode::NOT_FOUND, "NOT_FOUND", "UNKNOWN_METHOD")
            }
            GatewayError::MethodNotAllowed(_) => own(
                StatusCode::METHOD_NOT_ALLOWED,
                "UNIMPLEMENTED",
                "METHOD_NOT_ALLOWED",
            ),
            GatewayError::UnsupportedMediaType(_) => own(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "INVALID_ARGUMENT",
                "UNSUPPORTED_MEDIA_TYPE",
            ),
            GatewayError::TooLarge(_) => own(
                StatusCode::PAYLOAD_TOO_LARGE,
                "RESOURCE_EXHAUSTED",
                "BODY_TOO_LARGE",
            ),
            GatewayError::Body(_) => own(StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", "BAD_BODY"),
            GatewayError::BadJson { .. } => {
                own(StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", "INVALID_JSON")
            }
            GatewayError::Rpc(s) => {
                let name = code_name(s.code());
                let reason = reason_of(s).unwrap_or_else(|| name.to_string());
                (http_status(s.code()), name, reason)
            }
        }
    }

    /// Seconds to wait before retrying, when the status says.
    fn retry_after(&self) -> Option<u64> {
        let GatewayError::Rpc(s) = self else {
            return None;
        };
        let delay = s.get_error_details().retry_info()?.retry_delay?;
        // Whole seconds, rounded up: "0" would invite an immediate retry.
        Some(delay.as_secs() + u64::from(delay.subsec_nanos() > 0))
    }
}

impl IntoResponse for GatewayError {
    fn into_response(self) -> Response {
        let (status, code, reason) = self.classify();
        let body = Body {
            code,
            reason,
            message: self.to_string(),
        };
        let mut resp = crate::observe::http::json(status, &body);
        if let Some(secs) = self.retry_after() {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if matches!(self, GatewayError::MethodNotAllowed(_)) {
            resp.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("POST"));
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::ApiError;
    use crate::domain::{DomainError, Reason};

    #[test]
    fn domain_rejections_keep_their_reason_under_the_matching_http_status() {
        for reason in Reason::ALL {
            let status: Status = ApiError::Domain(DomainError::new(reason, "why")).into();
            let (http, code, got) = GatewayError::Rpc(status.clone()).classify();
            assert_eq!(got, reason.as_str());
            assert_eq!(code, code_name(status.code()));
            assert_eq!(http, http_status(status.code()));
        }
    }

    #[test]
    fn codes_map_to_the_standard_http_statuses() {
        let cases = [
            (Code::InvalidArgument, 400),
            (Code::NotFound, 404),
            (Code::AlreadyExists, 409),
            (Code::Aborted, 409),
            (Code::FailedPrecondition, 400),
            (Code::ResourceExhausted, 429),
            (Code::Unavailable, 503),
            (Code::PermissionDenied, 403),
            (Code::Unauthenticated, 401),
            (Code::DeadlineExceeded, 504),
            (Code::Internal, 500),
        ];
        for (code, http) in cases {
            assert_eq!(http_status(code).as_u16(), http, "{code:?}");
        }
    }

    #[test]
    fn retry_info_becomes_retry_after_in_whole_seconds() {
        let details = tonic_types::ErrorDetails::with_retry_info(Some(
            std::time::Duration::from_millis(1500),
        ));
        let status = Status::with_error_details(Code::ResourceExhausted, "slow down", details);
        let resp = GatewayError::Rpc(status).into_response();
        assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(
            resp.headers().get(header::RETRY_AFTER),
            Some(&HeaderValue::from(2u64))
        );
    }

    #[test]
    fn a_rate_limited_query_is_429_with_retry_after_and_its_reason() {
        let retry_after = std::time::Duration::from_millis(200);
        let status: Status = ApiError::RateLimited { retry_after }.into();
        let err = GatewayError::Rpc(status);
        let (http, _, reason) = err.classify();
        assert_eq!(http, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(reason, "RATE_LIMITED");
        let resp = err.into_response();
        assert_eq!(
            resp.headers().get(header::RETRY_AFTER),
            Some(&HeaderValue::from(1u64))
        );
    }
}
