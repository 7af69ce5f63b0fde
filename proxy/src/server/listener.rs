//! The client listener: binding with a deep accept queue, accepting with a backoff when the
//! process runs out of descriptors, and the open-file limit that decides when that happens.

use std::io;
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};

/// Pending connections the kernel may queue before `accept`; it caps this at
/// `net.core.somaxconn`. tokio's default (1024) overflows when thousands of clients reconnect at
/// once (a deploy, a network blip): dropped SYNs are retried only after the kernel's 1 s SYN
/// timeout, which was the whole tail of a measured 10,000-client reconnect storm.
const LISTEN_BACKLOG: u32 = 65_535;

/// Binds the client listener on `address` (`host:port`) with a deep accept queue.
pub async fn listen(address: &str) -> io::Result<TcpListener> {
    let mut last_error = None;
    for addr in tokio::net::lookup_host(address).await? {
        let socket = if addr.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        socket.set_reuseaddr(true)?;
        match socket
            .bind(addr)
            .and_then(|()| socket.listen(LISTEN_BACKLOG))
        {
            Ok(listener) => return Ok(listener),
            Err(error) => last_error = Some(error),
        }
    }
    Err(last_error
        .unwrap_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no address to listen on")))
}

/// The open-file limit after raising it: the soft limit goes up to the hard one, since every
/// client connection is a descriptor and distributions start processes at 1,024.
#[derive(Debug, Clone, Copy)]
pub struct OpenFiles {
    pub before: u64,
    pub now: u64,
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit. On failure (or where there is no such
/// limit) the current limit stays and is returned as both values.
pub fn raise_open_files_limit() -> OpenFiles {
    let before = current_open_files_limit();
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(now) => OpenFiles { before, now },
        Err(error) => {
            tracing::warn!(%error, "cannot raise the open-file limit");
            OpenFiles {
                before,
                now: before,
            }
        }
    }
}

/// The soft open-file limit now (`u64::MAX` when unlimited or unknown).
fn current_open_files_limit() -> u64 {
    rlimit::getrlimit(rlimit::Resource::NOFILE)
        .map(|(soft, _hard)| soft)
        .unwrap_or(u64::MAX)
}

/// First and longest pause after a failed `accept`.
const BACKOFF_MIN: Duration = Duration::from_millis(5);
const BACKOFF_MAX: Duration = Duration::from_secs(1);
/// At most one warning about failing accepts per this interval.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// Accepts connections; when accepting fails for lack of resources (descriptors, memory) it
/// waits, doubling the wait up to [`BACKOFF_MAX`] while the failures go on, and says so in one
/// warning per [`LOG_EVERY`] with the count, instead of a line per attempt.
pub struct Acceptor {
    listener: TcpListener,
    backoff: Duration,
    failures: u64,
    last_warning: Option<Instant>,
}

impl Acceptor {
    pub fn new(listener: TcpListener) -> Self {
        Self {
            listener,
            backoff: BACKOFF_MIN,
            failures: 0,
            last_warning: None,
        }
    }

    /// The next connection (and its peer's address).
    pub async fn accept(&mut self) -> (TcpStream, std::net::SocketAddr) {
        loop {
            match self.listener.accept().await {
                Ok(accepted) => {
                    if self.failures > 0 {
                        tracing::info!(
                            failures = self.failures,
                            "accepting connections again after failures"
                        );
                    }
                    self.backoff = BACKOFF_MIN;
                    self.failures = 0;
                    self.last_warning = None;
                    return accepted;
                }
                // The client gave up before we accepted it: nothing is wrong here.
                Err(error) if is_per_connection(&error) => continue,
                Err(error) => {
                    self.failures += 1;
                    let due = self.last_warning.is_none_or(|at| at.elapsed() >= LOG_EVERY);
                    if due {
                        tracing::warn!(
                            %error,
                            failures = self.failures,
                            retry_in = ?self.backoff,
                            "accept failed (out of descriptors? raise the open-file limit or lower \
                             http_server.max_unauthenticated_connections)"
                        );
                        self.last_warning = Some(Instant::now());
                    }
                    tokio::time::sleep(self.backoff).await;
                    self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
                }
            }
        }
    }
}

fn is_per_connection(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
    )
}

/// What an over-the-cap connection is told before it is closed, without reading its request:
/// a client that reads it backs off (`Retry-After`) instead of retrying at once.
const REFUSAL: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
Retry-After: 1\r\n\
Connection: close\r\n\
Content-Length: 91\r\n\
\r\n\
too many connections waiting to authenticate (http_server.max_unauthenticated_connections)\n";

/// Answers 503 if the socket takes it at once, and closes the connection.
pub fn refuse(stream: TcpStream) {
    let _ = stream.try_write(REFUSAL);
    metrics::counter!(crate::metrics::HTTP_CONNECTIONS_REFUSED).increment(1);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_refusal_is_well_formed() {
        let text = std::str::from_utf8(REFUSAL).expect("utf-8");
        let (head, body) = text.split_once("\r\n\r\n").expect("head and body");
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .and_then(|v| v.parse().ok())
            .expect("length");
        assert_eq!(length, body.len());
    }

    #[test]
    fn the_soft_limit_is_raised_to_the_hard_one() {
        let limits = raise_open_files_limit();
        let (soft, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE).expect("getrlimit");
        assert_eq!(limits.now, soft);
        assert!(soft == hard || hard > 1 << 20, "soft {soft} hard {hard}");
        assert!(limits.now >= limits.before);
    }
}
