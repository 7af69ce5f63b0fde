//! The cost of the backend hooks (`scripts/bench-hooks.sh`).
//!
//! - `gyre-bench hook-backend`: a backend that answers at once, over HTTP (hyper) and GRPC
//!   (tonic): connect → user `bench`, rpc → `{"ok":true}`; the other events allow.
//! - `gyre-bench hooks`: against a running gyre, (1) connects per second: `--concurrency`
//!   workers open a WebSocket (with a cookie, or a token), send connect, wait for the reply
//!   and close, for `--duration`; gyre's CPU per connect from `/proc/<pid>/stat`; (2) RPC round
//!   trips on one connection: `--rpc-count` calls of `--rpc-method` and as many of the built-in
//!   `rpc.ping` (answered by gyre itself): the difference is the proxy hop.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use gyre_proto::proxy as wire;
use serde::Serialize;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::stats::{self, Latency};

mod generated {
    #![allow(clippy::all, missing_docs)]
    include!(concat!(env!("OUT_DIR"), "/centrifugal.centrifugo.proxy.rs"));
}

use generated::centrifugo_proxy_server::{CentrifugoProxy, CentrifugoProxyServer};

#[derive(clap::Args)]
pub struct BackendArgs {
    /// Port of the HTTP backend (JSON POST on any path; the path names the event).
    #[arg(long, default_value_t = 3100)]
    http_port: u16,
    /// Port of the GRPC backend.
    #[arg(long, default_value_t = 3101)]
    grpc_port: u16,
}

#[derive(clap::Args)]
pub struct HooksArgs {
    /// gyre's WebSocket URL.
    #[arg(long, default_value = "ws://127.0.0.1:8000/connection/websocket")]
    url: String,
    /// gyre's process id (for CPU per connect).
    #[arg(long)]
    pid: u32,
    /// `cookie` (connect without token: the connect proxy) or `token` (HS256 JWT).
    #[arg(long, default_value = "cookie")]
    auth: String,
    /// HMAC secret for `--auth token`.
    #[arg(long, default_value = "bench-secret")]
    secret: String,
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Seconds of connecting.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// RPC calls to time (0: none).
    #[arg(long, default_value_t = 2000)]
    rpc_count: usize,
    #[arg(long, default_value = "bench")]
    rpc_method: String,
    /// A label for the result.
    #[arg(long, default_value = "")]
    label: String,
}

#[derive(Serialize)]
struct HooksResult {
    label: String,
    auth: String,
    concurrency: usize,
    connects: u64,
    failed: u64,
    connects_per_s: f64,
    /// gyre's CPU (user + system) per connect, microseconds.
    cpu_us_per_connect: f64,
    connect_latency: Latency,
    rpc_proxied: Latency,
    rpc_ping: Latency,
}

pub fn backend(args: BackendArgs) -> Result<(), Box<dyn std::error::Error>> {
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
        let http = tokio::net::TcpListener::bind(("127.0.0.1", args.http_port))
            .await
            .map_err(|e| format!("bind HTTP: {e}"))?;
        let grpc = tokio::net::TcpListener::bind(("127.0.0.1", args.grpc_port))
            .await
            .map_err(|e| format!("bind GRPC: {e}"))?;
        eprintln!(
            "hook backend: http://127.0.0.1:{} grpc://127.0.0.1:{}",
            args.http_port, args.grpc_port
        );
        let grpc_server = CentrifugoProxyServer::new(AtOnce);
        tokio::spawn(serve(grpc, move || {
            hyper_util::service::TowerToHyperService::new(grpc_server.clone())
        }));
        serve(http, || hyper::service::service_fn(http_answer)).await;
        Ok::<(), String>(())
    })?;
    Ok(())
}

/// Accepts connections and serves each with the service `make` builds (HTTP/1.1 or HTTP/2).
async fn serve<S, B>(listener: tokio::net::TcpListener, make: impl Fn() -> S)
where
    S: hyper::service::Service<
            hyper::Request<hyper::body::Incoming>,
            Response = hyper::Response<B>,
        > + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let service = make();
        tokio::spawn(async move {
            let builder =
                hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
            let _ = builder
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn http_answer(
    request: hyper::Request<hyper::body::Incoming>,
) -> Result<hyper::Response<http_body_util::Full<bytes::Bytes>>, std::convert::Infallible> {
    use http_body_util::BodyExt;
    let path = request.uri().path().to_owned();
    let _ = request.into_body().collect().await;
    let body: &'static [u8] = if path.ends_with("connect") {
        br#"{"result":{"user":"bench"}}"#
    } else if path.ends_with("rpc") {
        br#"{"result":{"data":{"ok":true}}}"#
    } else {
        br#"{"result":{}}"#
    };
    Ok(hyper::Response::builder()
        .header("Content-Type", "application/json")
        .body(http_body_util::Full::new(bytes::Bytes::from_static(body)))
        .expect("a static response"))
}

/// The GRPC backend: every call answered at once.
#[derive(Clone, Copy)]
struct AtOnce;

type Answer<T> = Result<tonic::Response<T>, tonic::Status>;

#[tonic::async_trait]
impl CentrifugoProxy for AtOnce {
    async fn connect(
        &self,
        _: tonic::Request<wire::ConnectRequest>,
    ) -> Answer<wire::ConnectResponse> {
        Ok(tonic::Response::new(wire::ConnectResponse {
            result: Some(wire::ConnectResult {
                user: "bench".into(),
                ..Default::default()
            }),
            ..Default::default()
        }))
    }
    async fn refresh(
        &self,
        _: tonic::Request<wire::RefreshRequest>,
    ) -> Answer<wire::RefreshResponse> {
        Ok(tonic::Response::new(wire::RefreshResponse::default()))
    }
    async fn subscribe(
        &self,
        _: tonic::Request<wire::SubscribeRequest>,
    ) -> Answer<wire::SubscribeResponse> {
        Ok(tonic::Response::new(wire::SubscribeResponse {
            result: Some(wire::SubscribeResult::default()),
            ..Default::default()
        }))
    }
    async fn publish(
        &self,
        _: tonic::Request<wire::PublishRequest>,
    ) -> Answer<wire::PublishResponse> {
        Ok(tonic::Response::new(wire::PublishResponse {
            result: Some(wire::PublishResult::default()),
            ..Default::default()
        }))
    }
    async fn rpc(&self, _: tonic::Request<wire::RpcRequest>) -> Answer<wire::RpcResponse> {
        Ok(tonic::Response::new(wire::RpcResponse {
            result: Some(wire::RpcResult {
                data: bytes::Bytes::from_static(br#"{"ok":true}"#),
                ..Default::default()
            }),
            ..Default::default()
        }))
    }
    async fn sub_refresh(
        &self,
        _: tonic::Request<wire::SubRefreshRequest>,
    ) -> Answer<wire::SubRefreshResponse> {
        Ok(tonic::Response::new(wire::SubRefreshResponse::default()))
    }
}

pub fn run(args: HooksArgs) -> Result<(), Box<dyn std::error::Error>> {
    let runtime = tokio::runtime::Runtime::new()?;
    let result = runtime.block_on(measure(args))?;
    println!("{}", serde_json::to_string(&result)?);
    Ok(())
}

/// The connect command of `--auth`.
fn connect_frame(args: &HooksArgs) -> String {
    if args.auth == "token" {
        let token = jsonwebtoken::encode(
            &jsonwebtoken::Header::default(),
            &serde_json::json!({"sub": "bench"}),
            &jsonwebtoken::EncodingKey::from_secret(args.secret.as_bytes()).expect("an HMAC key"),
        )
        .expect("HS256 signs");
        serde_json::json!({"id": 1, "connect": {"token": token}}).to_string()
    } else {
        r#"{"id":1,"connect":{}}"#.to_owned()
    }
}

type Socket = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

/// A WebSocket to `url` (`ws://ip:port/path`) whose upgrade carries a session cookie.
async fn open(url: &str) -> Result<Socket, String> {
    let mut request = url.into_client_request().map_err(|e| e.to_string())?;
    request
        .headers_mut()
        .insert("Cookie", "session=s-bench".parse().expect("a header value"));
    let authority = request
        .uri()
        .authority()
        .map(|a| a.as_str().to_owned())
        .ok_or("no host in the URL")?;
    let tcp = tokio::net::TcpStream::connect(authority)
        .await
        .map_err(|e| e.to_string())?;
    let _ = tcp.set_nodelay(true);
    let (socket, _) = tokio_tungstenite::client_async(request, tcp)
        .await
        .map_err(|e| e.to_string())?;
    Ok(socket)
}

/// Sends `frame` and waits for the reply with `id` (skipping pings and pushes).
async fn round_trip(
    socket: &mut Socket,
    frame: &str,
    id: u32,
) -> Result<serde_json::Value, String> {
    socket
        .send(Message::text(frame.to_owned()))
        .await
        .map_err(|e| e.to_string())?;
    while let Some(message) = socket.next().await {
        let Message::Text(text) = message.map_err(|e| e.to_string())? else {
            continue;
        };
        for line in text.lines() {
            let reply: serde_json::Value = serde_json::from_str(line).map_err(|e| e.to_string())?;
            if reply["id"] == id {
                return Ok(reply);
            }
        }
    }
    Err("connection closed".into())
}

async fn measure(args: HooksArgs) -> Result<HooksResult, String> {
    let frame = connect_frame(&args);
    let deadline = Instant::now() + Duration::from_secs(args.duration);
    let cpu_before = stats::sample(&[args.pid]).cpu_s;
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..args.concurrency {
        let url = args.url.clone();
        let frame = frame.clone();
        workers.push(tokio::spawn(async move {
            let mut histogram = stats::new_histogram();
            let (mut ok, mut failed) = (0u64, 0u64);
            while Instant::now() < deadline {
                let begun = Instant::now();
                let outcome = async {
                    let mut socket = open(&url).await?;
                    let reply = round_trip(&mut socket, &frame, 1).await?;
                    let _ = socket.close(None).await;
                    if reply.get("error").is_some() {
                        return Err(reply.to_string());
                    }
                    Ok::<_, String>(())
                }
                .await;
                match outcome {
                    Ok(()) => {
                        ok += 1;
                        stats::record(&mut histogram, begun.elapsed().as_micros() as u64);
                    }
                    Err(error) => {
                        failed += 1;
                        if failed < 3 {
                            eprintln!("connect failed: {error}");
                        }
                    }
                }
            }
            (ok, failed, histogram)
        }));
    }
    let mut histogram = stats::new_histogram();
    let (mut connects, mut failed) = (0, 0);
    for worker in workers {
        let (ok, bad, h) = worker.await.map_err(|e| e.to_string())?;
        connects += ok;
        failed += bad;
        histogram.add(&h).map_err(|e| e.to_string())?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    // Closing connections costs gyre too: let it finish before reading its CPU.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let cpu = stats::sample(&[args.pid]).cpu_s - cpu_before;

    let (mut proxied, mut ping) = (stats::new_histogram(), stats::new_histogram());
    if args.rpc_count > 0 {
        let mut socket = open(&args.url).await?;
        round_trip(&mut socket, &frame, 1).await?;
        let mut id = 1;
        for (method, histogram) in [
            (args.rpc_method.as_str(), &mut proxied),
            ("ping", &mut ping),
        ] {
            for _ in 0..args.rpc_count {
                id += 1;
                let call = serde_json::json!({"id": id, "rpc": {"method": method}}).to_string();
                let begun = Instant::now();
                let reply = round_trip(&mut socket, &call, id).await?;
                if reply.get("error").is_some() {
                    return Err(format!("rpc {method}: {reply}"));
                }
                stats::record(histogram, begun.elapsed().as_micros() as u64);
            }
        }
    }
    Ok(HooksResult {
        label: args.label,
        auth: args.auth,
        concurrency: args.concurrency,
        connects,
        failed,
        connects_per_s: (connects as f64 / elapsed * 10.0).round() / 10.0,
        cpu_us_per_connect: if connects > 0 {
            (cpu * 1e6 / connects as f64 * 10.0).round() / 10.0
        } else {
            0.0
        },
        connect_latency: Latency::of(&histogram),
        rpc_proxied: Latency::of(&proxied),
        rpc_ping: Latency::of(&ping),
    })
}
