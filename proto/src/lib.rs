//! Gyre's wire layer, shared by the Redis module and the proxy. Pure data: no IO, no runtime.
//!
//! - [`protocol`]: the Centrifugo client protocol messages, generated from `proto/client.proto`.
//! - [`codec`]: the JSON and Protobuf encodings of those messages, used by every transport.
//! - [`codes`]: the protocol's error, unsubscribe and disconnect codes.
//! - [`redis_payload`]: the bytes the module publishes on Redis PUB/SUB and the proxy decodes.
//! - [`fossil`]: Fossil deltas, for subscribers that negotiated delta compression.
//! - [`keys`]: the Redis Cluster hash-tag rule both sides name a channel's slot with.
//! - [`version`]: when a versioned publication is skipped, the rule of both engines.
//! - [`proxy`]: the backend hook messages (`proto/proxy.proto`), shared by the proxy's HTTP and
//!   GRPC clients and the tests' backends.

#![forbid(unsafe_code)]

pub mod codec;
pub mod codes;
pub mod fossil;
pub mod keys;
pub mod redis_payload;
pub mod version;

/// Messages of the client protocol (prost types with serde for the JSON codec).
pub mod protocol {
    #![allow(missing_docs)]
    include!(concat!(env!("OUT_DIR"), "/gyre.protocol.rs"));
}

/// Messages of the backend hook protocol (Centrifugo's proxy service), for the proxy's HTTP
/// (JSON) and GRPC clients: prost types with serde.
pub mod proxy {
    #![allow(missing_docs)]
    include!(concat!(env!("OUT_DIR"), "/centrifugal.centrifugo.proxy.rs"));
}

pub use codec::{
    DEFAULT_MAX_MESSAGE_SIZE, DecodeError, EncodeError, Encoding, FrameBuilder, FrameDecoder,
    WireMessage,
};
pub use protocol::{ClientInfo, Command, Publication, Push, Reply};
