//! `gyre-bench floor`: the physical limit of fanning a publication out over loopback TCP.
//!
//! A blocking writer thread holds the server ends of N loopback connections and writes the same
//! WebSocket frame (gyre's JSON push of the publication, unmasked, as a server sends it) to each
//! of them, K frames per `write()`, round after round. A reader thread drains the client ends. The
//! writer's own CPU time (getrusage RUSAGE_THREAD, user + system), divided by the frames written,
//! is the least a server can spend per delivery with one syscall per connection and batch: no
//! parsing, no routing, no queues, no wakeups.

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::time::Instant;

use serde::Serialize;

use crate::payload;
use crate::stats::thread_cpu_us;

#[derive(clap::Args, Debug)]
pub struct FloorArgs {
    /// Loopback connections to write to.
    #[arg(long, default_value_t = 5000)]
    pub connections: usize,
    /// Frames per write() call; a comma-separated list runs each in turn.
    #[arg(long, value_delimiter = ',', default_value = "1,4,16")]
    pub frames_per_write: Vec<usize>,
    /// Rounds (one write to every connection each) measured per frames-per-write value.
    #[arg(long, default_value_t = 40)]
    pub rounds: usize,
    /// Size of the JSON payload inside the push, in bytes.
    #[arg(long, default_value_t = 128)]
    pub payload_size: usize,
    /// Write the JSON result here instead of stdout.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

#[derive(Serialize)]
struct FloorRun {
    frames_per_write: usize,
    rounds: usize,
    frames: u64,
    writes: u64,
    write_syscalls: u64,
    user_us: u64,
    sys_us: u64,
    cpu_us_per_frame: f64,
    cpu_us_per_write: f64,
    wall_s: f64,
    frames_per_s: f64,
}

#[derive(Serialize)]
struct FloorResult {
    mode: &'static str,
    connections: usize,
    payload_bytes: usize,
    frame_bytes: usize,
    tcp_nodelay: bool,
    runs: Vec<FloorRun>,
}

/// The WebSocket text frame gyre sends for one publication on a JSON connection.
pub fn publication_frame(payload_size: usize) -> Vec<u8> {
    let data = payload::make(payload_size, payload::now_ns());
    let mut push = Vec::with_capacity(data.len() + 64);
    push.extend_from_slice(b"{\"push\":{\"channel\":\"bench:c0\",\"pub\":{\"data\":");
    push.extend_from_slice(&data);
    push.extend_from_slice(b",\"offset\":1}}}");
    ws_frame(&push)
}

/// An unmasked, final text frame (server to client).
pub fn ws_frame(body: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(body.len() + 10);
    f.push(0x81);
    match body.len() {
        n if n < 126 => f.push(n as u8),
        n if n <= 0xffff => {
            f.push(126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            f.push(127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    f.extend_from_slice(body);
    f
}

fn drain(clients: Vec<TcpStream>) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .expect("reader runtime");
    rt.block_on(async move {
        let mut tasks = Vec::with_capacity(clients.len());
        for c in clients {
            c.set_nonblocking(true).expect("nonblocking");
            let s = tokio::net::TcpStream::from_std(c).expect("register");
            tasks.push(tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                loop {
                    if s.readable().await.is_err() {
                        return;
                    }
                    loop {
                        match s.try_read(&mut buf) {
                            Ok(0) => return,
                            Ok(_) => continue,
                            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                            Err(_) => return,
                        }
                    }
                }
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
    });
}

pub fn run(args: FloorArgs) -> Result<(), Box<dyn std::error::Error>> {
    let frame = publication_frame(args.payload_size);
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let mut servers = Vec::with_capacity(args.connections);
    let mut clients = Vec::with_capacity(args.connections);
    for _ in 0..args.connections {
        clients.push(TcpStream::connect(addr)?);
        let (s, _) = listener.accept()?;
        s.set_nodelay(true)?;
        servers.push(s);
    }
    eprintln!(
        "floor: {} loopback connections, frame {} B",
        servers.len(),
        frame.len()
    );
    let reader = std::thread::spawn(move || drain(clients));

    let mut runs = Vec::new();
    for &k in &args.frames_per_write {
        let k = k.max(1);
        let buf: Vec<u8> = frame.repeat(k);
        let mut syscalls = 0u64;
        let round = |servers: &mut [TcpStream], syscalls: &mut u64| -> std::io::Result<()> {
            for s in servers.iter_mut() {
                let mut off = 0;
                while off < buf.len() {
                    off += s.write(&buf[off..])?;
                    *syscalls += 1;
                }
            }
            Ok(())
        };
        round(&mut servers, &mut syscalls)?; // warm-up
        syscalls = 0;
        let (u0, s0) = thread_cpu_us();
        let t0 = Instant::now();
        for _ in 0..args.rounds {
            round(&mut servers, &mut syscalls)?;
        }
        let wall = t0.elapsed().as_secs_f64();
        let (u1, s1) = thread_cpu_us();
        let writes = (servers.len() * args.rounds) as u64;
        let frames = writes * k as u64;
        let cpu = (u1 - u0 + s1 - s0) as f64;
        let run = FloorRun {
            frames_per_write: k,
            rounds: args.rounds,
            frames,
            writes,
            write_syscalls: syscalls,
            user_us: u1 - u0,
            sys_us: s1 - s0,
            cpu_us_per_frame: round3(cpu / frames.max(1) as f64),
            cpu_us_per_write: round3(cpu / writes.max(1) as f64),
            wall_s: round3(wall),
            frames_per_s: (frames as f64 / wall).round(),
        };
        eprintln!(
            "floor: {k} frame(s)/write: {:.3} µs CPU/frame, {:.3} µs/write, {:.0} frames/s",
            run.cpu_us_per_frame, run.cpu_us_per_write, run.frames_per_s
        );
        runs.push(run);
    }
    drop(servers);
    let _ = reader.join();
    let result = FloorResult {
        mode: "floor",
        connections: args.connections,
        payload_bytes: args.payload_size,
        frame_bytes: frame.len(),
        tcp_nodelay: true,
        runs,
    };
    crate::write_json(&result, args.out.as_deref())
}

pub fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_valid_websocket_headers() {
        let f = publication_frame(128);
        assert_eq!(f[0], 0x81);
        assert_eq!(f[1], 126);
        let len = u16::from_be_bytes([f[2], f[3]]) as usize;
        assert_eq!(len + 4, f.len());
        assert_eq!(payload::scan(&f, |_| ()), 1);
        assert_eq!(ws_frame(b"{}"), [0x81, 2, b'{', b'}']);
    }
}
