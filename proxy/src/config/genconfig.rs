//! `gyre genconfig`: a commented TOML file with every option at its default.
//!
//! Values come from `Config::default()` and the list of keys from the schema; only the
//! comments are written here. Tests check that every key has a comment and that the output
//! parses back to the default config, so the file cannot drift from the code.

use serde_json::Value;

use super::env::{self, env_var_name};

/// Tables (no `.` after the last table name has a leaf under it) and keys, in output order,
/// each with what it does. A table's keys must follow it directly, before any sub-table.
const DOCS: &[(&str, &str)] = &[
    (
        "http_server",
        "The HTTP listener: client transports and, unless internal_port is set, the\nserver API (/api), /health, /metrics and the admin UI.",
    ),
    (
        "http_server.address",
        "Interface to listen on; empty means every interface.",
    ),
    ("http_server.port", "TCP port."),
    (
        "http_server.read_header_timeout",
        "Time a client has to send a request's line and headers (from the connection's\nopening, or from the first byte of a later request); then the connection is\nclosed. 0 = no limit.",
    ),
    (
        "http_server.idle_timeout",
        "Time a kept-alive connection may wait for its next request. 0 = no limit.",
    ),
    (
        "http_server.read_body_timeout",
        "Time a client has to send a whole request body; 408 beyond it. 0 = no limit.",
    ),
    (
        "http_server.max_unauthenticated_connections",
        "TCP connections that have not authenticated yet (no successful connect, no API\nkey); beyond it new connections get 503 and are closed at once. 0 = half of\nthe open-file limit (gyre raises its soft limit to the hard one at start).",
    ),
    (
        "http_server.internal_address",
        "Interface of the internal port; empty means every interface.",
    ),
    (
        "http_server.internal_port",
        "A second port for /api, /metrics, /health and the admin UI, which then leave\nthe public port (404 there). 0 = none: everything on port.",
    ),
    (
        "http_server.handler_prefix",
        "A path every endpoint is mounted under, e.g. \"/realtime\" →\n/realtime/connection/websocket, /realtime/api/publish. Empty = none.",
    ),
    (
        "http_server.tls_external",
        "TLS on the public port only: the internal port stays plain (unless internal_tls).",
    ),
    (
        "http_server.tls",
        "TLS of the server, so clients connect with wss:// and https:// without a\nterminating proxy (Centrifugo's TLS object). It covers the internal port too,\nunless tls_external or internal_tls.",
    ),
    (
        "http_server.tls.enabled",
        "Serve over TLS (wss://, https://); needs cert_pem and key_pem.",
    ),
    (
        "http_server.tls.server_ca_pem",
        "No effect here (it is for TLS clients).",
    ),
    ("http_server.tls.server_ca_pem_file", "No effect here."),
    ("http_server.tls.server_ca_pem_b64", "No effect here."),
    (
        "http_server.tls.cert_pem",
        "The server's certificate chain: PEM text, base64 of it, or a file path.",
    ),
    ("http_server.tls.cert_pem_file", "The same, from a file."),
    ("http_server.tls.cert_pem_b64", "The same, base64."),
    (
        "http_server.tls.key_pem",
        "The certificate's private key: PEM text, base64 of it, or a file path.",
    ),
    ("http_server.tls.key_pem_file", "The same, from a file."),
    ("http_server.tls.key_pem_b64", "The same, base64."),
    (
        "http_server.tls.client_ca_pem",
        "No effect (client certificates are not asked for).",
    ),
    ("http_server.tls.client_ca_pem_file", "No effect either."),
    ("http_server.tls.client_ca_pem_b64", "No effect either."),
    ("http_server.tls.server_name", "No effect here."),
    ("http_server.tls.insecure_skip_verify", "No effect here."),
    (
        "http_server.internal_tls",
        "TLS of the internal port when it differs from tls (the same keys); when not\nenabled the internal port uses tls, unless tls_external.",
    ),
    (
        "http_server.internal_tls.enabled",
        "Serve over TLS (wss://, https://); needs cert_pem and key_pem.",
    ),
    (
        "http_server.internal_tls.server_ca_pem",
        "No effect here (it is for TLS clients).",
    ),
    (
        "http_server.internal_tls.server_ca_pem_file",
        "No effect here.",
    ),
    (
        "http_server.internal_tls.server_ca_pem_b64",
        "No effect here.",
    ),
    (
        "http_server.internal_tls.cert_pem",
        "The server's certificate chain: PEM text, base64 of it, or a file path.",
    ),
    (
        "http_server.internal_tls.cert_pem_file",
        "The same, from a file.",
    ),
    ("http_server.internal_tls.cert_pem_b64", "The same, base64."),
    (
        "http_server.internal_tls.key_pem",
        "The certificate's private key: PEM text, base64 of it, or a file path.",
    ),
    (
        "http_server.internal_tls.key_pem_file",
        "The same, from a file.",
    ),
    ("http_server.internal_tls.key_pem_b64", "The same, base64."),
    (
        "http_server.internal_tls.client_ca_pem",
        "No effect (client certificates are not asked for).",
    ),
    (
        "http_server.internal_tls.client_ca_pem_file",
        "No effect either.",
    ),
    (
        "http_server.internal_tls.client_ca_pem_b64",
        "No effect either.",
    ),
    ("http_server.internal_tls.server_name", "No effect here."),
    (
        "http_server.internal_tls.insecure_skip_verify",
        "No effect here.",
    ),
    ("log", "Logging."),
    ("log.level", "One of none, trace, debug, info, warn, error."),
    ("node", "This node."),
    (
        "node.name",
        "Name shown by the info API; empty means host name and port.",
    ),
    ("client", "Client connections."),
    (
        "client.allowed_origins",
        "Origins browsers may connect from, e.g. [\"https://*.example.com\"].\nEmpty: only same-origin pages and clients that send no Origin header.",
    ),
    (
        "client.allow_anonymous_connect_without_token",
        "Accept connections without a token, as anonymous users (user \"\").",
    ),
    (
        "client.disallow_anonymous_connection_tokens",
        "Refuse connection tokens whose user (sub) is empty.",
    ),
    (
        "client.insecure",
        "No authentication and no permission checks at all. Never in production.",
    ),
    (
        "client.ping_interval",
        "How often the server pings each connection.",
    ),
    (
        "client.pong_timeout",
        "How long a client has to answer a ping; 0 = no check. Below ping_interval.",
    ),
    (
        "client.expired_close_delay",
        "Grace after a connection token expires before the connection is closed.",
    ),
    (
        "client.expired_sub_close_delay",
        "Grace after a subscription token expires before the subscription ends.",
    ),
    (
        "client.stale_close_delay",
        "How long a new connection may stay without sending connect.",
    ),
    (
        "client.channel_limit",
        "Subscriptions one connection may hold.",
    ),
    (
        "client.queue_max_size",
        "Bytes queued for one connection before it is closed as slow; 0 = no limit.",
    ),
    (
        "client.presence_update_interval",
        "How often presence entries of live subscriptions are refreshed.",
    ),
    (
        "client.connection_limit",
        "Connections per node; 0 = no limit.",
    ),
    (
        "client.user_connection_limit",
        "Connections of one user per node; 0 = no limit.",
    ),
    (
        "client.handshake_rate_limit",
        "Connection handshakes per second per node; beyond it clients get 503 with\nRetry-After and reconnect after their backoff (spreads reconnect storms). 0 = no limit.",
    ),
    (
        "client.handshake_burst",
        "Handshakes allowed at once above that rate; 0 = one second's worth.",
    ),
    (
        "client.connection_rate_limit",
        "Centrifugo's name for handshake_rate_limit (a Centrifugo config carries over);\nset one of the two, or both to the same value.",
    ),
    (
        "client.history_max_publication_limit",
        "Most publications one history call returns.",
    ),
    (
        "client.recovery_max_publication_limit",
        "Most publications one recovery may replay; beyond it the client gets a gap.",
    ),
    (
        "client.token",
        "How connection tokens (JWT) are verified, and subscription tokens unless\n[client.subscription_token] is enabled. Set one of the keys or the JWKS endpoint.",
    ),
    (
        "client.token.hmac_secret_key",
        "Shared secret for HS256/HS384/HS512.",
    ),
    (
        "client.token.hmac_previous_secret_key",
        "The secret before a rotation: HS* tokens the current secret refuses are checked\nwith it, so tokens issued before the switch keep working.",
    ),
    (
        "client.token.hmac_previous_secret_key_valid_until",
        "Unix time (seconds) from which the previous secret is refused; 0 = until it is\nremoved from the config.",
    ),
    (
        "client.token.rsa_public_key",
        "PEM public key for RS256/RS384/RS512.",
    ),
    (
        "client.token.ecdsa_public_key",
        "PEM public key for ES256/ES384/ES512.",
    ),
    (
        "client.token.jwks_public_endpoint",
        "JWKS URL; when set, every token is checked with the key its kid names. May\nhold {{name}} placeholders, filled from named groups of issuer_regex/audience_regex.",
    ),
    (
        "client.token.audience",
        "Required aud claim; empty = not checked.",
    ),
    (
        "client.token.audience_regex",
        "Instead of audience: a regular expression one aud value must match (unanchored).",
    ),
    (
        "client.token.issuer",
        "Required iss claim; empty = not checked.",
    ),
    (
        "client.token.issuer_regex",
        "Instead of issuer: a regular expression iss must match (unanchored).",
    ),
    (
        "client.token.user_id_claim",
        "Claim holding the user id; empty = sub.",
    ),
    (
        "client.token.insecure_skip_jwks_endpoint_safety_check",
        "Let {{name}} placeholders of jwks_public_endpoint come from a regex group that\nmatches open-ended values ([a-z]+), not only a list (acme|globex).",
    ),
    (
        "client.subscription_token",
        "Separate keys for subscription tokens.",
    ),
    (
        "client.subscription_token.enabled",
        "Use the keys below for subscription tokens instead of [client.token].",
    ),
    (
        "client.subscription_token.hmac_secret_key",
        "As in [client.token].",
    ),
    (
        "client.subscription_token.rsa_public_key",
        "As in [client.token].",
    ),
    (
        "client.subscription_token.ecdsa_public_key",
        "As in [client.token].",
    ),
    (
        "client.subscription_token.jwks_public_endpoint",
        "As in [client.token].",
    ),
    (
        "client.subscription_token.audience",
        "As in [client.token].",
    ),
    ("client.subscription_token.issuer", "As in [client.token]."),
    (
        "client.subscription_token.hmac_previous_secret_key",
        "As in [client.token].",
    ),
    (
        "client.subscription_token.hmac_previous_secret_key_valid_until",
        "As in [client.token].",
    ),
    (
        "client.subscription_token.audience_regex",
        "As in [client.token].",
    ),
    (
        "client.subscription_token.issuer_regex",
        "As in [client.token].",
    ),
    (
        "client.subscription_token.insecure_skip_jwks_endpoint_safety_check",
        "As in [client.token].",
    ),
    (
        "client.subscription_token.user_id_claim",
        "As in [client.token].",
    ),
    ("channel", "Channels."),
    (
        "channel.history_meta_ttl",
        "How long a channel's stream position (offset, epoch) outlives its last\npublication, where the channel's options leave history_meta_ttl at 0.",
    ),
    (
        "channel.max_length",
        "Longest channel name in bytes; 0 = no limit.",
    ),
    (
        "channel.without_namespace",
        "Options of channels without a namespace (no \":\" in the name).\nNamespaces below take the same keys.",
    ),
    (
        "channel.without_namespace.presence",
        "Keep presence: who is subscribed.",
    ),
    (
        "channel.without_namespace.join_leave",
        "Emit join and leave events.",
    ),
    (
        "channel.without_namespace.force_push_join_leave",
        "Send join/leave to every subscriber, asked for or not.",
    ),
    (
        "channel.without_namespace.history_size",
        "Publications kept in history; 0 = no history. Needs history_ttl.",
    ),
    (
        "channel.without_namespace.history_ttl",
        "How long history is kept after the last publication. Needs history_size.",
    ),
    (
        "channel.without_namespace.history_meta_ttl",
        "Stream position TTL for these channels; 0 = channel.history_meta_ttl.",
    ),
    (
        "channel.without_namespace.force_positioning",
        "Check every subscriber for missed publications. Needs history.",
    ),
    (
        "channel.without_namespace.force_recovery_mode",
        "\"stream\" (or empty): recovery replays every missed publication; \"cache\": a\nrecovering subscriber gets only the latest one (history_size = 1 is enough).",
    ),
    (
        "channel.without_namespace.allow_positioning",
        "Let subscribers ask for positioning. Needs history.",
    ),
    (
        "channel.without_namespace.force_recovery",
        "Replay missed publications to every resubscribing client. Needs history.",
    ),
    (
        "channel.without_namespace.allow_recovery",
        "Let subscribers ask for recovery. Needs history.",
    ),
    (
        "channel.without_namespace.allow_subscribe_for_client",
        "Any authenticated client may subscribe.",
    ),
    (
        "channel.without_namespace.allow_subscribe_for_anonymous",
        "Anonymous clients may subscribe too (with allow_subscribe_for_client).",
    ),
    (
        "channel.without_namespace.allow_publish_for_subscriber",
        "Subscribers may publish.",
    ),
    (
        "channel.without_namespace.allow_publish_for_client",
        "Any authenticated client may publish, subscribed or not.",
    ),
    (
        "channel.without_namespace.allow_publish_for_anonymous",
        "Anonymous clients may publish too.",
    ),
    (
        "channel.without_namespace.allow_history_for_subscriber",
        "Subscribers may read history.",
    ),
    (
        "channel.without_namespace.allow_history_for_client",
        "Any authenticated client may read history.",
    ),
    (
        "channel.without_namespace.allow_history_for_anonymous",
        "Anonymous clients may read history too.",
    ),
    (
        "channel.without_namespace.allow_presence_for_subscriber",
        "Subscribers may read presence.",
    ),
    (
        "channel.without_namespace.allow_presence_for_client",
        "Any authenticated client may read presence.",
    ),
    (
        "channel.without_namespace.allow_presence_for_anonymous",
        "Anonymous clients may read presence too.",
    ),
    (
        "channel.without_namespace.allow_user_limited_channels",
        "Allow channels like news#42 or dialog#42,43 that only the listed users\nmay subscribe to.",
    ),
    (
        "channel.without_namespace.allow_tags_filter",
        "Clients may subscribe with a tags filter (tf): they receive only the\npublications whose tags match. Without it such a subscribe gets error 107.",
    ),
    (
        "channel.without_namespace.allowed_delta_types",
        "[\"fossil\"] lets subscribers ask for delta compression (delta: \"fossil\"); needs\npositioning or recovery on the subscription, and no tags filter.",
    ),
    (
        "channel.without_namespace.delta_publish",
        "Send publications as fossil deltas against the previous one to subscribers that\nnegotiated delta compression (the first one after subscribing is whole).",
    ),
    (
        "channel.without_namespace.subscribe_proxy_enabled",
        "Ask the subscribe proxy whether a client may subscribe (not asked for\nsubscriptions with a token and for user-limited channels).",
    ),
    (
        "channel.without_namespace.subscribe_proxy_name",
        "Which subscribe proxy: \"default\" (or empty) = [channel.proxy.subscribe], else\nthe name of one of [[proxies]].",
    ),
    (
        "channel.without_namespace.publish_proxy_enabled",
        "Ask the publish proxy whether a client may publish; it may rewrite the data.",
    ),
    (
        "channel.without_namespace.publish_proxy_name",
        "Which publish proxy, as subscribe_proxy_name.",
    ),
    (
        "channel.without_namespace.sub_refresh_proxy_enabled",
        "Expiring subscriptions are refreshed by the server through the sub_refresh\nproxy instead of by the client with a new token.",
    ),
    (
        "channel.without_namespace.sub_refresh_proxy_name",
        "Which sub_refresh proxy, as subscribe_proxy_name.",
    ),
    (
        "channel.without_namespace.subscribe_stream_proxy_enabled",
        "Subscription streams from the backend: not supported by Gyre, must stay false.",
    ),
    (
        "channel.without_namespace.subscribe_stream_proxy_name",
        "Not supported (see subscribe_stream_proxy_enabled).",
    ),
    (
        "channel.without_namespace.subscribe_stream_proxy_bidirectional",
        "Not supported (see subscribe_stream_proxy_enabled).",
    ),
    (
        "channel.without_namespace.subscribe_stream_bidirectional",
        "An earlier name of subscribe_stream_proxy_bidirectional; not supported either.",
    ),
    (
        "channel.without_namespace.cache_empty_proxy_enabled",
        "Centrifugo PRO's cache_empty proxy: accepted, no effect (a warning at start).",
    ),
    (
        "channel.without_namespace.cache_empty_proxy_name",
        "No effect (see cache_empty_proxy_enabled).",
    ),
    (
        "channel.without_namespace.state_proxy_enabled",
        "Centrifugo PRO's channel state proxy: accepted, no effect (a warning at start).",
    ),
    (
        "channel.without_namespace.state_proxy_name",
        "No effect (see state_proxy_enabled).",
    ),
    (
        "channel.namespaces",
        "Namespaces: a channel named \"<name>:…\" takes the options of namespace <name>.\nEach takes the keys of [channel.without_namespace] plus its name\n(2 or more of a-z A-Z 0-9 - _ .). Example:",
    ),
    ("engine", "Where publications, history and presence live."),
    (
        "engine.type",
        "memory (one process) or redis (Redis with libgyre.so; any number of nodes).",
    ),
    (
        "engine.redis",
        "The redis engine. One topology: address (standalone servers, or a TCP proxy in\nfront of the primary), sentinel_address + sentinel_master_name, or cluster_address.",
    ),
    (
        "engine.redis.address",
        "Redis URLs: redis://[user:password@]host:port[/db], rediss://… (TLS) or\nunix:///path[?db=N]. Several addresses shard channels across independent Redis\nservers (every node must list them in the same order).",
    ),
    (
        "engine.redis.user",
        "ACL user of the data nodes. A user, password or db in an address URL wins over\nthese keys for that address.",
    ),
    ("engine.redis.password", "Password of the data nodes."),
    (
        "engine.redis.db",
        "Database number of the data nodes (Redis Cluster: 0 only).",
    ),
    (
        "engine.redis.cluster_address",
        "Redis Cluster: each string lists seed nodes of one cluster, comma-separated\n(\"host:7000,host:7001\" or URLs); several clusters shard channels between them.\nNot supported by this version yet. In the environment, plain text is one cluster;\nseveral need a JSON array.",
    ),
    (
        "engine.redis.sentinel_address",
        "Sentinels to ask for the primary: host:port, redis://host:port or\nrediss://host:port. gyre follows +switch-master to the new primary, resubscribes\nand resyncs; all channels live on that one primary.",
    ),
    (
        "engine.redis.sentinel_master_name",
        "The master name the sentinels monitor (needed with sentinel_address).",
    ),
    ("engine.redis.sentinel_user", "ACL user of the sentinels."),
    (
        "engine.redis.sentinel_password",
        "Password of the sentinels.",
    ),
    (
        "engine.redis.prefix",
        "Prefix of every key and PUB/SUB channel; must equal the module's gyre.prefix.",
    ),
    (
        "engine.redis.presence_ttl",
        "How long a presence entry lives without a refresh (whole seconds);\nlonger than client.presence_update_interval.",
    ),
    (
        "engine.redis.connect_timeout",
        "Timeout of one connection attempt (TCP, TLS and handshake).",
    ),
    (
        "engine.redis.io_timeout",
        "Timeout for one Redis command; a connection that misses it is replaced.",
    ),
    (
        "engine.redis.tls",
        "TLS to the data nodes (also used for every rediss:// address).\nEach PEM is given once: server_ca_pem, cert_pem and key_pem take PEM text,\nbase64 of it, or a file's path (Centrifugo v6); _file and _b64 are v5's forms.",
    ),
    ("engine.redis.tls.enabled", "Use TLS for every address."),
    (
        "engine.redis.tls.server_ca_pem",
        "PEM CA certificate(s) to trust instead of the system's roots.",
    ),
    (
        "engine.redis.tls.server_ca_pem_file",
        "The same, from a file.",
    ),
    (
        "engine.redis.tls.server_ca_pem_b64",
        "The same, as base64 of the PEM text.",
    ),
    (
        "engine.redis.tls.cert_pem",
        "PEM client certificate (chain), for servers with tls-auth-clients; needs the key.",
    ),
    ("engine.redis.tls.cert_pem_file", "The same, from a file."),
    (
        "engine.redis.tls.cert_pem_b64",
        "The same, as base64 of the PEM text.",
    ),
    (
        "engine.redis.tls.key_pem",
        "PEM private key of the client certificate.",
    ),
    ("engine.redis.tls.key_pem_file", "The same, from a file."),
    (
        "engine.redis.tls.key_pem_b64",
        "The same, as base64 of the PEM text.",
    ),
    (
        "engine.redis.tls.client_ca_pem",
        "For TLS servers checking client certificates: no effect here (a warning).",
    ),
    ("engine.redis.tls.client_ca_pem_file", "No effect either."),
    ("engine.redis.tls.client_ca_pem_b64", "No effect either."),
    (
        "engine.redis.tls.server_name",
        "Name the server's certificate must be valid for, when it is not the host in the\naddress (e.g. connecting by IP to a certificate issued for a name).",
    ),
    (
        "engine.redis.tls.insecure_skip_verify",
        "Accept any server certificate. Development only (logged as a warning).",
    ),
    (
        "engine.redis.sentinel_tls",
        "TLS to the sentinels (also used for rediss:// sentinel addresses).\nEach PEM is given once: server_ca_pem, cert_pem and key_pem take PEM text,\nbase64 of it, or a file's path (Centrifugo v6); _file and _b64 are v5's forms.",
    ),
    (
        "engine.redis.sentinel_tls.enabled",
        "Use TLS for every sentinel.",
    ),
    (
        "engine.redis.sentinel_tls.server_ca_pem",
        "PEM CA certificate(s) to trust instead of the system's roots.",
    ),
    (
        "engine.redis.sentinel_tls.server_ca_pem_file",
        "The same, from a file.",
    ),
    (
        "engine.redis.sentinel_tls.server_ca_pem_b64",
        "The same, as base64 of the PEM text.",
    ),
    (
        "engine.redis.sentinel_tls.cert_pem",
        "PEM client certificate (chain), for servers with tls-auth-clients; needs the key.",
    ),
    (
        "engine.redis.sentinel_tls.cert_pem_file",
        "The same, from a file.",
    ),
    (
        "engine.redis.sentinel_tls.cert_pem_b64",
        "The same, as base64 of the PEM text.",
    ),
    (
        "engine.redis.sentinel_tls.key_pem",
        "PEM private key of the client certificate.",
    ),
    (
        "engine.redis.sentinel_tls.key_pem_file",
        "The same, from a file.",
    ),
    (
        "engine.redis.sentinel_tls.key_pem_b64",
        "The same, as base64 of the PEM text.",
    ),
    (
        "engine.redis.sentinel_tls.client_ca_pem",
        "For TLS servers checking client certificates: no effect here (a warning).",
    ),
    (
        "engine.redis.sentinel_tls.client_ca_pem_file",
        "No effect either.",
    ),
    (
        "engine.redis.sentinel_tls.client_ca_pem_b64",
        "No effect either.",
    ),
    (
        "engine.redis.sentinel_tls.server_name",
        "Name the server's certificate must be valid for, when it is not the host in the\naddress (e.g. connecting by IP to a certificate issued for a name).",
    ),
    (
        "engine.redis.sentinel_tls.insecure_skip_verify",
        "Accept any server certificate. Development only (logged as a warning).",
    ),
    ("http_api", "The server API (POST /api/<method>)."),
    (
        "http_api.handler_prefix",
        "The endpoint's path; empty = /api (Centrifugo's key).",
    ),
    (
        "http_api.key",
        "API key, sent as X-API-Key or Authorization: apikey <key>.",
    ),
    (
        "http_api.insecure",
        "No API key check. Only behind a trusted network boundary.",
    ),
    (
        "http_api.batch_max_commands",
        "Most commands in one batch request; a longer one gets HTTP 400. At least 1.",
    ),
    (
        "websocket",
        "The WebSocket transport (/connection/websocket).",
    ),
    (
        "websocket.handler_prefix",
        "The endpoint's path; empty = /connection/websocket (Centrifugo's key).",
    ),
    (
        "websocket.message_size_limit",
        "Largest message a client may send, in bytes; 0 = no limit.",
    ),
    (
        "websocket.write_timeout",
        "How long one write may block before the connection is dropped.",
    ),
    (
        "websocket.compression",
        "Negotiate permessage-deflate with clients that offer it. Each publication is\ncompressed once and the same bytes go to every compressing subscriber.",
    ),
    (
        "websocket.compression_level",
        "zlib level of that compression: 1 (fastest) to 9.",
    ),
    (
        "websocket.compression_min_size",
        "Messages shorter than this many bytes go uncompressed.",
    ),
    (
        "http_stream",
        "HTTP-streaming with bidirectional emulation (/connection/http_stream), a\nWebSocket fallback for centrifuge-js; its commands arrive through /emulation.",
    ),
    (
        "http_stream.handler_prefix",
        "The endpoint's path; empty = /connection/http_stream (Centrifugo's key).",
    ),
    ("http_stream.enabled", "Serve the endpoint."),
    (
        "http_stream.max_request_body_size",
        "Largest connect request body, in bytes.",
    ),
    (
        "sse",
        "Server-Sent Events with bidirectional emulation (/connection/sse), a WebSocket\nfallback for centrifuge-js; its commands arrive through /emulation.",
    ),
    (
        "sse.handler_prefix",
        "The endpoint's path; empty = /connection/sse (Centrifugo's key).",
    ),
    ("sse.enabled", "Serve the endpoint."),
    (
        "sse.max_request_body_size",
        "Largest connect request body of a POST, in bytes.",
    ),
    (
        "emulation",
        "The /emulation endpoint: commands of http_stream and sse clients, routed to\nthe node holding the session (through Redis) when it is another.",
    ),
    (
        "emulation.handler_prefix",
        "The endpoint's path; empty = /emulation (Centrifugo's key).",
    ),
    (
        "emulation.max_request_body_size",
        "Largest request body, in bytes.",
    ),
    (
        "emulation.max_concurrent_forwards",
        "Requests for sessions on other nodes forwarded at once; 503 beyond it.",
    ),
    (
        "uni_websocket",
        "Unidirectional WebSocket (/connection/uni_websocket): a connect request in,\nJSON pushes out; no SDK needed.",
    ),
    (
        "uni_websocket.handler_prefix",
        "The endpoint's path; empty = /connection/uni_websocket (Centrifugo's key).",
    ),
    ("uni_websocket.enabled", "Serve the endpoint."),
    (
        "uni_websocket.message_size_limit",
        "Largest message (the connect request) a client may send, in bytes; 0 = no limit.",
    ),
    (
        "uni_websocket.join_push_messages",
        "Send pushes queued together in one message, separated by newlines.",
    ),
    (
        "uni_sse",
        "Unidirectional Server-Sent Events (/connection/uni_sse): GET with cf_connect or\nPOST; each event's id lets an EventSource resume every channel with Last-Event-ID.",
    ),
    (
        "uni_sse.handler_prefix",
        "The endpoint's path; empty = /connection/uni_sse (Centrifugo's key).",
    ),
    ("uni_sse.enabled", "Serve the endpoint."),
    (
        "uni_sse.max_request_body_size",
        "Largest connect request body of a POST, in bytes.",
    ),
    (
        "uni_sse.connect_code_to_http_response",
        "A failed connect answered with an HTTP status instead of a 200 stream with a\ndisconnect: the connect runs before the response starts.",
    ),
    (
        "uni_sse.connect_code_to_http_response.enabled",
        "Use the transforms.",
    ),
    (
        "uni_sse.connect_code_to_http_response.transforms",
        "e.g. [{code = 4501, to = {status_code = 401, body = \"log in\"}}]: an error or\ndisconnect code to a status (200-599) and body (empty: the message or reason);\nother failures are 500.",
    ),
    (
        "uni_http_stream",
        "Unidirectional HTTP streaming (/connection/uni_http_stream): POST a connect\nrequest, read newline-separated JSON pushes.",
    ),
    (
        "uni_http_stream.handler_prefix",
        "The endpoint's path; empty = /connection/uni_http_stream (Centrifugo's key).",
    ),
    ("uni_http_stream.enabled", "Serve the endpoint."),
    (
        "uni_http_stream.max_request_body_size",
        "Largest connect request body, in bytes.",
    ),
    (
        "uni_http_stream.connect_code_to_http_response",
        "A failed connect answered with an HTTP status instead of a 200 stream with a\ndisconnect: the connect runs before the response starts.",
    ),
    (
        "uni_http_stream.connect_code_to_http_response.enabled",
        "Use the transforms.",
    ),
    (
        "uni_http_stream.connect_code_to_http_response.transforms",
        "e.g. [{code = 4501, to = {status_code = 401, body = \"log in\"}}]: an error or\ndisconnect code to a status (200-599) and body (empty: the message or reason);\nother failures are 500.",
    ),
    (
        "sockjs",
        "SockJS (/connection/sockjs) for centrifuge-js's sockjs transport and the\nsockjs-client package. Polling sub-transports need sticky sessions.",
    ),
    ("sockjs.enabled", "Serve the endpoint."),
    (
        "sockjs.heartbeat_delay",
        "Interval of heartbeat frames on idle sessions.",
    ),
    (
        "sockjs.disconnect_delay",
        "How long a session survives without a request from its client.",
    ),
    ("shutdown", "Graceful shutdown on SIGINT/SIGTERM."),
    (
        "shutdown.timeout",
        "Time for closing connections and draining before the process exits anyway.",
    ),
    (
        "admin",
        "The admin web UI, served by gyre (on the internal port when there is one).",
    ),
    ("admin.enabled", "Serve the admin UI."),
    (
        "admin.password",
        "The password to log in with (required unless insecure).",
    ),
    (
        "admin.secret",
        "Signs the UI's session tokens (required unless insecure).",
    ),
    (
        "admin.insecure",
        "No login: anyone who reaches the UI is an operator. Only behind a firewall.",
    ),
    (
        "admin.handler_prefix",
        "Path of the UI; empty = \"/\" (the page, /admin/auth and /admin/api under it).",
    ),
    (
        "admin.external",
        "Serve the UI on the public port even when internal_port is set.",
    ),
    (
        "health",
        "Accepted for Centrifugo compatibility: Gyre always serves /health.",
    ),
    (
        "health.handler_prefix",
        "The endpoint's path; empty = /health (Centrifugo's key).",
    ),
    ("health.enabled", "No effect."),
    (
        "prometheus",
        "Accepted for Centrifugo compatibility: Gyre always serves /metrics.",
    ),
    (
        "prometheus.handler_prefix",
        "The endpoint's path; empty = /metrics (Centrifugo's key).",
    ),
    ("prometheus.enabled", "No effect."),
];

/// Where a proxy object's keys go in the output: after the entry with this path, the proxy
/// objects listed (path, doc, whether it has an `enabled` switch), and further entries.
struct Insert {
    after: &'static str,
    proxies: &'static [(&'static str, &'static str, bool)],
    then: &'static [(&'static str, &'static str)],
}

const INSERTS: &[Insert] = &[
    Insert {
        after: "client.subscription_token.user_id_claim",
        proxies: &[
            (
                "client.proxy.connect",
                "Connect proxy: the backend says who a client is that connects without a token\n(from its cookies, say). Keys of a proxy object, here and below:",
                true,
            ),
            (
                "client.proxy.refresh",
                "Refresh proxy: when a connection reaches its expire_at, the backend says\nwhether it goes on (the server refreshes; clients send no refresh command).",
                true,
            ),
        ],
        then: &[
            (
                "client.connect_code_to_unidirectional_disconnect",
                "The disconnect a unidirectional client (uni_websocket, uni_sse, uni_http_stream)\ngets when its connect fails with an error code (from the connect proxy, its\nstatus_to_code_transforms, or Gyre), instead of the built-in one (3004 for the\nbackend's codes).",
            ),
            (
                "client.connect_code_to_unidirectional_disconnect.enabled",
                "Use the transforms.",
            ),
            (
                "client.connect_code_to_unidirectional_disconnect.transforms",
                "e.g. [{code = 403, to = {code = 4403, reason = \"forbidden\"}}]: error code to\ndisconnect code (3000-4999) and reason.",
            ),
        ],
    },
    Insert {
        after: "channel.without_namespace.state_proxy_name",
        proxies: &[
            (
                "channel.proxy.subscribe",
                "The subscribe proxy of namespaces with subscribe_proxy_enabled and the\nproxy name \"default\".",
                false,
            ),
            (
                "channel.proxy.publish",
                "The publish proxy of namespaces with publish_proxy_enabled.",
                false,
            ),
            (
                "channel.proxy.sub_refresh",
                "The sub_refresh proxy of namespaces with sub_refresh_proxy_enabled.",
                false,
            ),
            (
                "channel.proxy.subscribe_stream",
                "Accepted for Centrifugo configs; subscription streams are not supported.",
                false,
            ),
            (
                "channel.proxy.cache_empty",
                "Centrifugo PRO's cache_empty proxy: accepted, never called (a warning at start).",
                false,
            ),
            (
                "channel.proxy.state",
                "Centrifugo PRO's channel state proxy: accepted, never called (a warning at\nstart).",
                false,
            ),
        ],
        then: &[],
    },
    Insert {
        after: "prometheus.enabled",
        proxies: &[],
        then: &[
            (
                "rpc",
                "Client RPC calls (rpc commands), proxied to the backend by the namespace of the\nmethod name (\"ns:method\"; no namespace: [rpc.without_namespace]).",
            ),
            (
                "rpc.namespace_boundary",
                "What separates an RPC namespace from the rest of the method name.",
            ),
            (
                "rpc.namespaces",
                "RPC namespaces: a method \"<name>:…\" takes the options of namespace <name>.\nExample:",
            ),
            (
                "rpc.without_namespace",
                "Options of methods without a namespace.",
            ),
            (
                "rpc.without_namespace.proxy_enabled",
                "Proxy these calls to the backend; otherwise they get error 108.",
            ),
            (
                "rpc.without_namespace.proxy_name",
                "\"default\" = [rpc.proxy], else the name of one of [[proxies]].",
            ),
            (
                "rpc.ping",
                "A built-in method that Gyre answers itself with an empty result.",
            ),
            ("rpc.ping.enabled", "Answer the ping method."),
            ("rpc.ping.method", "Its name."),
        ],
    },
    Insert {
        after: "rpc.ping.method",
        proxies: &[(
            "rpc.proxy",
            "The RPC proxy of namespaces with proxy_enabled and the proxy name \"default\".",
            false,
        )],
        then: &[(
            "proxies",
            "Named proxies for namespaces that name them in *_proxy_name (a proxy object and\na name: 2 or more of a-z A-Z 0-9 - _ .). Example:",
        )],
    },
];

/// The keys of a proxy object, relative to it; `http` and `grpc` are its sub-tables.
const PROXY_KEYS: &[(&str, &str)] = &[
    (
        "endpoint",
        "http://… or https://… (JSON POST) or grpc://host:port; empty = not configured.",
    ),
    (
        "timeout",
        "Deadline of one call, waiting for a free request slot included.",
    ),
    (
        "http_headers",
        "Headers of the connection's own request (WebSocket upgrade, HTTP stream…) to\nforward, e.g. [\"Cookie\", \"Origin\"]; GRPC metadata for grpc:// endpoints.",
    ),
    (
        "emulated_headers",
        "Headers the client puts in its connect command (headers emulation) to forward.\nThe client controls them: list only what the backend validates itself. A real\nheader of the same name wins.",
    ),
    (
        "grpc_metadata",
        "Metadata of GRPC client connections; no effect (Gyre has no GRPC transport).",
    ),
    (
        "binary_encoding",
        "Payloads as base64 (b64data, encoding \"binary\") instead of raw JSON.",
    ),
    (
        "include_connection_meta",
        "Add the connection's meta (from the connect proxy or the token) to requests.",
    ),
    (
        "static_http_headers",
        "Centrifugo v5's name of http.static_headers; merged with it.",
    ),
    (
        "max_concurrent_requests",
        "Gyre: calls in flight to this backend at once; more wait (within timeout).",
    ),
    ("http", "Options of http(s):// endpoints."),
    (
        "http.static_headers",
        "Headers added to every request; forwarded headers of the same name win.",
    ),
    (
        "http.status_to_code_transforms",
        "What a non-200 answer means for the client, e.g. [{status_code = 403, to_error =\n{code = 403, message = \"forbidden\"}}]; other statuses are error 100.",
    ),
    (
        "http.h2c",
        "Gyre: HTTP/2 without TLS (prior knowledge) to http:// instead of HTTP/1.1.",
    ),
    (
        "http.tls",
        "TLS of an https:// endpoint when enabled (else the system's roots check it).\nserver_ca_pem, cert_pem and key_pem take PEM text, base64 of it, or a file's path.",
    ),
    ("grpc", "Options of grpc:// endpoints."),
    (
        "grpc.credentials_key",
        "Metadata key sent with credentials_value on every call.",
    ),
    ("grpc.credentials_value", "Its value."),
    (
        "grpc.compression",
        "gzip-compress requests (and accept gzip-compressed answers).",
    ),
    (
        "grpc.static_metadata",
        "Metadata added to every call; forwarded headers of the same name win.",
    ),
    (
        "grpc.tls",
        "TLS to the GRPC server when enabled (the endpoint stays grpc://host:port);\nserver_ca_pem, cert_pem and key_pem take PEM text, base64 of it, or a file's path.",
    ),
];

/// The keys of a TLS object of a proxy (`http.tls`, `grpc.tls`), relative to it.
const TLS_KEYS: &[(&str, &str)] = &[
    ("enabled", "Use TLS with these settings."),
    (
        "server_ca_pem",
        "CA certificate(s) to trust instead of the system's roots.",
    ),
    ("server_ca_pem_file", "The same, from a file."),
    ("server_ca_pem_b64", "The same, as base64 of the PEM text."),
    (
        "cert_pem",
        "Client certificate (chain), for servers that require one; needs the key.",
    ),
    ("cert_pem_file", "The same, from a file."),
    ("cert_pem_b64", "The same, as base64 of the PEM text."),
    ("key_pem", "Private key of the client certificate."),
    ("key_pem_file", "The same, from a file."),
    ("key_pem_b64", "The same, as base64 of the PEM text."),
    (
        "client_ca_pem",
        "For TLS servers checking client certificates: no effect here (a warning).",
    ),
    ("client_ca_pem_file", "No effect either."),
    ("client_ca_pem_b64", "No effect either."),
    (
        "server_name",
        "Name the server's certificate must be valid for, when it is not the endpoint's\nhost (for GRPC also the name sent in the handshake).",
    ),
    (
        "insecure_skip_verify",
        "Accept any server certificate. Development only (logged as a warning).",
    ),
];

/// Every documented path with its comment, in output order: [`DOCS`] with the proxy objects
/// and sections of [`INSERTS`] expanded.
fn docs() -> Vec<(String, String)> {
    let mut out = Vec::new();
    for &(path, doc) in DOCS {
        out.push((path.to_owned(), doc.to_owned()));
        let mut pending = vec![path];
        while let Some(after) = pending.pop() {
            for insert in INSERTS.iter().filter(|i| i.after == after) {
                for &(base, doc, switched) in insert.proxies {
                    out.push((base.to_owned(), doc.to_owned()));
                    if switched {
                        out.push((format!("{base}.enabled"), "Use this proxy.".to_owned()));
                    }
                    for &(key, doc) in PROXY_KEYS {
                        out.push((format!("{base}.{key}"), doc.to_owned()));
                        if key.ends_with(".tls") {
                            for &(tls_key, doc) in TLS_KEYS {
                                out.push((format!("{base}.{key}.{tls_key}"), doc.to_owned()));
                            }
                        }
                    }
                }
                for &(path, doc) in insert.then {
                    out.push((path.to_owned(), doc.to_owned()));
                    pending.push(path);
                }
            }
        }
    }
    out
}

/// The commented examples of lists of tables; their keys are checked by a test.
const EXAMPLES: &[(&str, &str)] = &[
    ("channel.namespaces", NAMESPACE_EXAMPLE),
    ("rpc.namespaces", RPC_NAMESPACE_EXAMPLE),
    ("proxies", PROXIES_EXAMPLE),
];

const RPC_NAMESPACE_EXAMPLE: &str = r#"[[rpc.namespaces]]
name = "orders"
proxy_enabled = true
proxy_name = "chat-backend""#;

const PROXIES_EXAMPLE: &str = r#"[[proxies]]
name = "chat-backend"
endpoint = "grpc://127.0.0.1:9000"
timeout = "500ms""#;

/// The commented example of `channel.namespaces`; its keys are checked by a test.
const NAMESPACE_EXAMPLE: &str = r#"[[channel.namespaces]]
name = "chat"
presence = true
join_leave = true
history_size = 100
history_ttl = "300s"
force_recovery = true
allow_subscribe_for_client = true
allow_publish_for_subscriber = true
allow_history_for_subscriber = true
allow_presence_for_subscriber = true"#;

const HEADER: &str = "\
# Gyre configuration. Every option is shown with its default value.
#
# Keys follow Centrifugo v6's names and nesting, so a Centrifugo config carries over.
# A JSON or YAML file with the same nesting works too (gyre --config config.json or .yaml).
# Every option can also be set by the environment variable shown in [brackets] and by a
# flag; flags win over the environment, which wins over this file. Lists from the
# environment are a JSON array or comma-separated text.
# Durations: \"500ms\", \"25s\", \"1m30s\", \"720h\", or a whole number of seconds.
";

/// The commented default configuration in TOML.
pub fn genconfig() -> String {
    let defaults = env::schema();
    let mut out = String::from(HEADER);
    for (path, doc) in docs() {
        let (path, doc) = (path.as_str(), doc.as_str());
        let value = lookup(&defaults, path);
        if let Some((_, example)) = EXAMPLES.iter().find(|(p, _)| *p == path) {
            // Written as a commented example: an empty `namespaces = []` line would clash with
            // `[[channel.namespaces]]` once the example is uncommented.
            out.push('\n');
            push_comment(&mut out, doc);
            push_comment(&mut out, example);
            push_comment(
                &mut out,
                &format!("[{}, as a JSON array]", env_var_name(path)),
            );
            continue;
        }
        match value {
            Some(Value::Object(fields)) if !fields.is_empty() => {
                out.push('\n');
                push_comment(&mut out, doc);
                out.push_str(&format!("[{path}]\n"));
            }
            Some(value) => {
                // A list of tables holds a sample element in the schema: it defaults to empty.
                // An empty table is a map with free keys (see `env::schema`).
                let text = match value {
                    Value::Array(items) if items.iter().any(Value::is_object) => "[]".to_owned(),
                    Value::Object(_) => "{}".to_owned(),
                    value => serde_json::to_string(value).expect("a JSON leaf formats"),
                };
                // The variable goes on the comment's last line when that stays short.
                let var = format!("[{}]", env_var_name(path));
                let last = doc.lines().last().unwrap_or("");
                if last.len() + var.len() + 4 <= 100 {
                    push_comment(&mut out, &format!("{doc}  {var}"));
                } else {
                    push_comment(&mut out, doc);
                    push_comment(&mut out, &var);
                }
                let key = path.rsplit('.').next().unwrap_or(path);
                out.push_str(&format!("{key} = {text}\n"));
            }
            None => panic!("genconfig documents `{path}`, which the schema lacks"),
        }
    }
    out
}

fn push_comment(out: &mut String, text: &str) {
    for line in text.lines() {
        out.push_str("# ");
        out.push_str(line);
        out.push('\n');
    }
}

fn lookup<'a>(tree: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(tree, |node, key| node.get(key))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::env::Keys;
    use crate::config::{Config, Namespace};

    #[test]
    fn every_key_is_documented_once() {
        let keys = Keys::from_schema(&env::schema());
        let docs = docs();
        let documented: Vec<&str> = docs.iter().map(|(p, _)| p.as_str()).collect();
        for path in keys.by_path.keys() {
            assert!(
                documented.contains(&path.as_str()),
                "`{path}` lacks a comment"
            );
        }
        let mut sorted = documented.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), documented.len(), "a path is documented twice");
    }

    #[test]
    fn output_parses_back_to_the_defaults() {
        let text = genconfig();
        let config = Config::from_toml(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(config, Config::default());
        assert!(text.contains("port = 8000"));
        assert!(text.contains("[GYRE_CLIENT_TOKEN_HMAC_SECRET_KEY]"));
        assert!(text.contains("history_meta_ttl = \"720h\""));
        assert!(text.contains("# [[channel.namespaces]]"));
    }

    #[test]
    fn the_namespace_example_loads() {
        let text = format!("{}\n{NAMESPACE_EXAMPLE}\n", genconfig());
        let config = Config::from_toml(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        let chat: &Namespace = &config.channel.namespaces[0];
        assert_eq!(chat.name, "chat");
        assert_eq!(chat.history_size, 100);
        assert!(chat.force_recovery && chat.allow_presence_for_subscriber);
    }

    #[test]
    fn the_rpc_and_proxies_examples_load_together() {
        let text = format!(
            "{}\n{RPC_NAMESPACE_EXAMPLE}\n{PROXIES_EXAMPLE}\n",
            genconfig()
        );
        let config = Config::from_toml(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(config.rpc.namespaces[0].name, "orders");
        assert!(config.rpc.namespaces[0].options.proxy_enabled);
        assert_eq!(config.proxies[0].name, "chat-backend");
        assert_eq!(
            config.proxies[0].proxy.timeout,
            std::time::Duration::from_millis(500)
        );
    }
}
