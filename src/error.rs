//! The one error vocabulary of the service, mapped once to gRPC codes.
//!
//! Services return [`Error`]; the transports turn it into a `tonic::Status`
//! (and, for the JSON side, an HTTP status) here and nowhere else. Internal
//! causes are logged with their whole chain and replaced by a generic message:
//! a client never sees SQL, file paths or stack traces.

use std::borrow::Cow;

use tonic::Code;
use tonic_types::{ErrorDetails, StatusExt};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A request field is missing or malformed. `field` is the proto field
    /// name, or its path inside the request (`assertions[2].json.pointer`).
    #[error("{field}: {message}")]
    InvalidArgument {
        field: Cow<'static, str>,
        message: String,
    },
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Unauthenticated(String),
    #[error("{0}")]
    ResourceExhausted(String),
    /// The request is well formed but the server is not set up for it (an
    /// email channel on a server without SMTP).
    #[error("{0}")]
    FailedPrecondition(String),
    /// A position (a resume token) the server no longer has.
    #[error("{0}")]
    OutOfRange(String),
    /// Too many failed attempts; the client may retry after `retry_after`.
    #[error("too many failed attempts; try again in {}s", retry_after.as_secs())]
    TooManyAttempts { retry_after: std::time::Duration },
    /// A dependency (the database) cannot be reached; the client may retry.
    #[error("service temporarily unavailable")]
    Unavailable(#[source] anyhow::Error),
    /// A bug or an unexpected failure: logged in full, reported as "internal error".
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn invalid(field: impl Into<Cow<'static, str>>, message: impl Into<String>) -> Self {
        Self::InvalidArgument {
            field: field.into(),
            message: message.into(),
        }
    }

    pub fn internal(err: impl Into<anyhow::Error>) -> Self {
        Self::Internal(err.into())
    }

    /// The gRPC code this error maps to.
    pub fn code(&self) -> Code {
        match self {
            Self::InvalidArgument { .. } => Code::InvalidArgument,
            Self::AlreadyExists(_) => Code::AlreadyExists,
            Self::NotFound(_) => Code::NotFound,
            Self::Unauthenticated(_) => Code::Unauthenticated,
            Self::ResourceExhausted(_) | Self::TooManyAttempts { .. } => Code::ResourceExhausted,
            Self::FailedPrecondition(_) => Code::FailedPrecondition,
            Self::OutOfRange(_) => Code::OutOfRange,
            Self::Unavailable(_) => Code::Unavailable,
            Self::Internal(_) => Code::Internal,
        }
    }
}

impl From<sea_orm::DbErr> for Error {
    fn from(err: sea_orm::DbErr) -> Self {
        use sea_orm::DbErr;
        match err {
            DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => {
                Self::Unavailable(anyhow::Error::new(err).context("database unreachable"))
            }
            other => Self::Internal(anyhow::Error::new(other).context("database error")),
        }
    }
}

impl From<Error> for tonic::Status {
    fn from(err: Error) -> Self {
        match &err {
            Error::InvalidArgument { field, message } => {
                let details =
                    ErrorDetails::with_bad_request_violation(field.clone(), message.clone());
                tonic::Status::with_error_details(Code::InvalidArgument, err.to_string(), details)
            }
            Error::TooManyAttempts { retry_after } => {
                let details = ErrorDetails::with_retry_info(Some(*retry_after));
                tonic::Status::with_error_details(Code::ResourceExhausted, err.to_string(), details)
            }
            Error::Unavailable(cause) | Error::Internal(cause) => {
                tracing::error!(error = format!("{cause:#}"), "request failed");
                tonic::Status::new(err.code(), err.to_string())
            }
            _ => tonic::Status::new(err.code(), err.to_string()),
        }
    }
}

/// The HTTP status the JSON gateway answers for a gRPC code: grpc-gateway's
/// mapping (`runtime.HTTPStatusFromCode`), so clients written against
/// grpc-gateway services see the statuses they expect.
pub fn http_status(code: Code) -> http::StatusCode {
    use http::StatusCode as S;
    match code {
        Code::Ok => S::OK,
        // 499 "client closed request", as grpc-gateway and nginx use it.
        Code::Cancelled => S::from_u16(499).unwrap_or(S::BAD_REQUEST),
        Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => S::BAD_REQUEST,
        Code::DeadlineExceeded => S::GATEWAY_TIMEOUT,
        Code::NotFound => S::NOT_FOUND,
        Code::AlreadyExists | Code::Aborted => S::CONFLICT,
        Code::PermissionDenied => S::FORBIDDEN,
        Code::Unauthenticated => S::UNAUTHORIZED,
        Code::ResourceExhausted => S::TOO_MANY_REQUESTS,
        Code::Unimplemented => S::NOT_IMPLEMENTED,
        Code::Unavailable => S::SERVICE_UNAVAILABLE,
        Code::Unknown | Code::Internal | Code::DataLoss => S::INTERNAL_SERVER_ERROR,
    }
}

/// A setting that cannot be used, with its name (the environment variable)
/// and what is wrong. Start-up stops on it, before anything binds.
#[derive(Debug, thiserror::Error)]
#[error("invalid setting {name}: {reason}")]
pub struct SettingsError {
    pub name: &'static str,
    pub reason: String,
}

impl SettingsError {
    pub fn new(name: &'static str, reason: impl Into<String>) -> Self {
        Self {
            name,
            reason: reason.into(),
        }
    }
}

/// `Err(SettingsError)` for `name` unless `ok`.
pub fn check_setting(ok: bool, name: &'static str, reason: &str) -> Result<(), SettingsError> {
    if ok {
        Ok(())
    } else {
        Err(SettingsError::new(name, reason))
    }
}
