//! The failover that loses acknowledged writes ("tail loss"), as in
//! `/work/shared/reference/redis-topologies.md`: a replica that stops reading, a replication link
//! cut by the primary, writes the primary acknowledges alone, then `kill -9` of the primary.

use std::time::{Duration, Instant};

use redis::Connection;

use crate::replies::{cmd, info_section};
use crate::server::RedisServer;

/// How long the replica keeps sleeping after the write window, so that it is still asleep when the
/// primary dies (killing and reaping takes a few milliseconds; a loaded machine needs margin).
const SLEEP_MARGIN: Duration = Duration::from_millis(900);

/// Makes `primary` acknowledge writes its replica never receives, then kills it with SIGKILL.
///
/// 1. `DEBUG SLEEP` on the replica (through `replica`, which must be a connection to it; the
///    replica needs `--enable-debug-command`): it stops reading its replication link;
/// 2. `CLIENT KILL TYPE replica` on the primary: the link is cut and the sleeping replica cannot
///    reconnect;
/// 3. `write` runs again and again on a connection to the primary for `window`: what it writes is
///    acknowledged by the primary only;
/// 4. the primary is killed (`kill -9`); the call returns once the replica is awake again, with
///    the number of `write` calls.
///
/// Panics if the replica was attached again when the primary died (then nothing would be lost).
/// Promoting the replica is up to the caller (`REPLICAOF NO ONE`, or Redis Cluster by itself).
pub fn crash_with_tail_loss(
    primary: &mut RedisServer,
    replica: Connection,
    window: Duration,
    mut write: impl FnMut(&mut Connection),
) -> usize {
    let sleep = window + SLEEP_MARGIN;
    let mut replica = replica;
    let sleeper = std::thread::spawn(move || {
        redis::cmd("DEBUG")
            .arg("SLEEP")
            .arg(format!("{:.3}", sleep.as_secs_f64()))
            .exec(&mut replica)
    });
    // DEBUG SLEEP blocks the replica as soon as it reads the command.
    std::thread::sleep(Duration::from_millis(100));
    let mut con = primary.connection();
    cmd(&mut con, &["CLIENT", "KILL", "TYPE", "replica"]);
    let deadline = Instant::now() + window;
    let mut writes = 0;
    while Instant::now() < deadline {
        write(&mut con);
        writes += 1;
    }
    let replicas = info_section(&mut con, "replication")
        .get("connected_slaves")
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        replicas, "0",
        "the replica attached again during the write window: nothing would be lost"
    );
    primary.crash();
    sleeper
        .join()
        .expect("DEBUG SLEEP thread")
        .expect("DEBUG SLEEP on the replica");
    writes
}
