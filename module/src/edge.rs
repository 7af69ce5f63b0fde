//! The FFI edge: every command runs through [`guard`], which
//! - hands the handler plain byte-slice arguments,
//! - catches any panic (a panic unwinding into Redis would abort the server) and answers
//!   `ERR internal error` instead,
//! - and is the one place where a [`GyreError`] becomes reply text.
//!
//! Everything else Redis calls (module load, config setters, the INFO handler, server events)
//! runs under [`shield`].

use std::panic::{AssertUnwindSafe, catch_unwind};

use redis_module::{Context, RedisError, RedisResult, RedisString, RedisValue};

use crate::core::GyreError;
use crate::core::keys::{MAX_PREFIX_LEN, PrefixError};
use crate::stats::{COUNTERS, bump};

/// A command body: arguments after the command name in, reply value or typed error out.
pub type Handler = fn(&Context, &[&[u8]]) -> Result<RedisValue, GyreError>;

/// Wraps a handler for the `redis_module!` command table.
pub fn guard(handler: Handler) -> impl Fn(&Context, Vec<RedisString>) -> RedisResult {
    move |ctx, args| {
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            let raw: Vec<&[u8]> = args.iter().skip(1).map(RedisString::as_slice).collect();
            handler(ctx, &raw)
        }));
        match outcome {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => {
                bump(&COUNTERS.errors);
                Err(reply_error(error))
            }
            Err(_) => {
                // The panic hook already logged message and location.
                bump(&COUNTERS.errors);
                bump(&COUNTERS.panics);
                Err(RedisError::Str("ERR internal error"))
            }
        }
    }
}

/// Runs `body` for a callback from Redis other than a command; a panic (already logged by the
/// panic hook) is counted and becomes `on_panic` instead of unwinding into Redis.
pub fn shield<T>(on_panic: impl FnOnce() -> T, body: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(body)).unwrap_or_else(|_| {
        bump(&COUNTERS.panics);
        on_panic()
    })
}

/// Sends panic messages to the Redis log instead of stderr, which Redis may not keep.
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let location = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let payload = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_default();
        // The logger rejects NUL bytes; a panic inside the hook would abort Redis.
        let message = format!("gyre: panic at {location}: {payload}").replace('\0', " ");
        redis_module::logging::log_warning(message);
    }));
}

fn reply_error(error: GyreError) -> RedisError {
    use GyreError::*;
    let text = match error {
        WrongArity => return RedisError::WrongArity,
        WrongType => return RedisError::WrongType,
        Redis(text) => return RedisError::String(text),
        NotANonNegativeInteger(what) => format!("ERR {what} must be a non-negative integer"),
        OutOfRange(what) => format!("ERR {what} is out of range"),
        MustBePositive(what) => format!("ERR {what} must be a positive integer"),
        InvalidLimit => "ERR LIMIT must be -1 or a non-negative integer".into(),
        MissingValue(keyword) => format!(
            "ERR syntax error: {} needs more arguments",
            String::from_utf8_lossy(&keyword)
        ),
        Syntax(arg) => format!("ERR syntax error near '{}'", String::from_utf8_lossy(&arg)),
        HistoryNeedsTtl => "ERR HISTORY needs a ttl > 0 when size > 0".into(),
        DefaultHistoryNeedsTtl => "ERR gyre.history-size > 0 needs gyre.history-ttl > 0".into(),
        TagsCountMismatch => {
            "ERR TAGS count does not match the number of key/value arguments".into()
        }
        VersionEpochNeedsVersion => "ERR VERSION-EPOCH needs VERSION".into(),
        NotUtf8(what) => format!("ERR {what} must be valid UTF-8"),
        UnslottableChannel => {
            "ERR channel name is empty or has '}' but no hash tag: it cannot be used in cluster mode"
                .into()
        }
        NamespaceNameHasColon => "ERR namespace name must not contain ':'".into(),
        CorruptMeta => "ERR stream meta hash holds an invalid epoch or offset".into(),
        CorruptNamespace => {
            "ERR namespace options are invalid (want '<size> <ttl> <meta-ttl>', ttl > 0 when size > 0)"
                .into()
        }
        CorruptEntry(offset) => format!("ERR history entry {offset} is not a Publication"),
        CorruptPresence => "ERR presence entry is not a ClientInfo".into(),
        CorruptResult => "ERR idempotency result hash is invalid".into(),
        StreamAppendFailed => "ERR the history stream refused the publication".into(),
        SlotMigrating(slot) => format!(
            "TRYAGAIN slot {slot} is migrating and the channel's keys are not all on this node"
        ),
    };
    RedisError::String(text)
}

/// Text for a refused `gyre.prefix` (Redis wraps it into its CONFIG SET error).
pub fn prefix_error(error: PrefixError) -> RedisError {
    RedisError::String(match error {
        PrefixError::Empty => "gyre.prefix must not be empty".into(),
        PrefixError::TooLong => format!("gyre.prefix must be at most {MAX_PREFIX_LEN} bytes"),
        PrefixError::BadByte(b) => format!(
            "gyre.prefix may only hold letters, digits, '_', '-', '.' and ':' (found byte 0x{b:02x})"
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(e: GyreError) -> String {
        match reply_error(e) {
            RedisError::String(s) => s,
            other => format!("{other:?}"),
        }
    }

    #[test]
    fn documented_messages() {
        assert_eq!(
            text(GyreError::HistoryNeedsTtl),
            "ERR HISTORY needs a ttl > 0 when size > 0"
        );
        assert_eq!(
            text(GyreError::Syntax(b"FOO".to_vec())),
            "ERR syntax error near 'FOO'"
        );
        assert_eq!(
            text(GyreError::NotANonNegativeInteger("history size")),
            "ERR history size must be a non-negative integer"
        );
        assert!(matches!(
            reply_error(GyreError::WrongArity),
            RedisError::WrongArity
        ));
        assert!(matches!(
            reply_error(GyreError::WrongType),
            RedisError::WrongType
        ));
    }

    #[test]
    fn every_message_has_an_error_code() {
        let all = [
            GyreError::OutOfRange("x"),
            GyreError::MustBePositive("x"),
            GyreError::InvalidLimit,
            GyreError::MissingValue(b"HISTORY".to_vec()),
            GyreError::DefaultHistoryNeedsTtl,
            GyreError::TagsCountMismatch,
            GyreError::VersionEpochNeedsVersion,
            GyreError::NotUtf8("x"),
            GyreError::UnslottableChannel,
            GyreError::NamespaceNameHasColon,
            GyreError::CorruptMeta,
            GyreError::CorruptNamespace,
            GyreError::CorruptEntry(1),
            GyreError::CorruptPresence,
            GyreError::CorruptResult,
            GyreError::StreamAppendFailed,
        ];
        for e in all {
            assert!(text(e.clone()).starts_with("ERR "), "{e:?}");
        }
    }

    #[test]
    fn a_migrating_slot_answers_tryagain_for_cluster_clients() {
        // Cluster clients retry TRYAGAIN (redis-rs: RetryMethod::WaitAndRetry) by its code.
        assert_eq!(
            text(GyreError::SlotMigrating(14206)),
            "TRYAGAIN slot 14206 is migrating and the channel's keys are not all on this node"
        );
    }
}
