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

impl Fault {
    /// The process exit code of a command that stopped with this fault: 2 for the user's,
    /// 1 for the rest (transient and internal). 0 is success and 3 a run that finished with
    /// some inputs failed; the CLI sets those itself.
    pub fn exit_code(self) -> u8 {
        match self {
            Fault::User => 2,
            Fault::Transient | Fault::Internal => 1,
        }
    }
}

/// A request the user can fix, raised where no layer's own error fits (a bad argument, an
/// unknown source).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UserError(pub String);

impl HasFault for UserError {
    fn fault(&self) -> Fault {
        Fault::User
    }
}

/// The message of a caught panic (what `panic!` was given), for error reports.
pub fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "unknown panic".into())
}
