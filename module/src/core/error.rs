//! The one error type of the module. Variants carry data, never reply text: `edge.rs` is the only
//! place that turns them into `ERR …` strings, so tests and counters can match on the variant.

/// Why a GYRE.* command refused or failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GyreError {
    /// Too few or too many arguments for the command's fixed shape.
    WrongArity,
    /// The named argument is not a decimal non-negative integer.
    NotANonNegativeInteger(&'static str),
    /// The named argument is a number, but larger than the module accepts.
    OutOfRange(&'static str),
    /// The named argument must be greater than zero.
    MustBePositive(&'static str),
    /// `LIMIT` takes -1 or a non-negative integer.
    InvalidLimit,
    /// The option with this keyword ends before all of its values.
    MissingValue(Vec<u8>),
    /// An argument that is neither a known keyword nor in a position that takes a value.
    Syntax(Vec<u8>),
    /// `HISTORY <size> 0` with size > 0: a history that never expires is not allowed.
    HistoryNeedsTtl,
    /// The configured default history size is > 0 while the default TTL is 0.
    DefaultHistoryNeedsTtl,
    /// `TAGS <count>` is followed by a different number of key/value pairs.
    TagsCountMismatch,
    /// `VERSION-EPOCH` without `VERSION`: an epoch alone orders nothing.
    VersionEpochNeedsVersion,
    /// The named argument must be UTF-8 because the protobuf field is a `string`.
    NotUtf8(&'static str),
    /// A channel with `}` but no hash tag, or an empty one, in cluster mode: no key layout
    /// shares its slot.
    UnslottableChannel,
    /// Namespace names cannot contain `:` (a channel's namespace ends at its first `:`).
    NamespaceNameHasColon,
    /// A key used by the module holds another type (someone wrote it by hand).
    WrongType,
    /// The stream meta hash holds something other than an integer top offset.
    CorruptMeta,
    /// A `P.namespaces` value is not `<size> <ttl> <meta-ttl>`.
    CorruptNamespace,
    /// A stream entry whose `d` field is missing or not a Publication.
    CorruptEntry(u64),
    /// A presence entry that is not a ClientInfo protobuf.
    CorruptPresence,
    /// An idempotency result hash that does not hold `e` and an integer `s`.
    CorruptResult,
    /// Redis refused to append the entry to the history stream.
    StreamAppendFailed,
    /// A command the module ran inside Redis answered with this error.
    Redis(String),
    /// The channel's slot (this number) is migrating and some of the keys the command needs are
    /// not on this node: they may be on the other one, so the command must be retried.
    SlotMigrating(u16),
}

/// Shorthand for results inside the module.
pub type GyreResult<T> = Result<T, GyreError>;
