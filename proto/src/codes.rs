//! The client protocol's error, unsubscribe and disconnect codes (Centrifugo's numbers), in one
//! place. Logic returns these typed values; only the encoders turn them into wire messages.

use std::borrow::Cow;

use crate::protocol;

/// An error reply to a command (`Reply.error`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorCode {
    pub code: u32,
    pub message: &'static str,
    /// The SDK retries temporary errors.
    pub temporary: bool,
}

impl ErrorCode {
    const fn new(code: u32, message: &'static str) -> Self {
        Self {
            code,
            message,
            temporary: false,
        }
    }

    pub fn to_proto(self) -> protocol::Error {
        protocol::Error {
            code: self.code,
            message: self.message.to_owned(),
            temporary: self.temporary,
        }
    }
}

pub const INTERNAL: ErrorCode = ErrorCode {
    code: 100,
    message: "internal server error",
    temporary: true,
};
pub const UNAUTHORIZED: ErrorCode = ErrorCode::new(101, "unauthorized");
pub const UNKNOWN_CHANNEL: ErrorCode = ErrorCode::new(102, "unknown channel");
pub const PERMISSION_DENIED: ErrorCode = ErrorCode::new(103, "permission denied");
pub const METHOD_NOT_FOUND: ErrorCode = ErrorCode::new(104, "method not found");
pub const ALREADY_SUBSCRIBED: ErrorCode = ErrorCode::new(105, "already subscribed");
pub const LIMIT_EXCEEDED: ErrorCode = ErrorCode::new(106, "limit exceeded");
pub const BAD_REQUEST: ErrorCode = ErrorCode::new(107, "bad request");
pub const NOT_AVAILABLE: ErrorCode = ErrorCode::new(108, "not available");
pub const TOKEN_EXPIRED: ErrorCode = ErrorCode::new(109, "token expired");
pub const EXPIRED: ErrorCode = ErrorCode::new(110, "expired");
pub const TOO_MANY_REQUESTS: ErrorCode = ErrorCode {
    code: 111,
    message: "too many requests",
    temporary: true,
};
pub const UNRECOVERABLE_POSITION: ErrorCode = ErrorCode::new(112, "unrecoverable position");

/// An error reply whose code and message come from the application backend (a hook's `error`
/// answer, or a `status_to_code_transforms` entry); 400–1999 by convention.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppError {
    pub code: u32,
    pub message: String,
    pub temporary: bool,
}

impl AppError {
    pub fn to_proto(&self) -> protocol::Error {
        protocol::Error {
            code: self.code,
            message: self.message.clone(),
            temporary: self.temporary,
        }
    }
}

/// The error code with this number (codes decided elsewhere, e.g. by token checks); unknown
/// numbers become an internal error rather than an invented message.
pub fn error_code(code: u32) -> ErrorCode {
    [
        INTERNAL,
        UNAUTHORIZED,
        UNKNOWN_CHANNEL,
        PERMISSION_DENIED,
        METHOD_NOT_FOUND,
        ALREADY_SUBSCRIBED,
        LIMIT_EXCEEDED,
        BAD_REQUEST,
        NOT_AVAILABLE,
        TOKEN_EXPIRED,
        EXPIRED,
        TOO_MANY_REQUESTS,
        UNRECOVERABLE_POSITION,
    ]
    .into_iter()
    .find(|known| known.code == code)
    .unwrap_or(INTERNAL)
}

/// Why the server ends a subscription (`Push.unsubscribe`). Codes >= 2500 make the SDK
/// resubscribe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnsubscribeCode {
    pub code: u32,
    pub reason: &'static str,
}

pub const UNSUBSCRIBE_SERVER: UnsubscribeCode = UnsubscribeCode {
    code: 2000,
    reason: "server unsubscribe",
};
pub const UNSUBSCRIBE_INSUFFICIENT_STATE: UnsubscribeCode = UnsubscribeCode {
    code: 2500,
    reason: "insufficient state",
};
pub const UNSUBSCRIBE_EXPIRED: UnsubscribeCode = UnsubscribeCode {
    code: 2501,
    reason: "subscription expired",
};

/// Why the server closes a connection. 3000–3499: the SDK reconnects; 3500–3999: it does not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disconnect {
    pub code: u16,
    /// Ours are static; the server API's `disconnect` carries the backend's own reason.
    pub reason: Cow<'static, str>,
}

impl Disconnect {
    const fn new(code: u16, reason: &'static str) -> Self {
        Self {
            code,
            reason: Cow::Borrowed(reason),
        }
    }

    /// A disconnect with a code and reason chosen at run time. The reason is cut to fit a
    /// WebSocket close frame (123 bytes), at a character boundary.
    pub fn custom(code: u16, reason: &str) -> Self {
        let mut end = reason.len().min(123);
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        Self {
            code,
            reason: Cow::Owned(reason[..end].to_owned()),
        }
    }

    pub fn reconnect(&self) -> bool {
        self.code < 3500 || (4000..4500).contains(&self.code) || self.code >= 5000
    }

    pub fn to_proto(&self) -> protocol::Disconnect {
        protocol::Disconnect {
            code: u32::from(self.code),
            reason: self.reason.to_string(),
            reconnect: false,
        }
    }
}

/// The client went away (or the session ended without a reason to give): never advice.
pub const CONNECTION_CLOSED: Disconnect = Disconnect::new(3000, "connection closed");
pub const SHUTDOWN: Disconnect = Disconnect::new(3001, "shutdown");
pub const DISCONNECT_INTERNAL: Disconnect = Disconnect::new(3004, "internal server error");
pub const CONNECTION_EXPIRED: Disconnect = Disconnect::new(3005, "connection expired");
pub const SUBSCRIPTION_EXPIRED: Disconnect = Disconnect::new(3006, "subscription expired");
pub const SLOW: Disconnect = Disconnect::new(3008, "slow");
pub const WRITE_ERROR: Disconnect = Disconnect::new(3009, "write error");
pub const INSUFFICIENT_STATE: Disconnect = Disconnect::new(3010, "insufficient state");
pub const FORCE_RECONNECT: Disconnect = Disconnect::new(3011, "force reconnect");
pub const NO_PONG: Disconnect = Disconnect::new(3012, "no pong");
pub const DISCONNECT_TOO_MANY_REQUESTS: Disconnect = Disconnect::new(3013, "too many requests");
pub const INVALID_TOKEN: Disconnect = Disconnect::new(3500, "invalid token");
pub const DISCONNECT_BAD_REQUEST: Disconnect = Disconnect::new(3501, "bad request");
pub const STALE: Disconnect = Disconnect::new(3502, "stale");
pub const FORCE_DISCONNECT: Disconnect = Disconnect::new(3503, "force disconnect");
pub const CONNECTION_LIMIT: Disconnect = Disconnect::new(3504, "connection limit");
pub const CHANNEL_LIMIT: Disconnect = Disconnect::new(3505, "channel limit");
pub const INAPPROPRIATE_PROTOCOL: Disconnect = Disconnect::new(3506, "inappropriate protocol");
pub const DISCONNECT_PERMISSION_DENIED: Disconnect = Disconnect::new(3507, "permission denied");
pub const DISCONNECT_NOT_AVAILABLE: Disconnect = Disconnect::new(3508, "not available");

/// The disconnect that tells a unidirectional client why its connect failed, since it cannot
/// receive an error reply (docs/protocol.md#unidirectional-transports).
pub fn unidirectional_disconnect(code: u32) -> Disconnect {
    match code {
        109 | 110 => CONNECTION_EXPIRED,
        111 => DISCONNECT_TOO_MANY_REQUESTS,
        103 => DISCONNECT_PERMISSION_DENIED,
        _ => DISCONNECT_INTERNAL,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unidirectional_connect_errors_become_disconnects() {
        assert_eq!(
            unidirectional_disconnect(TOKEN_EXPIRED.code),
            CONNECTION_EXPIRED
        );
        assert_eq!(unidirectional_disconnect(PERMISSION_DENIED.code).code, 3507);
        assert_eq!(unidirectional_disconnect(TOO_MANY_REQUESTS.code).code, 3013);
        assert_eq!(
            unidirectional_disconnect(UNKNOWN_CHANNEL.code),
            DISCONNECT_INTERNAL
        );
        assert_eq!(unidirectional_disconnect(403), DISCONNECT_INTERNAL);
    }

    #[test]
    fn reconnect_follows_the_code_ranges() {
        assert!(SHUTDOWN.reconnect());
        assert!(SLOW.reconnect());
        assert!(!INVALID_TOKEN.reconnect());
        assert!(!DISCONNECT_BAD_REQUEST.reconnect());
    }
}
