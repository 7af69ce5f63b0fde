//! Pure logic of the module: no `redis-module` imports, unit-tested with plain `cargo test`.
//!
//! - [`parse`]: the argument cursor and number rules shared by every command.
//! - [`keys`]: key and PUB/SUB channel names, cluster hash tags, prefix validation.
//! - [`publish`], [`history`], [`presence`], [`namespace`]: one file per command family with its
//!   typed arguments and the rules that do not need Redis (offsets, ranges, expiry, retention).
//! - [`epoch`]: epoch generation; [`lineage`]: which run of a primary wrote a channel's meta,
//!   and when that keeps, rotates or creates its epoch.
//! - [`migration`]: when a command whose keys are not all on this node must check its slot, and
//!   hash slots.
//! - [`error`]: the module's error enum.

pub mod epoch;
pub mod error;
pub mod history;
pub mod keys;
pub mod lineage;
pub mod migration;
pub mod namespace;
pub mod parse;
pub mod presence;
pub mod publish;

pub use error::{GyreError, GyreResult};

use bytes::Bytes;
use gyre_proto::ClientInfo;

/// A ClientInfo borrowed from command arguments: the publisher of `GYRE.PUBLISH … INFO` and the
/// client of `GYRE.PRESENCE.ADD`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientInfoArgs<'a> {
    pub client: &'a str,
    pub user: &'a str,
    pub conn_info: &'a [u8],
    pub chan_info: &'a [u8],
}

impl ClientInfoArgs<'_> {
    pub fn to_client_info(self) -> ClientInfo {
        ClientInfo {
            user: self.user.to_owned(),
            client: self.client.to_owned(),
            conn_info: Bytes::copy_from_slice(self.conn_info),
            chan_info: Bytes::copy_from_slice(self.chan_info),
        }
    }
}
