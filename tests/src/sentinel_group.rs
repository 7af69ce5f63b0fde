//! A Redis Sentinel deployment for the failover tests: a primary and a replica (both with the
//! module, on TCP, with `DEBUG` for local clients) and three sentinels (`redis-server
//! sentinel.conf --sentinel`) monitoring them with down-after 1000 ms and failover-timeout
//! 5000 ms, so that a killed primary is replaced about 4 s later.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use redis::Value;

use crate::replies::info_section;
use crate::server::{RedisServer, free_port};
use crate::tail_loss::crash_with_tail_loss;
use crate::wait::wait_until;

/// How long the sentinels may take to know each other and the replica.
const DISCOVERY_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a failover may take after the primary died.
const FAILOVER_TIMEOUT: Duration = Duration::from_secs(30);

/// Two data nodes and three sentinels; everything is killed on drop.
pub struct SentinelGroup {
    // Sentinels first: they go before the servers they watch.
    sentinels: Vec<SentinelProcess>,
    /// The data nodes; which one is the primary changes with failovers.
    pub servers: [RedisServer; 2],
    master_name: String,
}

struct SentinelProcess {
    child: Child,
    port: u16,
    /// The TLS port, when the sentinels serve TLS too.
    tls_port: Option<u16>,
    dir: tempfile::TempDir,
    /// The sentinels' `requirepass`, if any.
    password: Option<String>,
}

/// How the sentinels of a [`SentinelGroup`] are secured.
#[derive(Debug, Clone, Default)]
pub struct SentinelSecurity {
    /// `requirepass` of every sentinel (and `sentinel sentinel-pass` between them).
    pub password: Option<String>,
    /// A TLS port too, presenting this certificate (CA-signed) to clients; the sentinels keep
    /// their plain port between themselves.
    pub tls: Option<SentinelTls>,
}

/// The certificate and CA of TLS sentinels.
#[derive(Debug, Clone)]
pub struct SentinelTls {
    pub cert: crate::tls_pki::CertFiles,
    pub ca: std::path::PathBuf,
}

impl Drop for SentinelProcess {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log =
                std::fs::read_to_string(self.dir.path().join("sentinel.log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(15).collect();
            eprintln!("--- sentinel :{} log tail ---", self.port);
            for line in tail.iter().rev() {
                eprintln!("{line}");
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl SentinelGroup {
    /// Starts the primary, its replica and three sentinels monitoring them as `master_name`,
    /// and waits until every sentinel knows the replica and the two other sentinels (before
    /// that, a failover could not reach its quorum).
    pub fn start(master_name: &str) -> Self {
        Self::start_secured(master_name, &SentinelSecurity::default())
    }

    /// Like [`SentinelGroup::start`], with sentinels secured by `security`.
    pub fn start_with(master_name: &str, security: SentinelSecurity) -> Self {
        Self::start_secured(master_name, &security)
    }

    fn start_secured(master_name: &str, security: &SentinelSecurity) -> Self {
        // DEBUG SLEEP for the tail-loss failover.
        let data_node = || {
            RedisServer::builder()
                .tcp()
                .args(&["--enable-debug-command", "local"])
        };
        let primary = data_node().start();
        let replica = data_node().replica_of(&primary).start();
        replica.wait_for_replication_link();
        let primary_port = primary.port().expect("tcp");
        let sentinels = (0..3)
            .map(|_| SentinelProcess::start(master_name, primary_port, security))
            .collect();
        let group = Self {
            sentinels,
            servers: [primary, replica],
            master_name: master_name.to_owned(),
        };
        wait_until(
            DISCOVERY_TIMEOUT,
            "sentinels know each other and the replica",
            || {
                group.sentinels.iter().all(|s| {
                    let info = s.master_info(master_name);
                    info.get("num-other-sentinels").map(String::as_str) == Some("2")
                        && info.get("num-slaves").map(String::as_str) == Some("1")
                })
            },
        );
        group
    }

    pub fn master_name(&self) -> &str {
        &self.master_name
    }

    /// `127.0.0.1:<port>` of each sentinel.
    pub fn sentinel_addresses(&self) -> Vec<String> {
        self.sentinels
            .iter()
            .map(|s| format!("127.0.0.1:{}", s.port))
            .collect()
    }

    /// `rediss://127.0.0.1:<tls port>` of each sentinel (TLS groups only).
    pub fn sentinel_tls_addresses(&self) -> Vec<String> {
        self.sentinels
            .iter()
            .map(|s| format!("rediss://127.0.0.1:{}", s.tls_port.expect("a TLS group")))
            .collect()
    }

    /// The port of the primary the first answering sentinel names.
    pub fn primary_port(&self) -> u16 {
        self.sentinels
            .iter()
            .find_map(|s| s.master_port(&self.master_name))
            .expect("no sentinel names a primary")
    }

    /// The data node listening on `port`.
    pub fn server_on(&mut self, port: u16) -> &mut RedisServer {
        self.servers
            .iter_mut()
            .find(|s| s.port() == Some(port))
            .unwrap_or_else(|| panic!("no data node on port {port}"))
    }

    /// Kills the primary with SIGKILL, once the replica has everything it wrote (a write lost
    /// in the failover is the module's concern, not these tests'), and waits until every
    /// sentinel names the other node and that node reports `ROLE master`. Returns the new
    /// primary's port and how long it took from the kill.
    pub fn kill_primary_and_wait_for_promotion(&mut self) -> (u16, Duration) {
        let old = self.primary_port();
        let new = self
            .servers
            .iter()
            .filter_map(RedisServer::port)
            .find(|&p| p != old)
            .expect("a second data node");
        let [a, b] = &self.servers;
        let (primary, replica) = if a.port() == Some(old) {
            (a, b)
        } else {
            (b, a)
        };
        wait_for_replica(primary, replica);
        let started = Instant::now();
        self.server_on(old).crash();
        self.wait_for_promotion(new);
        (new, started.elapsed())
    }

    /// The tail-loss failover ([`crash_with_tail_loss`]) of the primary: the replica stops
    /// reading, the primary acknowledges whatever `write` writes during `window` alone and is
    /// killed; then the sentinels promote the replica, which lacks those writes. Returns, as
    /// [`SentinelGroup::kill_primary_and_wait_for_promotion`] does, the new primary's port and
    /// how long the promotion took from the kill. `write` gets a connection to the primary.
    pub fn tail_loss_failover(
        &mut self,
        window: Duration,
        write: impl FnMut(&mut redis::Connection),
    ) -> (u16, Duration) {
        let old = self.primary_port();
        let new = self
            .servers
            .iter()
            .filter_map(RedisServer::port)
            .find(|&p| p != old)
            .expect("a second data node");
        let replica = self.server_on(new).connection();
        crash_with_tail_loss(self.server_on(old), replica, window, write);
        let killed = Instant::now();
        self.wait_for_promotion(new);
        (new, killed.elapsed())
    }

    /// Waits until every sentinel names the node on `new` as the primary and that node reports
    /// `ROLE master`.
    fn wait_for_promotion(&mut self, new: u16) {
        wait_until(FAILOVER_TIMEOUT, "sentinels promote the replica", || {
            self.sentinels
                .iter()
                .all(|s| s.master_port(&self.master_name) == Some(new))
        });
        let promoted = self.server_on(new);
        let mut con = promoted.connection();
        wait_until(
            FAILOVER_TIMEOUT,
            "the promoted replica reports ROLE master",
            || {
                matches!(
                    redis::cmd("ROLE").query::<Value>(&mut con),
                    Ok(Value::Array(items))
                        if matches!(items.first(), Some(Value::BulkString(r)) if r == b"master")
                )
            },
        );
    }
}

/// Waits until `replica` has applied everything `primary` wrote (equal replication offsets).
pub fn wait_for_replica(primary: &RedisServer, replica: &RedisServer) {
    let (mut primary, mut replica) = (primary.connection(), replica.connection());
    let offset = |con: &mut redis::Connection| {
        info_section(con, "replication")
            .get("master_repl_offset")
            .cloned()
    };
    wait_until(Duration::from_secs(10), "the replica caught up", || {
        offset(&mut primary) == offset(&mut replica)
    });
}

impl SentinelProcess {
    fn start(master_name: &str, primary_port: u16, security: &SentinelSecurity) -> Self {
        let password = security.password.as_deref();
        let mut dir = tempfile::Builder::new()
            .prefix("gyre-sentinel-")
            .tempdir()
            .expect("create temp dir");
        // A port taken between free_port() and the bind makes the sentinel exit: retry.
        for _ in 0..5 {
            let port = free_port();
            let conf = dir.path().join("sentinel.conf");
            let mut secured = match password {
                Some(p) => format!("requirepass {p}\nsentinel sentinel-pass {p}\n"),
                None => String::new(),
            };
            let tls_port = security.tls.as_ref().map(|tls| {
                let tls_port = free_port();
                secured.push_str(&format!(
                    "tls-port {tls_port}\ntls-cert-file {}\ntls-key-file {}\n\
                     tls-ca-cert-file {}\ntls-auth-clients no\n",
                    tls.cert.cert.display(),
                    tls.cert.key.display(),
                    tls.ca.display()
                ));
                tls_port
            });
            std::fs::write(
                &conf,
                secured
                    + &format!(
                        "port {port}\nbind 127.0.0.1\ndir {dir}\nlogfile {dir}/sentinel.log\n\
                     sentinel monitor {master_name} 127.0.0.1 {primary_port} 2\n\
                     sentinel down-after-milliseconds {master_name} 1000\n\
                     sentinel failover-timeout {master_name} 5000\n\
                     sentinel parallel-syncs {master_name} 1\n",
                        dir = dir.path().display()
                    ),
            )
            .expect("write sentinel.conf");
            let child = Command::new("redis-server")
                .arg(&conf)
                .arg("--sentinel")
                .current_dir(dir.path())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn redis-server --sentinel");
            let mut sentinel = SentinelProcess {
                child,
                port,
                tls_port,
                dir,
                password: password.map(str::to_owned),
            };
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                if let Ok(Some(_)) = sentinel.child.try_wait() {
                    break; // Exited: probably the port; try another.
                }
                if sentinel.ping() {
                    return sentinel;
                }
                if Instant::now() > deadline {
                    panic!("sentinel on port {port} did not answer PING");
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            dir = sentinel.take_dir();
        }
        panic!("no sentinel could start");
    }

    /// Ends this (exited) process's ownership of its directory, to reuse it.
    fn take_dir(mut self) -> tempfile::TempDir {
        let placeholder = tempfile::tempdir().expect("temp dir");
        let _ = self.child.wait();
        std::mem::replace(&mut self.dir, placeholder)
    }

    fn connection(&self) -> Option<redis::Connection> {
        let auth = self
            .password
            .as_ref()
            .map(|p| format!(":{p}@"))
            .unwrap_or_default();
        let client = redis::Client::open(format!("redis://{auth}127.0.0.1:{}", self.port)).ok()?;
        let con = client
            .get_connection_with_timeout(Duration::from_secs(1))
            .ok()?;
        con.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        Some(con)
    }

    fn ping(&self) -> bool {
        self.connection()
            .is_some_and(|mut c| redis::cmd("PING").query::<String>(&mut c).is_ok())
    }

    /// `SENTINEL MASTER <name>` as field → value.
    fn master_info(&self, name: &str) -> std::collections::HashMap<String, String> {
        let Some(mut con) = self.connection() else {
            return Default::default();
        };
        let fields: Vec<String> = redis::cmd("SENTINEL")
            .arg("MASTER")
            .arg(name)
            .query(&mut con)
            .unwrap_or_default();
        fields
            .chunks(2)
            .filter_map(|pair| match pair {
                [k, v] => Some((k.clone(), v.clone())),
                _ => None,
            })
            .collect()
    }

    /// The primary's port per `SENTINEL get-master-addr-by-name`.
    fn master_port(&self, name: &str) -> Option<u16> {
        let mut con = self.connection()?;
        let (_, port): (String, u16) = redis::cmd("SENTINEL")
            .arg("get-master-addr-by-name")
            .arg(name)
            .query(&mut con)
            .ok()?;
        Some(port)
    }
}
