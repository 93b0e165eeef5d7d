//! Whose fault an error is. Every layer's error enum says it, so one place (the CLI exit code
//! today, the HTTP status mapping later) decides what to show a user without leaking internals.

/// The party responsible for an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Bad input or configuration the user can fix (4xx).
    User,
    /// A temporary condition worth retrying (busy index, unreachable server).
    Transient,
    /// A bug or an environment problem (5xx).
    Internal,
}

/// Implemented by every error enum in the crate.
pub trait HasFault {
    fn fault(&self) -> Fault;
}
