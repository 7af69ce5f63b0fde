//! `gyre`: the edge proxy. Parses flags, loads the configuration, sets up logging, wires the
//! engine, hub and server together and runs until SIGINT/SIGTERM.

#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use gyre_proxy::auth::Verifier;
use gyre_proxy::config::{self, Config, ConfigFile, EngineType, Format};
use gyre_proxy::engine::redis::RedisEngine;
use gyre_proxy::engine::{Engine, EventSender, memory::MemoryEngine};
use gyre_proxy::protocol::node::Node;
use gyre_proxy::protocol::session::history_options;

/// Real-time messaging edge: clients speaking Centrifugo's protocol over WebSocket, HTTP
/// streaming, SSE or SockJS, publications from Redis (libgyre.so), the HTTP API or other clients.
#[derive(Parser)]
#[command(name = "gyre", version)]
struct Cli {
    /// Configuration file (TOML, JSON or YAML, by extension: .toml, .json, .yaml, .yml). Every
    /// option can also be set with a GYRE_<KEY_PATH> environment variable, e.g.
    /// GYRE_HTTP_SERVER_PORT=8000, or Centrifugo's CENTRIFUGO_<KEY_PATH> (GYRE_ wins when both
    /// are set).
    #[arg(short, long, env = "GYRE_CONFIG", global = true)]
    config: Option<PathBuf>,
    /// http_server.address: address to listen on.
    #[arg(long, global = true)]
    address: Option<String>,
    /// http_server.port: port to listen on.
    #[arg(short, long, global = true)]
    port: Option<u16>,
    /// engine.type: memory (one node, no Redis) or redis.
    #[arg(long, global = true)]
    engine: Option<String>,
    /// engine.redis.address: Redis URL (redis://host:port, rediss://… for TLS).
    #[arg(long, global = true)]
    redis: Option<String>,
    /// log.level: error, warn, info, debug or trace.
    #[arg(long, global = true)]
    log_level: Option<String>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (the default).
    Run,
    /// Print a commented configuration file with every option at its default.
    Genconfig,
    /// Load and validate the configuration, print problems, and exit.
    Checkconfig,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Genconfig) => {
            print!("{}", config::genconfig());
            ExitCode::SUCCESS
        }
        Some(Command::Checkconfig) => match load_config(&cli).and_then(check_engine) {
            Ok(()) => {
                println!("configuration is valid");
                ExitCode::SUCCESS
            }
            Err(message) => {
                eprintln!("{message}");
                ExitCode::FAILURE
            }
        },
        Some(Command::Run) | None => {
            let config = match load_config(&cli) {
                Ok(config) => config,
                Err(message) => {
                    eprintln!("{message}");
                    return ExitCode::FAILURE;
                }
            };
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(error) => {
                    eprintln!("cannot start the runtime: {error}");
                    return ExitCode::FAILURE;
                }
            };
            match runtime.block_on(run(config)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(message) => {
                    tracing::error!("{message}");
                    eprintln!("gyre: {message}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// Defaults < file < CENTRIFUGO_*/GYRE_* environment < flags; then validation. Prints warnings
/// and, once, the CENTRIFUGO_* variables that were read.
fn load_config(cli: &Cli) -> Result<Config, String> {
    let text;
    let file = match &cli.config {
        Some(path) => {
            text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            let format = Format::from_path(path).map_err(|e| e.to_string())?;
            Some(ConfigFile {
                text: &text,
                format,
            })
        }
        None => None,
    };
    let mut overrides = Vec::new();
    let mut flag = |key: &str, value: Option<String>| {
        if let Some(value) = value {
            overrides.push((key.to_owned(), value));
        }
    };
    flag("http_server.address", cli.address.clone());
    flag("http_server.port", cli.port.map(|p| p.to_string()));
    flag("engine.type", cli.engine.clone());
    flag("engine.redis.address", cli.redis.clone());
    flag("log.level", cli.log_level.clone());
    let loaded = config::load(file, std::env::vars(), &overrides).map_err(|e| e.to_string())?;
    for warning in &loaded.warnings {
        eprintln!("warning: {warning}");
    }
    if !loaded.centrifugo_env.is_empty() {
        eprintln!(
            "gyre: read Centrifugo environment variables as GYRE_* aliases: {}",
            loaded.centrifugo_env.join(", ")
        );
    }
    Ok(loaded.config)
}

/// What `checkconfig` checks beyond the config itself: the PEM files and certificates of the
/// Redis engine, of the backend hooks and of the server's TLS, read and parsed as the start
/// would. Prints the start's warnings.
fn check_engine(config: Config) -> Result<(), String> {
    let mut problems = Vec::new();
    if config.engine.kind == EngineType::Redis {
        if let Err(e) = gyre_proxy::startup::redis_settings(&config) {
            problems.push(format!("engine.redis: {e}"));
        }
        for warning in gyre_proxy::startup::redis_warnings(&config) {
            eprintln!("warning: {warning}");
        }
    }
    if let Err(e) = gyre_proxy::server::tls_server_configs(&config) {
        problems.push(e);
    }
    for warning in gyre_proxy::server::tls_warnings(&config) {
        eprintln!("warning: {warning}");
    }
    if let Err(e) = gyre_proxy::startup::check_proxies(&config) {
        problems.push(format!("proxies: {e}"));
    }
    for warning in gyre_proxy::startup::proxy_warnings(&config) {
        eprintln!("warning: {warning}");
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n"))
    }
}

async fn run(config: Config) -> Result<(), String> {
    init_logging(&config);
    gyre_proxy::metrics::install();
    // Before the node: its cap on unauthenticated connections is a share of this limit.
    let open_files = gyre_proxy::server::raise_open_files_limit();
    let config = Arc::new(config);
    let verifier = Verifier::with_subscription(
        &config.client.token,
        &config.client.subscription_token_settings().clone(),
    )
    .map_err(|e| format!("token settings: {e}"))?;
    let (events, events_rx) = tokio::sync::mpsc::unbounded_channel();
    let engine = match config.engine.kind {
        EngineType::Memory => Engine::Memory(MemoryEngine::new(events)),
        EngineType::Redis => Engine::Redis(start_redis(&config, events).await?),
    };
    for warning in gyre_proxy::startup::proxy_warnings(&config) {
        tracing::warn!("{warning}");
    }
    let hooks = gyre_proxy::hooks::Hooks::new(&config).map_err(|e| format!("proxies: {e}"))?;
    let node = Arc::new(Node::new(Arc::clone(&config), engine, verifier, hooks));
    node.spawn_dispatcher(events_rx);
    node.spawn_announcer();
    let transports = gyre_proxy::transport::Transports::new(&config, open_files.now);

    // An empty address means every interface, as in Centrifugo.
    let bind = |host: &str, port: u16| {
        let host = if host.is_empty() { "0.0.0.0" } else { host };
        format!("{host}:{port}")
    };
    let server = &config.http_server;
    let address = bind(&server.address, server.port);
    let tls = gyre_proxy::server::tls_server_configs(&config)?;
    for warning in gyre_proxy::server::tls_warnings(&config) {
        tracing::warn!("{warning}");
    }
    let public = gyre_proxy::server::listen(&address)
        .await
        .map_err(|e| format!("cannot listen on {address}: {e}"))?;
    let internal = match server.internal_port {
        0 => None,
        port => {
            let internal_address = bind(&server.internal_address, port);
            let listener = gyre_proxy::server::listen(&internal_address)
                .await
                .map_err(|e| format!("cannot listen on {internal_address} (internal port): {e}"))?;
            tracing::info!(
                address = %internal_address,
                tls = tls.internal.is_some(),
                "internal port: /api, /metrics, /health{}",
                if config.admin.enabled { " and the admin UI" } else { "" },
            );
            Some(listener)
        }
    };
    tracing::info!(
        open_files = open_files.now,
        raised_from = open_files.before,
        max_unauthenticated_connections = transports.unauthenticated.max(),
        "open-file limit {} (each connection is one)",
        open_files.now,
    );
    let (ws, http) = if tls.public.is_some() {
        ("wss", "https")
    } else {
        ("ws", "http")
    };
    let mount = &server.handler_prefix;
    let websocket = match config.websocket.handler_prefix.as_str() {
        "" => "/connection/websocket",
        path => path,
    };
    tracing::info!(
        %address,
        engine = ?config.engine.kind,
        node = %node.name,
        "gyre {} ready: {ws}://{address}{mount}{websocket}, demo at {http}://{address}{mount}/",
        env!("CARGO_PKG_VERSION"),
    );
    let listeners = gyre_proxy::server::Listeners {
        public,
        internal,
        tls,
    };
    gyre_proxy::server::run(
        node,
        transports,
        listeners,
        shutdown_signal(),
        config.shutdown.timeout,
    )
    .await
    .map_err(|e| format!("cannot start the TLS bridge: {e}"))?;
    tracing::info!("stopped");
    Ok(())
}

/// Connects to Redis and registers every namespace's history options with the module, so that
/// publications from `redis-cli GYRE.PUBLISH` get the same history as the proxy's own.
async fn start_redis(config: &Config, events: EventSender) -> Result<RedisEngine, String> {
    let settings =
        gyre_proxy::startup::redis_settings(config).map_err(|e| format!("engine.redis: {e}"))?;
    for warning in gyre_proxy::startup::redis_warnings(config) {
        tracing::warn!("{warning}");
    }
    // The error names the failing node (passwords hidden); the addresses are not repeated here
    // since they may carry credentials.
    let engine = RedisEngine::connect(settings, events)
        .await
        .map_err(|e| format!("redis engine: {e}"))?;
    let mut without_namespace = config.channel.without_namespace.clone();
    if without_namespace.history_meta_ttl.is_zero() {
        without_namespace.history_meta_ttl = config.channel.history_meta_ttl;
    }
    let namespaces = std::iter::once(("", &without_namespace)).chain(config.namespaces());
    for (name, options) in namespaces {
        engine
            .register_namespace(name, history_options(options))
            .await
            .map_err(|e| format!("registering namespace {name:?} in Redis: {e}"))?;
    }
    Ok(engine)
}

fn init_logging(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(config.log.level.as_str()));
    tracing_subscriber::fmt().with_env_filter(filter).init();
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(signal) => signal,
                Err(_) => {
                    let _ = interrupt.await;
                    return;
                }
            };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
}
