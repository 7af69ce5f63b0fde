//! `GYRE.HISTORY`: arguments, the stream range a query reads, and the entry reply shape.

use gyre_proto::Publication;
use prost::Message;

use super::error::{GyreError, GyreResult};
use super::parse::{Cursor, is_keyword, parse_u64};

/// How many publications a query returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// No `LIMIT`, or `LIMIT -1`.
    All,
    /// `LIMIT n`; `LIMIT 0` asks for the position only.
    AtMost(u64),
}

/// A parsed `GYRE.HISTORY` call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryArgs<'a> {
    pub channel: &'a [u8],
    pub since: Option<u64>,
    pub limit: Limit,
    pub reverse: bool,
    pub raw: bool,
}

impl<'a> HistoryArgs<'a> {
    /// Parses the arguments after `GYRE.HISTORY`.
    pub fn parse(args: &[&'a [u8]]) -> GyreResult<Self> {
        let mut c = Cursor::new(args);
        let mut parsed = HistoryArgs {
            channel: c.next()?,
            since: None,
            limit: Limit::All,
            reverse: false,
            raw: false,
        };
        while let Some(option) = c.next_opt() {
            if is_keyword(option, "SINCE") {
                parsed.since = Some(c.next_u64("SINCE offset")?);
            } else if is_keyword(option, "LIMIT") {
                parsed.limit = parse_limit(c.next()?)?;
            } else if is_keyword(option, "REVERSE") {
                parsed.reverse = true;
            } else if is_keyword(option, "RAW") {
                parsed.raw = true;
            } else {
                return Err(GyreError::Syntax(option.to_vec()));
            }
        }
        Ok(parsed)
    }

    /// The stream ids to read, or `None` when the query can return nothing.
    pub fn range(&self) -> Option<Range> {
        let max_entries = match self.limit {
            Limit::AtMost(0) => return None,
            Limit::AtMost(n) => Some(n),
            Limit::All => None,
        };
        let (first, last) = match (self.since, self.reverse) {
            (None, _) => (0, u64::MAX),
            (Some(since), false) => (since.checked_add(1)?, u64::MAX),
            (Some(since), true) => (0, since.checked_sub(1)?),
        };
        Some(Range {
            first,
            last,
            reverse: self.reverse,
            max_entries,
        })
    }
}

fn parse_limit(arg: &[u8]) -> GyreResult<Limit> {
    if arg == b"-1" {
        return Ok(Limit::All);
    }
    parse_u64(arg, "LIMIT")
        .map(Limit::AtMost)
        .map_err(|_| GyreError::InvalidLimit)
}

/// Offsets `first..=last`, read newest first when `reverse`, at most `max_entries` of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    pub first: u64,
    pub last: u64,
    pub reverse: bool,
    pub max_entries: Option<u64>,
}

impl Range {
    /// Whether `taken` entries already fill the limit.
    pub fn is_full(&self, taken: u64) -> bool {
        self.max_entries.is_some_and(|max| taken >= max)
    }
}

/// One history entry in the non-RAW reply: `[offset, data, time_ms, info, tags]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub offset: u64,
    pub data: Vec<u8>,
    pub time_ms: i64,
    /// `[client, user, conn_info, chan_info]`, or `None` for a publication without info.
    pub info: Option<[Vec<u8>; 4]>,
    /// Flat `k1, v1, k2, v2 …`, sorted by key so replies are stable.
    pub tags: Vec<String>,
}

impl Entry {
    /// Decodes the stored Publication of the entry at `offset`.
    pub fn decode(offset: u64, stored: &[u8]) -> GyreResult<Self> {
        let p = Publication::decode(stored).map_err(|_| GyreError::CorruptEntry(offset))?;
        let info = p.info.map(|i| {
            [
                i.client.into_bytes(),
                i.user.into_bytes(),
                i.conn_info.to_vec(),
                i.chan_info.to_vec(),
            ]
        });
        let mut pairs: Vec<(String, String)> = p.tags.into_iter().collect();
        pairs.sort();
        let tags = pairs.into_iter().flat_map(|(k, v)| [k, v]).collect();
        Ok(Entry {
            offset,
            data: p.data.to_vec(),
            time_ms: p.time,
            info,
            tags,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use gyre_proto::ClientInfo;

    fn parse(args: &[&'static str]) -> GyreResult<HistoryArgs<'static>> {
        let raw: Vec<&'static [u8]> = args.iter().map(|a| a.as_bytes()).collect();
        HistoryArgs::parse(&raw)
    }

    fn range(args: &[&'static str]) -> Option<Range> {
        parse(args).unwrap().range()
    }

    #[test]
    fn parses_options() {
        let a = parse(&["ch", "since", "5", "LIMIT", "10", "reverse", "RAW"]).unwrap();
        assert_eq!(
            (a.since, a.limit, a.reverse, a.raw),
            (Some(5), Limit::AtMost(10), true, true)
        );
        assert_eq!(parse(&["ch", "LIMIT", "-1"]).unwrap().limit, Limit::All);
        assert_eq!(parse(&["ch", "LIMIT", "-2"]), Err(GyreError::InvalidLimit));
        assert_eq!(
            parse(&["ch", "SINCE", "x"]),
            Err(GyreError::NotANonNegativeInteger("SINCE offset"))
        );
        assert_eq!(
            parse(&["ch", "FROM"]),
            Err(GyreError::Syntax(b"FROM".to_vec()))
        );
        assert_eq!(parse(&[]), Err(GyreError::WrongArity));
        assert_eq!(
            parse(&["ch", "LIMIT"]),
            Err(GyreError::MissingValue(b"LIMIT".to_vec()))
        );
    }

    #[test]
    fn forward_and_reverse_ranges() {
        let all = range(&["ch"]).unwrap();
        assert_eq!(
            (all.first, all.last, all.reverse, all.max_entries),
            (0, u64::MAX, false, None)
        );
        let since = range(&["ch", "SINCE", "3", "LIMIT", "2"]).unwrap();
        assert_eq!(
            (since.first, since.last, since.max_entries),
            (4, u64::MAX, Some(2))
        );
        let back = range(&["ch", "SINCE", "3", "REVERSE"]).unwrap();
        assert_eq!((back.first, back.last, back.reverse), (0, 2, true));
        let top = range(&["ch", "REVERSE"]).unwrap();
        assert_eq!((top.first, top.last, top.reverse), (0, u64::MAX, true));
    }

    #[test]
    fn empty_ranges() {
        assert_eq!(range(&["ch", "LIMIT", "0"]), None);
        assert_eq!(range(&["ch", "SINCE", "0", "REVERSE"]), None);
        assert_eq!(range(&["ch", "SINCE", "18446744073709551615"]), None);
    }

    #[test]
    fn limit_fills() {
        let r = range(&["ch", "LIMIT", "2"]).unwrap();
        assert!(!r.is_full(1));
        assert!(r.is_full(2));
        assert!(!range(&["ch"]).unwrap().is_full(u64::MAX));
    }

    #[test]
    fn entry_decodes_info_and_sorted_tags() {
        let p = Publication {
            data: Bytes::from_static(b"{}"),
            time: 99,
            info: Some(ClientInfo {
                user: "u".into(),
                client: "c".into(),
                conn_info: Bytes::from_static(b"ci"),
                chan_info: Bytes::new(),
            }),
            tags: [("b", "2"), ("a", "1")]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
            ..Default::default()
        };
        let e = Entry::decode(7, &p.encode_to_vec()).unwrap();
        assert_eq!(e.offset, 7);
        assert_eq!(e.data, b"{}");
        assert_eq!(e.time_ms, 99);
        assert_eq!(
            e.info,
            Some([b"c".to_vec(), b"u".to_vec(), b"ci".to_vec(), vec![]])
        );
        assert_eq!(e.tags, vec!["a", "1", "b", "2"]);
        assert_eq!(
            Entry::decode(3, b"\xff\xff"),
            Err(GyreError::CorruptEntry(3))
        );
    }
}
