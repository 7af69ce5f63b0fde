//! Presence: `GYRE.PRESENCE*` arguments and the expiry rule.
//!
//! Each entry lives in the data hash (client id → ClientInfo) and in the expiry zset (client id
//! scored by its deadline in unix seconds, like Centrifuge). An entry whose deadline is not after
//! `now` is expired: it is never returned or counted, whether or not a cleanup removed it yet.

use std::collections::BTreeSet;

use gyre_proto::ClientInfo;
use prost::Message;

use super::ClientInfoArgs;
use super::error::{GyreError, GyreResult};
use super::parse::{Cursor, is_keyword};

/// Whether an entry with expiry `score` is still present at `now_s`.
pub fn is_alive(score: f64, now_s: i64) -> bool {
    score > now_s as f64
}

/// A parsed `GYRE.PRESENCE.ADD` call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddArgs<'a> {
    pub channel: &'a [u8],
    pub info: ClientInfoArgs<'a>,
    /// Seconds; `None` means `gyre.presence-ttl`.
    pub ttl: Option<u64>,
    pub join_leave: bool,
}

impl<'a> AddArgs<'a> {
    pub fn parse(args: &[&'a [u8]]) -> GyreResult<Self> {
        let mut c = Cursor::new(args);
        let mut parsed = AddArgs {
            channel: c.next()?,
            info: ClientInfoArgs {
                client: c.next_utf8("client id")?,
                user: c.next_utf8("user id")?,
                conn_info: b"",
                chan_info: b"",
            },
            ttl: None,
            join_leave: false,
        };
        while let Some(option) = c.next_opt() {
            if is_keyword(option, "INFO") {
                parsed.info.conn_info = c.next()?;
            } else if is_keyword(option, "CHANINFO") {
                parsed.info.chan_info = c.next()?;
            } else if is_keyword(option, "TTL") {
                let ttl = c.next_ttl("TTL")?;
                if ttl == 0 {
                    return Err(GyreError::MustBePositive("TTL"));
                }
                parsed.ttl = Some(ttl);
            } else if is_keyword(option, "JOINLEAVE") {
                parsed.join_leave = true;
            } else {
                return Err(GyreError::Syntax(option.to_vec()));
            }
        }
        Ok(parsed)
    }
}

/// A parsed `GYRE.PRESENCE.REM` call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemArgs<'a> {
    pub channel: &'a [u8],
    pub client: &'a [u8],
    pub join_leave: bool,
}

impl<'a> RemArgs<'a> {
    pub fn parse(args: &[&'a [u8]]) -> GyreResult<Self> {
        let mut c = Cursor::new(args);
        let mut parsed = RemArgs {
            channel: c.next()?,
            client: c.next()?,
            join_leave: false,
        };
        while let Some(option) = c.next_opt() {
            if is_keyword(option, "JOINLEAVE") {
                parsed.join_leave = true;
            } else {
                return Err(GyreError::Syntax(option.to_vec()));
            }
        }
        Ok(parsed)
    }
}

/// A parsed `GYRE.PRESENCE` call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GetArgs<'a> {
    pub channel: &'a [u8],
    pub raw: bool,
}

impl<'a> GetArgs<'a> {
    pub fn parse(args: &[&'a [u8]]) -> GyreResult<Self> {
        let mut c = Cursor::new(args);
        let channel = c.next()?;
        let raw = match c.next_opt() {
            None => false,
            Some(option) if is_keyword(option, "RAW") => true,
            Some(option) => return Err(GyreError::Syntax(option.to_vec())),
        };
        c.finish()?;
        Ok(GetArgs { channel, raw })
    }
}

/// `[client, user, conn_info, chan_info]` of a stored ClientInfo.
pub fn decode_entry(stored: &[u8]) -> GyreResult<[Vec<u8>; 4]> {
    let info = ClientInfo::decode(stored).map_err(|_| GyreError::CorruptPresence)?;
    Ok([
        info.client.into_bytes(),
        info.user.into_bytes(),
        info.conn_info.to_vec(),
        info.chan_info.to_vec(),
    ])
}

/// `[num_clients, num_unique_users]` over the stored ClientInfos of live entries.
pub fn stats<'a>(live: impl IntoIterator<Item = &'a [u8]>) -> GyreResult<(u64, u64)> {
    let mut clients = 0u64;
    let mut users = BTreeSet::new();
    for stored in live {
        let info = ClientInfo::decode(stored).map_err(|_| GyreError::CorruptPresence)?;
        clients += 1;
        users.insert(info.user);
    }
    Ok((clients, users.len() as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(args: &[&'static str]) -> Vec<&'static [u8]> {
        args.iter().map(|a| a.as_bytes()).collect()
    }

    #[test]
    fn expiry_is_exclusive_of_now() {
        assert!(is_alive(101.0, 100));
        assert!(!is_alive(100.0, 100));
        assert!(!is_alive(99.0, 100));
    }

    #[test]
    fn parses_add() {
        let a = AddArgs::parse(&raw(&[
            "ch",
            "c1",
            "u1",
            "info",
            "{}",
            "CHANINFO",
            "x",
            "TTL",
            "30",
            "joinleave",
        ]))
        .unwrap();
        assert_eq!(
            (
                a.info.client,
                a.info.user,
                a.info.conn_info,
                a.info.chan_info,
                a.ttl,
                a.join_leave
            ),
            ("c1", "u1", &b"{}"[..], &b"x"[..], Some(30), true)
        );
        let info = a.info.to_client_info();
        assert_eq!((info.client.as_str(), info.user.as_str()), ("c1", "u1"));
        assert_eq!(
            AddArgs::parse(&raw(&["ch", "c1"])),
            Err(GyreError::WrongArity)
        );
        assert_eq!(
            AddArgs::parse(&raw(&["ch", "c1", "u", "TTL", "0"])),
            Err(GyreError::MustBePositive("TTL"))
        );
        assert_eq!(
            AddArgs::parse(&raw(&["ch", "c1", "u", "TTL", "-5"])),
            Err(GyreError::NotANonNegativeInteger("TTL"))
        );
        assert_eq!(
            AddArgs::parse(&raw(&["ch", "c1", "u", "X"])),
            Err(GyreError::Syntax(b"X".to_vec()))
        );
    }

    #[test]
    fn parses_rem_and_get() {
        let r = RemArgs::parse(&raw(&["ch", "c1", "JOINLEAVE"])).unwrap();
        assert_eq!((r.client, r.join_leave), (&b"c1"[..], true));
        assert_eq!(
            RemArgs::parse(&raw(&["ch", "c1", "NOW"])),
            Err(GyreError::Syntax(b"NOW".to_vec()))
        );
        assert!(GetArgs::parse(&raw(&["ch", "raw"])).unwrap().raw);
        assert!(!GetArgs::parse(&raw(&["ch"])).unwrap().raw);
        assert_eq!(
            GetArgs::parse(&raw(&["ch", "RAW", "RAW"])),
            Err(GyreError::WrongArity)
        );
        assert_eq!(GetArgs::parse(&raw(&[])), Err(GyreError::WrongArity));
    }

    #[test]
    fn stats_count_unique_users() {
        let enc = |c: &str, u: &str| {
            ClientInfo {
                client: c.into(),
                user: u.into(),
                ..Default::default()
            }
            .encode_to_vec()
        };
        let stored = [enc("a", "u1"), enc("b", "u1"), enc("c", "u2")];
        assert_eq!(stats(stored.iter().map(Vec::as_slice)), Ok((3, 2)));
        assert_eq!(
            decode_entry(&stored[2]),
            Ok([b"c".to_vec(), b"u2".to_vec(), vec![], vec![]])
        );
        assert_eq!(stats([&b"\xff"[..]]), Err(GyreError::CorruptPresence));
    }
}
