//! `GYRE.PUBLISH`: arguments, retention rules, the offset/epoch step and the stored Publication.

use std::collections::HashMap;

use bytes::Bytes;
use gyre_proto::Publication;
use prost::Message;

use super::ClientInfoArgs;
use super::error::{GyreError, GyreResult};
use super::lineage::{EpochStep, Lineage, next_epoch};
use super::namespace::NamespaceOptions;
use super::parse::{Cursor, MAX_HISTORY_SIZE, is_keyword};

/// History size and TTL (seconds) of a channel. `size == 0` means no history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct History {
    pub size: u64,
    pub ttl: u64,
}

/// A parsed `GYRE.PUBLISH` call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishArgs<'a> {
    pub channel: &'a [u8],
    pub data: &'a [u8],
    pub history: Option<History>,
    pub meta_ttl: Option<u64>,
    pub idempotency_key: Option<&'a [u8]>,
    pub idempotency_ttl: Option<u64>,
    pub info: Option<ClientInfoArgs<'a>>,
    /// In argument order; a repeated key keeps its last value when encoded.
    pub tags: Vec<(&'a str, &'a str)>,
    /// `DELTA`: the publication may reach delta subscribers as a patch (stored and published as
    /// `Publication::delta_allowed`).
    pub delta: bool,
    /// `VERSION <n>` (n > 0) and `VERSION-EPOCH <e>`: with history, the publication is skipped
    /// unless it is newer than the channel's stored version (`gyre_proto::version::is_stale`).
    pub version: Option<u64>,
    pub version_epoch: &'a str,
}

const OPTIONS: [&str; 9] = [
    "HISTORY",
    "META-TTL",
    "IDEMPOTENCY",
    "IDEMPOTENCY-TTL",
    "INFO",
    "TAGS",
    "DELTA",
    "VERSION",
    "VERSION-EPOCH",
];

impl<'a> PublishArgs<'a> {
    /// Parses the arguments after `GYRE.PUBLISH`.
    pub fn parse(args: &[&'a [u8]]) -> GyreResult<Self> {
        let mut c = Cursor::new(args);
        let mut parsed = PublishArgs {
            channel: c.next()?,
            data: c.next()?,
            history: None,
            meta_ttl: None,
            idempotency_key: None,
            idempotency_ttl: None,
            info: None,
            tags: Vec::new(),
            delta: false,
            version: None,
            version_epoch: "",
        };
        let mut version_epoch = None;
        while let Some(option) = c.next_opt() {
            if is_keyword(option, "HISTORY") {
                let size = c.next_u64("history size")?;
                if size > MAX_HISTORY_SIZE {
                    return Err(GyreError::OutOfRange("history size"));
                }
                let ttl = c.next_ttl("history ttl")?;
                if size > 0 && ttl == 0 {
                    return Err(GyreError::HistoryNeedsTtl);
                }
                parsed.history = Some(History { size, ttl });
            } else if is_keyword(option, "META-TTL") {
                parsed.meta_ttl = Some(c.next_ttl("META-TTL")?);
            } else if is_keyword(option, "IDEMPOTENCY") {
                parsed.idempotency_key = Some(c.next()?);
            } else if is_keyword(option, "IDEMPOTENCY-TTL") {
                let ttl = c.next_ttl("IDEMPOTENCY-TTL")?;
                if ttl == 0 {
                    return Err(GyreError::MustBePositive("IDEMPOTENCY-TTL"));
                }
                parsed.idempotency_ttl = Some(ttl);
            } else if is_keyword(option, "INFO") {
                parsed.info = Some(ClientInfoArgs {
                    client: c.next_utf8("INFO client")?,
                    user: c.next_utf8("INFO user")?,
                    conn_info: c.next()?,
                    chan_info: c.next()?,
                });
            } else if is_keyword(option, "TAGS") {
                parse_tags(&mut c, &mut parsed.tags)?;
            } else if is_keyword(option, "DELTA") {
                parsed.delta = true;
            } else if is_keyword(option, "VERSION") {
                let version = c.next_u64("VERSION")?;
                if version == 0 {
                    return Err(GyreError::MustBePositive("VERSION"));
                }
                parsed.version = Some(version);
            } else if is_keyword(option, "VERSION-EPOCH") {
                version_epoch = Some(c.next_utf8("VERSION-EPOCH")?);
            } else {
                return Err(GyreError::Syntax(option.to_vec()));
            }
        }
        if let Some(epoch) = version_epoch {
            if parsed.version.is_none() {
                return Err(GyreError::VersionEpochNeedsVersion);
            }
            parsed.version_epoch = epoch;
        }
        Ok(parsed)
    }
}

/// `TAGS <count> <k> <v> …`. The count is checked against the arguments that are left before
/// anything is read, and the vector grows pair by pair, so a huge count costs nothing.
fn parse_tags<'a>(c: &mut Cursor<'_, 'a>, tags: &mut Vec<(&'a str, &'a str)>) -> GyreResult<()> {
    let count = c.next_u64("TAGS count")?;
    let needed = count.checked_mul(2).ok_or(GyreError::TagsCountMismatch)?;
    if needed > c.remaining() as u64 {
        return Err(GyreError::TagsCountMismatch);
    }
    for _ in 0..count {
        tags.push((c.next_utf8("TAGS key")?, c.next_utf8("TAGS value")?));
    }
    // More values where the next option should start: the count was too small.
    if let Some(next) = c.peek()
        && !OPTIONS.iter().any(|o| is_keyword(next, o))
    {
        return Err(GyreError::TagsCountMismatch);
    }
    Ok(())
}

/// The server-wide fallbacks (`gyre.history-size`, `gyre.history-ttl`,
/// `gyre.history-meta-ttl`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Defaults {
    pub history: History,
    pub meta_ttl: u64,
}

/// What a publish keeps: `history` is `None` for a channel without history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    pub history: Option<History>,
    pub meta_ttl: u64,
}

impl PublishArgs<'_> {
    /// Whether the channel's namespace options are needed to decide the retention.
    pub fn needs_namespace(&self) -> bool {
        self.history.is_none() || self.meta_ttl.is_none()
    }

    /// Arguments first, then the namespace, then the server defaults.
    pub fn retention(
        &self,
        namespace: Option<NamespaceOptions>,
        defaults: Defaults,
    ) -> GyreResult<Retention> {
        let history = match (self.history, namespace) {
            (Some(h), _) => h,
            (None, Some(ns)) => {
                if ns.history_size > 0 && ns.history_ttl == 0 {
                    return Err(GyreError::CorruptNamespace);
                }
                History {
                    size: ns.history_size,
                    ttl: ns.history_ttl,
                }
            }
            (None, None) => {
                if defaults.history.size > 0 && defaults.history.ttl == 0 {
                    return Err(GyreError::DefaultHistoryNeedsTtl);
                }
                defaults.history
            }
        };
        let meta_ttl = self
            .meta_ttl
            .or(namespace.map(|ns| ns.meta_ttl))
            .unwrap_or(defaults.meta_ttl);
        Ok(Retention {
            history: (history.size > 0).then_some(history),
            meta_ttl,
        })
    }

    /// The protobuf stored in the stream and published: data, info, tags and time, no offset.
    pub fn encode_publication(&self, now_ms: i64) -> Vec<u8> {
        let tags: HashMap<String, String> = self
            .tags
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Publication {
            data: Bytes::copy_from_slice(self.data),
            info: self.info.map(ClientInfoArgs::to_client_info),
            tags,
            time: now_ms,
            delta_allowed: self.delta,
            ..Default::default()
        }
        .encode_to_vec()
    }
}

/// The position a new publication takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Append {
    pub offset: u64,
    pub epoch: String,
    /// The epoch is created or rotated: `e` and the lineage `l` must be written with `s`.
    pub epoch_is_new: bool,
    /// The epoch replaced one written under another lineage.
    pub rotated: bool,
    /// The sequence starts again at 1, so stream data left from an earlier life is stale.
    pub restart: bool,
}

/// Centrifuge's rule, with lineages: the epoch is kept, rotated or created as `step` says (see
/// [`super::lineage::next_epoch`]), then the top offset is incremented. A rotated epoch continues
/// the offsets, so the surviving history stays readable under it.
pub fn plan_append(
    step: EpochStep,
    stored_top: u64,
    fresh_epoch: impl FnOnce() -> String,
) -> GyreResult<Append> {
    // HINCRBY's range: a hash that a Centrifugo node shares must stay readable by it.
    let offset = stored_top
        .checked_add(1)
        .filter(|&o| o <= i64::MAX as u64)
        .ok_or(GyreError::CorruptMeta)?;
    let (epoch, epoch_is_new, rotated) = match step {
        EpochStep::Keep(e) => (e, false, false),
        EpochStep::Rotate(e) => (e, true, true),
        EpochStep::Create => (fresh_epoch(), true, false),
    };
    Ok(Append {
        offset,
        epoch,
        epoch_is_new,
        rotated,
        restart: offset == 1,
    })
}

/// A stream meta hash as stored: `e`, `s` and `l`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMeta {
    pub epoch: Option<String>,
    pub top: u64,
    /// The lineage that last wrote the epoch (see [`super::lineage`]).
    pub lineage: Option<Vec<u8>>,
}

impl StoredMeta {
    /// From the raw fields; a missing hash is `(None, None, None)`.
    pub fn parse(e: Option<&[u8]>, s: Option<&[u8]>, l: Option<&[u8]>) -> GyreResult<Self> {
        Ok(Self {
            epoch: parse_epoch(e)?,
            top: parse_top(s)?,
            lineage: l.map(<[u8]>::to_vec),
        })
    }

    /// What the next write on a primary of lineage `here` does to the epoch.
    pub fn next_epoch(&self, here: Lineage, arrived: bool) -> EpochStep {
        next_epoch(self.epoch.clone(), self.lineage.as_deref(), here, arrived)
    }
}

/// The top offset field `s` of the meta hash; missing means 0.
pub fn parse_top(value: Option<&[u8]>) -> GyreResult<u64> {
    match value {
        None => Ok(0),
        Some(v) => std::str::from_utf8(v)
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or(GyreError::CorruptMeta),
    }
}

/// The epoch field `e` of the meta hash.
pub fn parse_epoch(value: Option<&[u8]>) -> GyreResult<Option<String>> {
    value
        .map(|v| String::from_utf8(v.to_vec()).map_err(|_| GyreError::CorruptMeta))
        .transpose()
}

/// The last accepted version (`v`) and version epoch (`ve`) of a meta hash; `None` when no
/// versioned publication was accepted.
pub fn parse_version(v: Option<&[u8]>, ve: Option<&[u8]>) -> GyreResult<Option<(u64, String)>> {
    let Some(v) = v else { return Ok(None) };
    let version = parse_top(Some(v))?;
    let epoch = parse_epoch(ve)?.unwrap_or_default();
    Ok(Some((version, epoch)))
}

/// An idempotency result hash: `None` when no result is remembered (no `e` field).
pub fn parse_result(e: Option<&[u8]>, s: Option<&[u8]>) -> GyreResult<Option<(u64, String)>> {
    let Some(e) = e else { return Ok(None) };
    let epoch = String::from_utf8(e.to_vec()).map_err(|_| GyreError::CorruptResult)?;
    let offset = parse_top(s).map_err(|_| GyreError::CorruptResult)?;
    Ok(Some((offset, epoch)))
}

/// Absolute expiry in unix milliseconds. TTLs are bounded by `MAX_TTL_SECONDS`, so this cannot
/// overflow for any real clock.
pub fn deadline_ms(now_ms: i64, ttl_seconds: u64) -> i64 {
    now_ms.saturating_add((ttl_seconds as i64).saturating_mul(1000))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&'static str]) -> GyreResult<PublishArgs<'static>> {
        let raw: Vec<&'static [u8]> = args.iter().map(|a| a.as_bytes()).collect();
        PublishArgs::parse(&raw)
    }

    const DEFAULTS: Defaults = Defaults {
        history: History { size: 0, ttl: 0 },
        meta_ttl: 2_592_000,
    };

    #[test]
    fn parses_every_option() {
        let a = parse(&[
            "ch",
            "data",
            "history",
            "100",
            "300",
            "META-TTL",
            "60",
            "IDEMPOTENCY",
            "k1",
            "IDEMPOTENCY-TTL",
            "30",
            "INFO",
            "c1",
            "u1",
            "{}",
            "",
            "TAGS",
            "2",
            "a",
            "1",
            "b",
            "2",
        ])
        .unwrap();
        assert_eq!(a.channel, b"ch");
        assert_eq!(a.data, b"data");
        assert_eq!(
            a.history,
            Some(History {
                size: 100,
                ttl: 300
            })
        );
        assert_eq!(a.meta_ttl, Some(60));
        assert_eq!(a.idempotency_key, Some(&b"k1"[..]));
        assert_eq!(a.idempotency_ttl, Some(30));
        assert_eq!(
            a.info,
            Some(ClientInfoArgs {
                client: "c1",
                user: "u1",
                conn_info: b"{}",
                chan_info: b""
            })
        );
        assert_eq!(a.tags, vec![("a", "1"), ("b", "2")]);
    }

    #[test]
    fn parses_delta_and_versions() {
        let plain = parse(&["ch", "d"]).unwrap();
        assert_eq!(
            (plain.delta, plain.version, plain.version_epoch),
            (false, None, "")
        );
        let a = parse(&[
            "ch",
            "d",
            "delta",
            "VERSION",
            "42",
            "version-epoch",
            "e2",
            "TAGS",
            "1",
            "k",
            "v",
        ])
        .unwrap();
        assert_eq!(
            (a.delta, a.version, a.version_epoch),
            (true, Some(42), "e2")
        );
        assert_eq!(a.tags, vec![("k", "v")]);
        // The options may come in any order, and TAGS may end right before one of them.
        let b = parse(&[
            "ch",
            "d",
            "TAGS",
            "1",
            "k",
            "v",
            "VERSION-EPOCH",
            "x",
            "VERSION",
            "1",
        ])
        .unwrap();
        assert_eq!((b.version, b.version_epoch), (Some(1), "x"));
        let stored = Publication::decode(&a.encode_publication(1)[..]).unwrap();
        assert!(stored.delta_allowed, "DELTA travels in the Publication");
        assert!(
            !Publication::decode(&plain.encode_publication(1)[..])
                .unwrap()
                .delta_allowed
        );
    }

    #[test]
    fn rejects_bad_versions() {
        assert_eq!(
            parse(&["ch", "d", "VERSION", "0"]),
            Err(GyreError::MustBePositive("VERSION"))
        );
        assert_eq!(
            parse(&["ch", "d", "VERSION", "-3"]),
            Err(GyreError::NotANonNegativeInteger("VERSION"))
        );
        assert_eq!(
            parse(&["ch", "d", "VERSION"]),
            Err(GyreError::MissingValue(b"VERSION".to_vec()))
        );
        assert_eq!(
            parse(&["ch", "d", "VERSION-EPOCH", "e"]),
            Err(GyreError::VersionEpochNeedsVersion)
        );
        assert_eq!(
            parse(&["ch", "d", "DELTA", "yes"]),
            Err(GyreError::Syntax(b"yes".to_vec()))
        );
    }

    #[test]
    fn rejects_bad_arguments() {
        assert_eq!(parse(&["ch"]), Err(GyreError::WrongArity));
        assert_eq!(
            parse(&["ch", "d", "HISTORY", "10", "0"]),
            Err(GyreError::HistoryNeedsTtl)
        );
        assert_eq!(
            parse(&["ch", "d", "HISTORY", "-1", "10"]),
            Err(GyreError::NotANonNegativeInteger("history size"))
        );
        assert_eq!(
            parse(&["ch", "d", "HISTORY", "10"]),
            Err(GyreError::MissingValue(b"HISTORY".to_vec()))
        );
        assert_eq!(
            parse(&["ch", "d", "BOGUS"]),
            Err(GyreError::Syntax(b"BOGUS".to_vec()))
        );
        assert_eq!(
            parse(&["ch", "d", "IDEMPOTENCY-TTL", "0"]),
            Err(GyreError::MustBePositive("IDEMPOTENCY-TTL"))
        );
        assert_eq!(
            parse(&["ch", "d", "TAGS", "2", "a", "1"]),
            Err(GyreError::TagsCountMismatch)
        );
        assert_eq!(
            parse(&["ch", "d", "TAGS", "1", "a", "1", "b", "2"]),
            Err(GyreError::TagsCountMismatch)
        );
        assert_eq!(
            parse(&["ch", "d", "TAGS", "18446744073709551615", "a"]),
            Err(GyreError::TagsCountMismatch)
        );
        assert_eq!(
            parse(&["ch", "d", "TAGS", "x"]),
            Err(GyreError::NotANonNegativeInteger("TAGS count"))
        );
    }

    #[test]
    fn tags_may_be_followed_by_options() {
        let a = parse(&["ch", "d", "TAGS", "1", "a", "1", "HISTORY", "1", "1"]).unwrap();
        assert_eq!(a.tags, vec![("a", "1")]);
        assert_eq!(a.history, Some(History { size: 1, ttl: 1 }));
        assert_eq!(parse(&["ch", "d", "TAGS", "0"]).unwrap().tags, vec![]);
    }

    #[test]
    fn size_zero_history_needs_no_ttl() {
        let a = parse(&["ch", "d", "HISTORY", "0", "0"]).unwrap();
        let r = a.retention(None, DEFAULTS).unwrap();
        assert_eq!(r.history, None);
    }

    #[test]
    fn retention_prefers_arguments_then_namespace_then_defaults() {
        let ns = NamespaceOptions {
            history_size: 5,
            history_ttl: 50,
            meta_ttl: 500,
        };
        let explicit = parse(&["ch", "d", "HISTORY", "1", "10", "META-TTL", "7"]).unwrap();
        assert!(!explicit.needs_namespace());
        assert_eq!(
            explicit.retention(Some(ns), DEFAULTS).unwrap(),
            Retention {
                history: Some(History { size: 1, ttl: 10 }),
                meta_ttl: 7
            }
        );
        let history_only = parse(&["ch", "d", "HISTORY", "1", "10"]).unwrap();
        assert!(history_only.needs_namespace());
        assert_eq!(
            history_only.retention(Some(ns), DEFAULTS).unwrap().meta_ttl,
            500
        );
        assert_eq!(
            history_only.retention(None, DEFAULTS).unwrap().meta_ttl,
            2_592_000
        );
        let bare = parse(&["ch", "d"]).unwrap();
        assert_eq!(
            bare.retention(Some(ns), DEFAULTS).unwrap().history,
            Some(History { size: 5, ttl: 50 })
        );
        assert_eq!(bare.retention(None, DEFAULTS).unwrap().history, None);
        let bad_defaults = Defaults {
            history: History { size: 3, ttl: 0 },
            meta_ttl: 0,
        };
        assert_eq!(
            bare.retention(None, bad_defaults),
            Err(GyreError::DefaultHistoryNeedsTtl)
        );
    }

    #[test]
    fn append_creates_the_epoch_once_and_restarts_at_one() {
        let first = plan_append(EpochStep::Create, 0, || "NewEpoch".into()).unwrap();
        assert_eq!(
            first,
            Append {
                offset: 1,
                epoch: "NewEpoch".into(),
                epoch_is_new: true,
                rotated: false,
                restart: true
            }
        );
        let next = plan_append(EpochStep::Keep("Old".into()), 41, || unreachable!()).unwrap();
        assert_eq!(
            (
                next.offset,
                next.epoch.as_str(),
                next.epoch_is_new,
                next.restart
            ),
            (42, "Old", false, false)
        );
        assert_eq!(
            plan_append(EpochStep::Create, i64::MAX as u64, || "x".into()),
            Err(GyreError::CorruptMeta)
        );
    }

    #[test]
    fn a_rotated_epoch_continues_the_offsets() {
        let step = plan_append(EpochStep::Rotate("Rotated".into()), 60, || unreachable!()).unwrap();
        assert_eq!(
            step,
            Append {
                offset: 61,
                epoch: "Rotated".into(),
                epoch_is_new: true,
                rotated: true,
                restart: false
            }
        );
    }

    #[test]
    fn stored_meta_decides_with_its_lineage() {
        let here = Lineage::from_raw(5);
        let own = StoredMeta::parse(Some(b"Epoch"), Some(b"7"), Some(&here.text())).unwrap();
        assert_eq!(own.top, 7);
        assert_eq!(own.next_epoch(here, false), EpochStep::Keep("Epoch".into()));
        assert!(matches!(own.next_epoch(here, true), EpochStep::Rotate(_)));
        let legacy = StoredMeta::parse(Some(b"Epoch"), Some(b"7"), None).unwrap();
        assert!(matches!(
            legacy.next_epoch(here, false),
            EpochStep::Rotate(_)
        ));
        let missing = StoredMeta::parse(None, None, None).unwrap();
        assert_eq!(
            (missing.top, missing.next_epoch(here, false)),
            (0, EpochStep::Create)
        );
        assert_eq!(
            StoredMeta::parse(Some(b"e"), Some(b"x"), None),
            Err(GyreError::CorruptMeta)
        );
    }

    #[test]
    fn meta_and_result_fields() {
        assert_eq!(parse_top(None), Ok(0));
        assert_eq!(parse_top(Some(b"17")), Ok(17));
        assert_eq!(parse_top(Some(b"-1")), Err(GyreError::CorruptMeta));
        assert_eq!(parse_result(None, Some(b"1")), Ok(None));
        assert_eq!(
            parse_result(Some(b"abc"), Some(b"3")),
            Ok(Some((3, "abc".into())))
        );
        assert_eq!(parse_result(Some(b""), None), Ok(Some((0, String::new()))));
        assert_eq!(
            parse_result(Some(b"e"), Some(b"x")),
            Err(GyreError::CorruptResult)
        );
    }

    #[test]
    fn publication_carries_data_info_tags_and_time() {
        let a = parse(&[
            "ch", "hello", "INFO", "c", "u", "ci", "", "TAGS", "1", "k", "v",
        ])
        .unwrap();
        let p = Publication::decode(&a.encode_publication(1234)[..]).unwrap();
        assert_eq!(&p.data[..], b"hello");
        assert_eq!(p.time, 1234);
        assert_eq!(p.offset, 0);
        assert_eq!(p.tags.get("k").map(String::as_str), Some("v"));
        let info = p.info.unwrap();
        assert_eq!((info.client.as_str(), info.user.as_str()), ("c", "u"));
        assert_eq!(&info.conn_info[..], b"ci");
        let plain = parse(&["ch", "x"]).unwrap();
        assert!(
            Publication::decode(&plain.encode_publication(1)[..])
                .unwrap()
                .info
                .is_none()
        );
    }

    #[test]
    fn deadlines() {
        assert_eq!(deadline_ms(1_000, 2), 3_000);
        assert_eq!(deadline_ms(1_000, 0), 1_000);
    }
}
