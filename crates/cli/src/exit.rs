//! Exit codes: 0 success, 1 an error the user can fix (bad input, not found, denied),
//! 2 anything else (server unreachable, internal errors).

use std::fmt;

/// An error the user can fix; exits with code 1.
#[derive(Debug)]
pub struct UserError(pub String);

impl UserError {
    /// As an `anyhow::Error`.
    pub fn fail(message: impl Into<String>) -> anyhow::Error {
        anyhow::Error::new(UserError(message.into()))
    }

    pub fn msg(message: impl Into<String>) -> UserError {
        UserError(message.into())
    }
}

impl fmt::Display for UserError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UserError {}

/// The exit code of an error.
pub fn code(err: &anyhow::Error) -> i32 {
    for cause in err.chain() {
        if cause.downcast_ref::<UserError>().is_some() {
            return 1;
        }
        if let Some(e) = cause.downcast_ref::<client::ClientError>() {
            return if e.is_user_error() { 1 } else { 2 };
        }
    }
    2
}
