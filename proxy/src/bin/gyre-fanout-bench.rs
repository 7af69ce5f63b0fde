//! Fan-out benchmark: the hub delivering many channels' publications into real loopback TCP
//! sockets, on a tokio runtime with 1, then 2 (…) worker threads, with no load tool and no
//! WebSocket handshakes in the way.
//!
//! Every subscriber is a real hub subscription (positioned, JSON) whose outbox writes through
//! the WebSocket transport's own direct writer (`transport::websocket::direct_writer`); what a
//! socket does not take queues and a task per connection writes it, as gyre's connection task
//! does. The other ends of the sockets are drained by one reader thread that sweeps them with
//! non-blocking reads and sleeps between sweeps (no epoll: the sender pays no reader wake-ups,
//! and the reader costs little CPU). A publisher thread sends engine events the way the Redis
//! engine does and keeps `--window` rounds (one publication per channel each) in flight,
//! waiting on a marker queued behind each round, so the dispatch stays on its direct path
//! instead of falling behind into queued writes.
//!
//! ```sh
//! cargo run --release -p gyre-proxy --bin gyre-fanout-bench -- --threads 1,2 --rounds 3
//! ```
//!
//! (`scripts/bench-fanout.sh` runs it and keeps the report.)
//!
//! Reported per run: deliveries/s (from the first publication until the reader has every byte),
//! CPU of the runtime's worker threads (from `/proc/self/task/*/stat`) as % of a core and µs per
//! delivery, and the reader's CPU.

use std::collections::VecDeque;
use std::io::Read;
use std::net::TcpStream as StdStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::{Parser, ValueEnum};
use gyre_proto::codec::Wire;
use gyre_proto::protocol::{Push, Reply};
use gyre_proto::{Encoding, Publication};
use gyre_proxy::engine::EngineEvent;
use gyre_proxy::hub::{
    Fanout, Hub, HubOwner, Interest, LivePosition, Subscription, control_channel,
};
use gyre_proxy::queue::Outbox;
use tokio::net::TcpStream;

#[derive(Parser, Debug)]
#[command(about = "The hub's fan-out into loopback sockets, per number of worker threads")]
struct Args {
    /// Worker thread counts to measure, in this order in every round.
    #[arg(long, value_delimiter = ',', default_value = "1,2")]
    threads: Vec<usize>,
    #[arg(long, default_value_t = 64)]
    channels: usize,
    /// Subscribers per channel (one connection each).
    #[arg(long, default_value_t = 100)]
    subscribers: usize,
    /// Publications per channel in a measured run.
    #[arg(long, default_value_t = 200)]
    publications: usize,
    /// Bytes of publication data.
    #[arg(long, default_value_t = 128)]
    payload: usize,
    /// Rounds (one publication per channel each) in flight at most.
    #[arg(long, default_value_t = 4)]
    window: usize,
    /// Times every thread count is measured, alternating.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// How engine events reach the hub: the hub's fan-out lanes (as gyre's dispatcher hands
    /// them over), or one task delivering every channel's events, as gyre did before them.
    #[arg(long, value_enum, default_value = "lanes")]
    dispatch: Dispatch,
    /// With `--dispatch single`: write directly whatever the dispatcher's backlog (the path
    /// that one task serializes). Without it, as gyre's dispatcher did: queue for the
    /// connections' tasks once 16 events wait.
    #[arg(long)]
    always_direct: bool,
    /// The reader's pause between sweeps of all sockets.
    #[arg(long, default_value_t = 100)]
    sweep_ms: u64,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Dispatch {
    Single,
    Lanes,
}

/// Offsets start here so that every publication's JSON has the same length.
const BASE_OFFSET: u64 = 1_000_000;
/// Unmeasured rounds before a run.
const WARMUP_ROUNDS: usize = 20;
/// As gyre's dispatcher: past this many waiting events, queue for the connections' tasks.
const DIRECT_BACKLOG: usize = 16;

fn main() {
    let args = Args::parse();
    let connections = args.channels * args.subscribers;
    check_nofile(connections);
    println!(
        "fan-out: {} channels × {} subscribers = {connections} sockets, {} publications per \
         channel of {} B, window {} rounds, dispatch {:?}{}",
        args.channels,
        args.subscribers,
        args.publications,
        args.payload,
        args.window,
        args.dispatch,
        if args.always_direct {
            " (always direct)"
        } else {
            ""
        }
    );
    println!(
        "| round | worker threads | deliveries/s | worker CPU % (each) | worker CPU µs/delivery | reader CPU % | lost |"
    );
    println!("|---|---|---|---|---|---|---|");
    let mut results: Vec<(usize, Outcome)> = Vec::new();
    for round in 1..=args.rounds {
        for &threads in &args.threads {
            let outcome = run(&args, threads);
            println!(
                "| {round} | {threads} | {:.0} | {:.0} ({}) | {:.3} | {:.0} | {} |",
                outcome.deliveries_per_second(),
                outcome.worker_cpu_percent(),
                outcome.per_worker_percent(),
                outcome.worker_us_per_delivery(),
                outcome.reader_cpu_percent(),
                outcome.lost
            );
            results.push((threads, outcome));
        }
    }
    println!();
    println!("Medians:");
    println!();
    println!("| worker threads | deliveries/s | × first | worker CPU % | worker CPU µs/delivery |");
    println!("|---|---|---|---|---|");
    let mut first = None;
    for &threads in &args.threads {
        let of = |f: fn(&Outcome) -> f64| {
            median(
                results
                    .iter()
                    .filter(|(t, _)| *t == threads)
                    .map(|(_, o)| f(o)),
            )
        };
        let rate = of(Outcome::deliveries_per_second);
        let base = *first.get_or_insert(rate);
        println!(
            "| {threads} | {rate:.0} | {:.2}× | {:.0} | {:.3} |",
            rate / base,
            of(Outcome::worker_cpu_percent),
            of(Outcome::worker_us_per_delivery)
        );
    }
}

fn median(values: impl Iterator<Item = f64>) -> f64 {
    let mut values: Vec<f64> = values.collect();
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

fn check_nofile(connections: usize) {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    let soft = limits
        .lines()
        .find(|line| line.starts_with("Max open files"))
        .and_then(|line| line.split_whitespace().nth(3))
        .and_then(|n| n.parse::<usize>().ok());
    if let Some(soft) = soft
        && soft < 2 * connections + 100
    {
        eprintln!(
            "the open-file limit is {soft}; {connections} connections need {} (ulimit -n)",
            2 * connections + 100
        );
        std::process::exit(1);
    }
}

struct Outcome {
    deliveries: u64,
    elapsed: Duration,
    /// CPU of the runtime's worker threads and of the reader during the measured run.
    worker_cpu: Duration,
    /// Each worker's part of it, busiest first.
    workers: Vec<Duration>,
    reader_cpu: Duration,
    /// Bytes that never arrived, in deliveries.
    lost: u64,
}

impl Outcome {
    fn deliveries_per_second(&self) -> f64 {
        self.deliveries as f64 / self.elapsed.as_secs_f64()
    }
    fn worker_cpu_percent(&self) -> f64 {
        100.0 * self.worker_cpu.as_secs_f64() / self.elapsed.as_secs_f64()
    }
    fn worker_us_per_delivery(&self) -> f64 {
        self.worker_cpu.as_secs_f64() * 1e6 / self.deliveries as f64
    }
    /// Each worker's CPU as % of a core, e.g. "48/45".
    fn per_worker_percent(&self) -> String {
        let percents: Vec<String> = self
            .workers
            .iter()
            .map(|cpu| {
                format!(
                    "{:.0}",
                    100.0 * cpu.as_secs_f64() / self.elapsed.as_secs_f64()
                )
            })
            .collect();
        percents.join("/")
    }
    fn reader_cpu_percent(&self) -> f64 {
        100.0 * self.reader_cpu.as_secs_f64() / self.elapsed.as_secs_f64()
    }
}

/// What the publisher hands the dispatch: an engine event, or a marker answered once everything
/// before it was delivered.
enum Item {
    Event(EngineEvent),
    Marker(std::sync::mpsc::Sender<()>),
}

/// The dispatch under test, as the publisher thread sees it.
trait Dispatcher: Send + Sync {
    fn send(&self, item: Item);
}

/// gyre's dispatcher before fan-out lanes: one task delivers every channel's events.
struct SingleTask(tokio::sync::mpsc::UnboundedSender<Item>);

impl Dispatcher for SingleTask {
    fn send(&self, item: Item) {
        let _ = self.0.send(item);
    }
}

fn single_task(hub: Arc<Hub>, always_direct: bool) -> SingleTask {
    let (sender, mut events) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(item) = events.recv().await {
            match item {
                Item::Event(event) => {
                    let direct = always_direct || events.len() < DIRECT_BACKLOG;
                    hub.dispatch(event, direct);
                }
                Item::Marker(done) => {
                    let _ = done.send(());
                }
            }
        }
    });
    SingleTask(sender)
}

/// The hub's fan-out lanes, as gyre's dispatcher uses them.
struct Lanes(Fanout);

impl Dispatcher for Lanes {
    fn send(&self, item: Item) {
        match item {
            Item::Event(event) => self.0.dispatch(event),
            Item::Marker(done) => self.0.after_all(move || {
                let _ = done.send(());
            }),
        }
    }
}

fn channel_name(index: usize) -> String {
    format!("bench:channel-{index:04}")
}

/// The publication the publisher sends on every channel (JSON data of `payload` bytes).
fn publication(payload: usize, offset: u64) -> Publication {
    let mut data = vec![b'x'; payload.max(2)];
    data[0] = b'"';
    *data.last_mut().unwrap() = b'"';
    Publication {
        data: Bytes::from(data),
        offset,
        ..Default::default()
    }
}

/// Bytes on the wire for one delivery on `channel`: the WebSocket frame the direct writer sends.
fn frame_len(channel: &str, payload: usize) -> u64 {
    let reply = Reply {
        push: Some(Push {
            channel: channel.to_owned(),
            r#pub: Some(gyre_proxy::hub::client_publication(&publication(
                payload,
                BASE_OFFSET + 1,
            ))),
            ..Default::default()
        }),
        ..Default::default()
    };
    let len = gyre_proto::codec::encode_reply(Encoding::Json, &reply)
        .expect("a JSON push encodes")
        .len();
    (frame_head(len).len() + len) as u64
}

/// An unmasked, final text frame header for `len` payload bytes.
fn frame_head(len: usize) -> Vec<u8> {
    match len {
        0..=125 => vec![0x81, len as u8],
        126..=0xffff => {
            let mut head = vec![0x81, 126];
            head.extend_from_slice(&(len as u16).to_be_bytes());
            head
        }
        _ => {
            let mut head = vec![0x81, 127];
            head.extend_from_slice(&(len as u64).to_be_bytes());
            head
        }
    }
}

/// Writes what the outbox queued (framed bytes, then one frame per message), as the connection's
/// task does once a socket refused a direct write.
async fn drain(outbox: Arc<Outbox>, stream: Arc<TcpStream>) {
    while let Ok(writes) = outbox.next_writes(64).await {
        let mut buffer = Vec::new();
        for framed in &writes.framed {
            buffer.extend_from_slice(framed);
        }
        for message in &writes.messages {
            buffer.extend_from_slice(&frame_head(message.len()));
            buffer.extend_from_slice(message);
        }
        let mut rest = &buffer[..];
        while !rest.is_empty() {
            if stream.writable().await.is_err() {
                return;
            }
            match stream.try_write(rest) {
                Ok(n) => rest = &rest[n..],
                Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => return,
            }
        }
    }
}

/// CPU time of each of this process's threads named `name`, by thread id.
fn threads_cpu(name: &str) -> Vec<(String, Duration)> {
    let ticks_per_second = 100.0; // USER_HZ on Linux
    let mut threads = Vec::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return threads;
    };
    for task in tasks.flatten() {
        let path = task.path();
        let comm = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        if comm.trim_end() != name {
            continue;
        }
        let stat = std::fs::read_to_string(path.join("stat")).unwrap_or_default();
        // Fields after the command's closing parenthesis: state is field 3, utime 14, stime 15.
        let Some((_, fields)) = stat.rsplit_once(") ") else {
            continue;
        };
        let fields: Vec<&str> = fields.split_whitespace().collect();
        if let (Some(user), Some(system)) = (fields.get(11), fields.get(12)) {
            let ticks = user.parse::<u64>().unwrap_or(0) + system.parse::<u64>().unwrap_or(0);
            let id = task.file_name().to_string_lossy().into_owned();
            threads.push((id, Duration::from_secs_f64(ticks as f64 / ticks_per_second)));
        }
    }
    threads
}

/// CPU each thread used between two [`threads_cpu`] readings, busiest first.
fn cpu_since(before: &[(String, Duration)], after: &[(String, Duration)]) -> Vec<Duration> {
    let mut used: Vec<Duration> = after
        .iter()
        .map(|(id, now)| {
            let then = before
                .iter()
                .find(|(b, _)| b == id)
                .map_or(Duration::ZERO, |b| b.1);
            now.saturating_sub(then)
        })
        .collect();
    used.sort_by(|a, b| b.cmp(a));
    used
}

const WORKER: &str = "fanout-worker";
const READER: &str = "fanout-reader";

/// One measured run on a fresh runtime with `threads` workers and fresh sockets.
fn run(args: &Args, threads: usize) -> Outcome {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .thread_name(WORKER)
        .enable_all()
        .build()
        .expect("runtime");
    let hub = Arc::new(Hub::new());
    let (clients, controls) = runtime.block_on(subscribe_all(args, &hub));
    let dispatcher: Box<dyn Dispatcher> = runtime.block_on(async {
        match args.dispatch {
            Dispatch::Single => {
                Box::new(single_task(Arc::clone(&hub), args.always_direct)) as Box<dyn Dispatcher>
            }
            Dispatch::Lanes => {
                Box::new(Lanes(Fanout::spawn(Arc::clone(&hub) as Arc<dyn HubOwner>)))
            }
        }
    });

    let received = Arc::new(AtomicU64::new(0));
    let finishing = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let received = Arc::clone(&received);
        let finishing = Arc::clone(&finishing);
        let stop = Arc::clone(&stop);
        let sweep = Duration::from_millis(args.sweep_ms);
        std::thread::Builder::new()
            .name(READER.into())
            .spawn(move || read_all(clients, &received, &finishing, &stop, sweep))
            .expect("reader thread")
    };

    let frame = frame_len(&channel_name(0), args.payload);
    let per_round = (args.channels * args.subscribers) as u64;
    let mut offset = BASE_OFFSET;
    publish(args, &*dispatcher, &mut offset, WARMUP_ROUNDS);
    let warmup_bytes = WARMUP_ROUNDS as u64 * per_round * frame;

    let worker_before = threads_cpu(WORKER);
    let reader_before = threads_cpu(READER);
    let start = Instant::now();
    publish(args, &*dispatcher, &mut offset, args.publications);
    // Everything is dispatched; what was queued rather than written is still on its way. The
    // run ends when the reader has it all (it sweeps without pausing from now on).
    finishing.store(true, Ordering::Relaxed);
    let expected = warmup_bytes + args.publications as u64 * per_round * frame;
    let deadline = Instant::now() + Duration::from_secs(10);
    while received.load(Ordering::Relaxed) < expected && Instant::now() < deadline {
        std::thread::sleep(Duration::from_micros(200));
    }
    let elapsed = start.elapsed();
    let workers = cpu_since(&worker_before, &threads_cpu(WORKER));
    let reader_cpu = cpu_since(&reader_before, &threads_cpu(READER)).iter().sum();
    let got = received.load(Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    reader.join().expect("reader");
    drop(dispatcher);
    drop(controls);
    runtime.shutdown_timeout(Duration::from_secs(1));
    Outcome {
        deliveries: args.publications as u64 * per_round,
        elapsed,
        worker_cpu: workers.iter().sum(),
        workers,
        reader_cpu,
        lost: expected.saturating_sub(got) / frame,
    }
}

/// Publishes `rounds` rounds (one publication on every channel each), keeping at most
/// `--window` rounds undelivered, and waits for the last.
fn publish(args: &Args, dispatcher: &dyn Dispatcher, offset: &mut u64, rounds: usize) {
    let mut in_flight = VecDeque::new();
    for _ in 0..rounds {
        *offset += 1;
        for channel in 0..args.channels {
            dispatcher.send(Item::Event(EngineEvent::Publication {
                channel: channel_name(channel),
                publication: Box::new(publication(args.payload, *offset)),
                epoch: "e".into(),
            }));
        }
        let (done, delivered) = std::sync::mpsc::channel();
        dispatcher.send(Item::Marker(done));
        in_flight.push_back(delivered);
        if in_flight.len() >= args.window.max(1) {
            let _ = in_flight.pop_front().unwrap().recv();
        }
    }
    for delivered in in_flight {
        let _ = delivered.recv();
    }
}

/// Connects every subscriber: a loopback TCP connection whose server end the hub writes into
/// and whose client end the reader drains; returns the client ends and the sessions' control
/// receivers (kept: a positioned subscription reports gaps through them).
async fn subscribe_all(
    args: &Args,
    hub: &Arc<Hub>,
) -> (Vec<StdStream>, Vec<gyre_proxy::hub::ControlReceiver>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("listen");
    let address = listener.local_addr().expect("address");
    let mut clients = Vec::new();
    let mut controls = Vec::new();
    let mut id = 0;
    for channel in 0..args.channels {
        let name = channel_name(channel);
        for _ in 0..args.subscribers {
            id += 1;
            let client = StdStream::connect(address).expect("connect");
            client.set_nonblocking(true).expect("non-blocking");
            let (server, _) = listener.accept().await.expect("accept");
            server.set_nodelay(true).expect("nodelay");
            let server = Arc::new(server);
            let outbox = Arc::new(Outbox::new(1 << 20));
            outbox.set_direct(gyre_proxy::transport::websocket::direct_writer(
                Arc::clone(&server),
                Encoding::Json,
            ));
            tokio::spawn(drain(Arc::clone(&outbox), server));
            let (control, receiver) = control_channel();
            let subscription = Arc::new(Subscription::new(
                id,
                name.clone(),
                Wire::plain(Encoding::Json),
                Interest::default(),
                outbox,
                control,
            ));
            subscription.go_live(
                None,
                LivePosition {
                    positioned: true,
                    offset: BASE_OFFSET,
                    epoch: "e".into(),
                },
                Instant::now(),
            );
            hub.add(subscription);
            clients.push(client);
            controls.push(receiver);
        }
    }
    (clients, controls)
}

/// Sweeps the client ends with non-blocking reads until `stop`, counting bytes; pauses `sweep`
/// between sweeps until `finishing`.
fn read_all(
    mut clients: Vec<StdStream>,
    received: &AtomicU64,
    finishing: &AtomicBool,
    stop: &AtomicBool,
    sweep: Duration,
) {
    let mut buffer = vec![0u8; 1 << 16];
    while !stop.load(Ordering::Relaxed) {
        let mut total = 0u64;
        for client in &mut clients {
            loop {
                match client.read(&mut buffer) {
                    Ok(n) if n == buffer.len() => total += n as u64,
                    Ok(n) => {
                        total += n as u64;
                        break;
                    }
                    Err(_) => break,
                }
            }
        }
        received.fetch_add(total, Ordering::Relaxed);
        if !finishing.load(Ordering::Relaxed) {
            std::thread::sleep(sweep);
        }
    }
}
