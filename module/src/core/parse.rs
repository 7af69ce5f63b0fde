//! A cursor over a command's arguments and the number rules every command shares.

use super::error::{GyreError, GyreResult};

/// Largest TTL, in seconds, that any option or config accepts. About 136 years: far beyond any
/// sensible retention, and small enough that `now_ms + ttl * 1000` can never overflow an i64.
pub const MAX_TTL_SECONDS: u64 = 1 << 32;

/// Largest history size. Redis takes `MAXLEN` as a signed 64-bit number.
pub const MAX_HISTORY_SIZE: u64 = i64::MAX as u64;

/// The arguments after the command name, consumed front to back.
pub struct Cursor<'s, 'a> {
    items: &'s [&'a [u8]],
    pos: usize,
    /// The keyword of the optional clause being read, so that a clause cut short names itself
    /// instead of reporting a bare arity error.
    clause: Option<&'a [u8]>,
}

impl<'s, 'a> Cursor<'s, 'a> {
    pub fn new(items: &'s [&'a [u8]]) -> Self {
        Self {
            items,
            pos: 0,
            clause: None,
        }
    }

    /// The next argument the command's shape requires: `WrongArity` when a positional argument
    /// is missing, `MissingValue` when an option's value is.
    pub fn next(&mut self) -> GyreResult<&'a [u8]> {
        let item = self.items.get(self.pos).ok_or_else(|| match self.clause {
            Some(keyword) => GyreError::MissingValue(keyword.to_vec()),
            None => GyreError::WrongArity,
        })?;
        self.pos += 1;
        Ok(item)
    }

    /// The next argument if there is one: the keyword that starts an optional clause.
    pub fn next_opt(&mut self) -> Option<&'a [u8]> {
        let item = self.items.get(self.pos)?;
        self.pos += 1;
        self.clause = Some(item);
        Some(item)
    }

    pub fn peek(&self) -> Option<&'a [u8]> {
        self.items.get(self.pos).copied()
    }

    pub fn remaining(&self) -> usize {
        self.items.len() - self.pos
    }

    pub fn next_u64(&mut self, what: &'static str) -> GyreResult<u64> {
        parse_u64(self.next()?, what)
    }

    /// A TTL in seconds, 0 allowed.
    pub fn next_ttl(&mut self, what: &'static str) -> GyreResult<u64> {
        let ttl = self.next_u64(what)?;
        if ttl > MAX_TTL_SECONDS {
            return Err(GyreError::OutOfRange(what));
        }
        Ok(ttl)
    }

    pub fn next_utf8(&mut self, what: &'static str) -> GyreResult<&'a str> {
        std::str::from_utf8(self.next()?).map_err(|_| GyreError::NotUtf8(what))
    }

    /// Fails with `WrongArity` if arguments are left over.
    pub fn finish(&self) -> GyreResult<()> {
        if self.remaining() == 0 {
            Ok(())
        } else {
            Err(GyreError::WrongArity)
        }
    }
}

/// A strict decimal non-negative integer: digits only, no sign, no spaces.
pub fn parse_u64(arg: &[u8], what: &'static str) -> GyreResult<u64> {
    if arg.is_empty() || !arg.iter().all(u8::is_ascii_digit) {
        return Err(GyreError::NotANonNegativeInteger(what));
    }
    // Only digits, so the one possible failure is overflow.
    std::str::from_utf8(arg)
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .ok_or(GyreError::OutOfRange(what))
}

/// Case-insensitive keyword comparison (`history`, `HISTORY` and `History` are equal).
pub fn is_keyword(arg: &[u8], keyword: &str) -> bool {
    arg.eq_ignore_ascii_case(keyword.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_strict_decimal() {
        assert_eq!(parse_u64(b"0", "x"), Ok(0));
        assert_eq!(parse_u64(b"300", "x"), Ok(300));
        for bad in [&b""[..], b"-1", b"+1", b" 1", b"1.5", b"abc", b"1e3"] {
            assert_eq!(
                parse_u64(bad, "x"),
                Err(GyreError::NotANonNegativeInteger("x"))
            );
        }
        assert_eq!(
            parse_u64(b"99999999999999999999999", "x"),
            Err(GyreError::OutOfRange("x"))
        );
    }

    #[test]
    fn cursor_reports_missing_and_extra_arguments() {
        let args: Vec<&[u8]> = vec![b"a", b"7"];
        let mut c = Cursor::new(&args);
        assert_eq!(c.next(), Ok(&b"a"[..]));
        assert!(c.finish().is_err());
        assert_eq!(c.next_u64("n"), Ok(7));
        assert_eq!(c.next(), Err(GyreError::WrongArity));
        assert_eq!(c.finish(), Ok(()));
    }

    #[test]
    fn a_clause_cut_short_names_its_keyword() {
        let args: Vec<&[u8]> = vec![b"ch", b"HISTORY", b"10"];
        let mut c = Cursor::new(&args);
        c.next().unwrap();
        assert_eq!(c.next_opt(), Some(&b"HISTORY"[..]));
        assert_eq!(c.next_u64("size"), Ok(10));
        assert_eq!(c.next(), Err(GyreError::MissingValue(b"HISTORY".to_vec())));
    }

    #[test]
    fn ttl_has_an_upper_bound() {
        let big = (MAX_TTL_SECONDS + 1).to_string();
        let args: Vec<&[u8]> = vec![big.as_bytes()];
        assert_eq!(
            Cursor::new(&args).next_ttl("ttl"),
            Err(GyreError::OutOfRange("ttl"))
        );
    }

    #[test]
    fn keywords_ignore_case() {
        assert!(is_keyword(b"history", "HISTORY"));
        assert!(is_keyword(b"HiStOrY", "HISTORY"));
        assert!(!is_keyword(b"HISTORYX", "HISTORY"));
    }
}
