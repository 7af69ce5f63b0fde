//! A TCP forwarder standing in for HAProxy in front of a Redis primary: it listens on a free
//! port of 127.0.0.1 and forwards each connection to the current target port. Switching the
//! target affects new connections only; existing ones keep their old upstream (as HAProxy does
//! without `on-marked-down shutdown-sessions`) until that end closes, or until
//! [`TcpForwarder::close_all`]. Plain std threads: two per forwarded connection.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

pub struct TcpForwarder {
    port: u16,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

struct Shared {
    target: AtomicU16,
    stopped: AtomicBool,
    /// Both sockets of every forwarded connection, to close them all on demand.
    connections: Mutex<Vec<(TcpStream, TcpStream)>>,
}

impl TcpForwarder {
    /// Starts forwarding to `127.0.0.1:<target>`.
    pub fn start(target: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the forwarder");
        let port = listener.local_addr().expect("forwarder address").port();
        let shared = Arc::new(Shared {
            target: AtomicU16::new(target),
            stopped: AtomicBool::new(false),
            connections: Mutex::new(Vec::new()),
        });
        let acceptor = {
            let shared = Arc::clone(&shared);
            std::thread::spawn(move || accept(listener, shared))
        };
        Self {
            port,
            shared,
            acceptor: Some(acceptor),
        }
    }

    /// The port clients connect to.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// New connections go to `127.0.0.1:<target>` from now on.
    pub fn switch_to(&self, target: u16) {
        self.shared.target.store(target, Ordering::SeqCst);
    }

    /// Closes every forwarded connection (clients see their connection end).
    pub fn close_all(&self) {
        for (client, upstream) in self.shared.connections.lock().unwrap().drain(..) {
            let _ = client.shutdown(Shutdown::Both);
            let _ = upstream.shutdown(Shutdown::Both);
        }
    }
}

impl Drop for TcpForwarder {
    fn drop(&mut self) {
        self.shared.stopped.store(true, Ordering::SeqCst);
        // Wakes the blocking accept.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
        self.close_all();
    }
}

fn accept(listener: TcpListener, shared: Arc<Shared>) {
    for client in listener.incoming() {
        if shared.stopped.load(Ordering::SeqCst) {
            return;
        }
        let Ok(client) = client else { continue };
        let target = shared.target.load(Ordering::SeqCst);
        // An unreachable target closes the client's connection at once, as a proxy does.
        let Ok(upstream) =
            TcpStream::connect_timeout(&([127, 0, 0, 1], target).into(), Duration::from_secs(1))
        else {
            continue;
        };
        let _ = client.set_nodelay(true);
        let _ = upstream.set_nodelay(true);
        let (Ok(client2), Ok(upstream2)) = (client.try_clone(), upstream.try_clone()) else {
            continue;
        };
        if let (Ok(c), Ok(u)) = (client.try_clone(), upstream.try_clone()) {
            shared.connections.lock().unwrap().push((c, u));
        }
        std::thread::spawn(move || pipe(client, upstream2));
        std::thread::spawn(move || pipe(upstream, client2));
    }
}

/// Copies `from` into `to` until `from` ends, then ends both.
fn pipe(mut from: TcpStream, mut to: TcpStream) {
    let mut buffer = [0u8; 16 * 1024];
    loop {
        match from.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buffer[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(Shutdown::Both);
    let _ = from.shutdown(Shutdown::Both);
}
