//! HTTP errors: the one place where an error's fault becomes a status code. A user's fault is
//! a 4xx with its message, overload a 429 with `Retry-After`, a transient condition a 503
//! with `Retry-After`, and an internal error a 500 whose body names only the request id (the
//! details go to the log). Bodies have OpenAI's shape, `{"error": {"message", "type", "code"}}`,
//! so stock clients show them.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::fault::{Fault, HasFault};

/// An error answer of the API.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    /// Seconds a client should wait before retrying (429, 503).
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, message)
    }

    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, message)
    }

    /// Overload: the bounded work of this kind is all in use.
    pub fn busy(what: &str) -> Self {
        Self {
            status: StatusCode::TOO_MANY_REQUESTS,
            message: format!("too many concurrent {what}; retry shortly"),
            retry_after: Some(1),
        }
    }

    /// An internal failure: logged in full, answered with no internals.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!(error = %detail, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal error (the server log has the details under this request's id)",
        )
    }

    /// Maps an error of any layer by its fault.
    pub fn from_fault<E: HasFault + std::fmt::Display + ?Sized>(error: &E) -> Self {
        match error.fault() {
            Fault::User => Self::bad_request(error.to_string()),
            Fault::Transient => {
                tracing::warn!(error = %error, "transient failure");
                Self {
                    status: StatusCode::SERVICE_UNAVAILABLE,
                    message: "temporarily unavailable; retry shortly".into(),
                    retry_after: Some(2),
                }
            }
            Fault::Internal => Self::internal(error),
        }
    }

    /// The OpenAI error `type` for the status.
    pub fn kind(&self) -> &'static str {
        match self.status {
            StatusCode::UNAUTHORIZED => "authentication_error",
            StatusCode::FORBIDDEN => "permission_error",
            StatusCode::NOT_FOUND => "not_found_error",
            StatusCode::TOO_MANY_REQUESTS => "rate_limit_error",
            StatusCode::PAYLOAD_TOO_LARGE => "invalid_request_error",
            s if s.is_client_error() => "invalid_request_error",
            _ => "server_error",
        }
    }

    /// The body, as it also travels inside an event stream.
    pub fn body(&self) -> serde_json::Value {
        json!({"error": {"message": self.message, "type": self.kind(), "code": self.status.as_u16()}})
    }
}

macro_rules! from_layer {
    ($($ty:ty),*) => {
        $(impl From<$ty> for ApiError {
            fn from(e: $ty) -> Self {
                Self::from_fault(&e)
            }
        })*
    };
}

from_layer!(
    crate::query::QueryError,
    crate::catalog::CatalogError,
    crate::ingest::IngestError,
    crate::models::ModelError,
    crate::store::StoreError,
    crate::lexical::LexicalError,
    crate::llm::LlmError
);

impl From<axum::extract::rejection::JsonRejection> for ApiError {
    fn from(rejection: axum::extract::rejection::JsonRejection) -> Self {
        let status = rejection.status();
        let status = if status == StatusCode::UNPROCESSABLE_ENTITY {
            StatusCode::BAD_REQUEST
        } else {
            status
        };
        Self::new(status, rejection.body_text())
    }
}

impl From<axum::extract::multipart::MultipartError> for ApiError {
    fn from(e: axum::extract::multipart::MultipartError) -> Self {
        let status = e.status();
        let message = if status == StatusCode::PAYLOAD_TOO_LARGE {
            "the upload is larger than server.max_upload_bytes".to_string()
        } else {
            format!("bad multipart body: {}", e.body_text())
        };
        Self::new(status, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, axum::Json(self.body())).into_response();
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// JSON bodies whose rejections (bad JSON, missing fields) answer in the API's error shape.
pub struct ApiJson<T>(pub T);

impl<S, T> axum::extract::FromRequest<S> for ApiJson<T>
where
    axum::Json<T>:
        axum::extract::FromRequest<S, Rejection = axum::extract::rejection::JsonRejection>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        let axum::Json(value) = axum::Json::<T>::from_request(request, state).await?;
        Ok(Self(value))
    }
}
