//! Namespaces: per-namespace history options stored in the `P.namespaces` hash, and the
//! `GYRE.NAMESPACE` arguments.

use super::error::{GyreError, GyreResult};
use super::parse::{Cursor, MAX_HISTORY_SIZE, is_keyword};

/// The namespace of a channel: the part before the first `:`, or `""` without a `:`. A leading
/// `$` (Centrifugo's private-channel prefix) is not part of it, as in the proxy's lookup.
pub fn namespace_of(channel: &[u8]) -> &[u8] {
    let channel = channel.strip_prefix(b"$").unwrap_or(channel);
    match channel.iter().position(|&b| b == b':') {
        Some(end) => &channel[..end],
        None => b"",
    }
}

/// History options of one namespace, as stored in `P.namespaces`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NamespaceOptions {
    pub history_size: u64,
    pub history_ttl: u64,
    pub meta_ttl: u64,
}

impl NamespaceOptions {
    /// The stored form: `<history-size> <history-ttl> <meta-ttl>`.
    pub fn encode(&self) -> String {
        format!(
            "{} {} {}",
            self.history_size, self.history_ttl, self.meta_ttl
        )
    }

    pub fn decode(value: &[u8]) -> GyreResult<Self> {
        let text = std::str::from_utf8(value).map_err(|_| GyreError::CorruptNamespace)?;
        let mut numbers = text
            .split_ascii_whitespace()
            .map(|n| n.parse::<u64>().map_err(|_| GyreError::CorruptNamespace));
        let mut next = || numbers.next().unwrap_or(Err(GyreError::CorruptNamespace));
        let options = Self {
            history_size: next()?,
            history_ttl: next()?,
            meta_ttl: next()?,
        };
        if numbers.next().is_some() {
            return Err(GyreError::CorruptNamespace);
        }
        Ok(options)
    }
}

/// A parsed `GYRE.NAMESPACE` call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NamespaceCommand<'a> {
    /// `meta_ttl` is `None` when `META-TTL` was not given: the caller fills in the default.
    Set {
        name: &'a [u8],
        history_size: u64,
        history_ttl: u64,
        meta_ttl: Option<u64>,
    },
    Get(&'a [u8]),
    Del(&'a [u8]),
    List,
}

impl<'a> NamespaceCommand<'a> {
    /// Parses the arguments after `GYRE.NAMESPACE`.
    pub fn parse(args: &[&'a [u8]]) -> GyreResult<Self> {
        let mut c = Cursor::new(args);
        let sub = c.next()?;
        let command = if is_keyword(sub, "SET") {
            let name = checked_name(c.next()?)?;
            let keyword = c.next()?;
            if !is_keyword(keyword, "HISTORY") {
                return Err(GyreError::Syntax(keyword.to_vec()));
            }
            let history_size = c.next_u64("history size")?;
            if history_size > MAX_HISTORY_SIZE {
                return Err(GyreError::OutOfRange("history size"));
            }
            let history_ttl = c.next_ttl("history ttl")?;
            if history_size > 0 && history_ttl == 0 {
                return Err(GyreError::HistoryNeedsTtl);
            }
            let mut meta_ttl = None;
            while let Some(option) = c.next_opt() {
                if is_keyword(option, "META-TTL") {
                    meta_ttl = Some(c.next_ttl("META-TTL")?);
                } else {
                    return Err(GyreError::Syntax(option.to_vec()));
                }
            }
            NamespaceCommand::Set {
                name,
                history_size,
                history_ttl,
                meta_ttl,
            }
        } else if is_keyword(sub, "GET") {
            NamespaceCommand::Get(c.next()?)
        } else if is_keyword(sub, "DEL") {
            NamespaceCommand::Del(c.next()?)
        } else if is_keyword(sub, "LIST") {
            NamespaceCommand::List
        } else {
            return Err(GyreError::Syntax(sub.to_vec()));
        };
        c.finish()?;
        Ok(command)
    }
}

/// A name with `:` could never be the namespace of any channel; refuse it instead of storing
/// options that silently never apply.
fn checked_name(name: &[u8]) -> GyreResult<&[u8]> {
    if name.contains(&b':') {
        Err(GyreError::NamespaceNameHasColon)
    } else {
        Ok(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&'static str]) -> GyreResult<NamespaceCommand<'static>> {
        let raw: Vec<&'static [u8]> = args.iter().map(|a| a.as_bytes()).collect();
        NamespaceCommand::parse(&raw)
    }

    #[test]
    fn namespace_is_the_part_before_the_first_colon() {
        assert_eq!(namespace_of(b"chat:room"), b"chat");
        assert_eq!(namespace_of(b"chat:room:1"), b"chat");
        assert_eq!(namespace_of(b":x"), b"");
        assert_eq!(namespace_of(b"plain"), b"");
        assert_eq!(namespace_of(b"$chat:secret"), b"chat");
        assert_eq!(namespace_of(b"$plain"), b"");
    }

    #[test]
    fn options_round_trip() {
        let o = NamespaceOptions {
            history_size: 100,
            history_ttl: 300,
            meta_ttl: 0,
        };
        assert_eq!(o.encode(), "100 300 0");
        assert_eq!(NamespaceOptions::decode(b"100 300 0"), Ok(o));
        for bad in [&b"100 300"[..], b"1 2 3 4", b"a b c", b"", b"-1 2 3"] {
            assert_eq!(
                NamespaceOptions::decode(bad),
                Err(GyreError::CorruptNamespace)
            );
        }
    }

    #[test]
    fn parses_subcommands() {
        assert_eq!(
            parse(&["set", "chat", "history", "10", "60", "meta-ttl", "0"]),
            Ok(NamespaceCommand::Set {
                name: b"chat",
                history_size: 10,
                history_ttl: 60,
                meta_ttl: Some(0)
            })
        );
        assert_eq!(
            parse(&["SET", "", "HISTORY", "0", "0"]),
            Ok(NamespaceCommand::Set {
                name: b"",
                history_size: 0,
                history_ttl: 0,
                meta_ttl: None
            })
        );
        assert_eq!(parse(&["GET", "chat"]), Ok(NamespaceCommand::Get(b"chat")));
        assert_eq!(parse(&["del", "chat"]), Ok(NamespaceCommand::Del(b"chat")));
        assert_eq!(parse(&["LIST"]), Ok(NamespaceCommand::List));
    }

    #[test]
    fn rejects_bad_input() {
        assert_eq!(parse(&[]), Err(GyreError::WrongArity));
        assert_eq!(parse(&["LIST", "x"]), Err(GyreError::WrongArity));
        assert_eq!(parse(&["GET"]), Err(GyreError::WrongArity));
        assert_eq!(parse(&["NOPE"]), Err(GyreError::Syntax(b"NOPE".to_vec())));
        assert_eq!(
            parse(&["SET", "a", "HISTORY", "10", "0"]),
            Err(GyreError::HistoryNeedsTtl)
        );
        assert_eq!(
            parse(&["SET", "a", "HISTORY", "-1", "0"]),
            Err(GyreError::NotANonNegativeInteger("history size"))
        );
        assert_eq!(
            parse(&["SET", "a", "SIZE", "1", "1"]),
            Err(GyreError::Syntax(b"SIZE".to_vec()))
        );
        assert_eq!(
            parse(&["SET", "a", "HISTORY", "1", "1", "FOO"]),
            Err(GyreError::Syntax(b"FOO".to_vec()))
        );
        assert_eq!(
            parse(&["SET", "a:b", "HISTORY", "1", "1"]),
            Err(GyreError::NamespaceNameHasColon)
        );
    }
}
