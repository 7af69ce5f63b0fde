//! `gyre` against Redis servers that speak only TLS (`--port 0 --tls-port …`), with
//! certificates made by the test ([`TestPki`]): a CA and a client certificate, a wrong CA, no
//! verification, and a certificate for a name while connecting by IP (`tls.server_name`).
//! Every working setup is checked end to end: a WebSocket subscriber receives an API
//! publication (PUB/SUB over TLS) that Redis holds in its history (commands over TLS).
//! The unmodified centrifuge-js SDK (JSON and Protobuf) runs its basic scenarios against a gyre
//! on a TLS-only Redis: publications from the API, `redis-cli --tls GYRE.PUBLISH` and a client,
//! presence, history and recovery.

use std::time::Duration;

use base64::Engine as _;
use gyre_tests::ws_client::{EngineKind, ProxyEnv, WAIT, cmd};
use gyre_tests::{
    GyreBuilder, GyreProcess, Namespace, RedisServer, SDK_NS, SdkEnv, TLS_SERVER_NAME, TestPki,
    as_array, as_int, cmd as redis_cmd, require_node_sdk, sdk_basic_scenarios,
};
use serde_json::json;

/// How long gyre may take to give up on a Redis it cannot use.
const START_FAILURE: Duration = Duration::from_secs(15);

fn builder(urls: &[String]) -> GyreBuilder {
    GyreProcess::builder()
        .namespace(Namespace::full("chat", 100, 300))
        .redis_urls(urls)
}

fn path(p: &std::path::Path) -> String {
    p.to_str().expect("utf-8 path").to_owned()
}

/// Starts gyre and checks that publications go through Redis both ways.
fn assert_works(builder: GyreBuilder, redis: RedisServer) -> ProxyEnv {
    let env = ProxyEnv {
        gyre: builder.start(),
        redis: Some(redis),
        engine: EngineKind::Redis,
    };
    let mut client = env.client("alice");
    client.call(cmd::subscribe(1, "chat:tls"));
    let (offset, _) = env.publish("chat:tls", json!({"over": "tls"}));
    assert_eq!(offset, 1);
    let push = client.publications("chat:tls", 1, WAIT).remove(0);
    assert_eq!(
        push.json(),
        &json!({"push": {"channel": "chat:tls", "pub": {"data": {"over": "tls"}, "offset": 1}}})
    );
    // Redis itself (through its unix socket) holds the publication.
    let mut con = env.redis_connection();
    let history = redis_cmd(&mut con, &["GYRE.HISTORY", "chat:tls"]);
    assert_eq!(as_int(&as_array(&history)[0]), 1, "top offset in Redis");
    env
}

#[test]
fn tls_with_ca_and_client_certificate_from_files() {
    let pki = TestPki::new();
    let (redis, port) = pki.redis(&pki.server(), true);
    let client = pki.client();
    let gyre = builder(&[format!("rediss://127.0.0.1:{port}")]).extra_toml(&format!(
        "[engine.redis.tls]\nserver_ca_pem_file = {:?}\ncert_pem_file = {:?}\nkey_pem_file = {:?}",
        path(&pki.ca_cert()),
        path(&client.cert),
        path(&client.key),
    ));
    assert_works(gyre, redis);
}

#[test]
fn tls_client_certificate_inline_and_required() {
    let pki = TestPki::new();
    let (redis, port) = pki.redis(&pki.server(), true);
    let address = format!("rediss://127.0.0.1:{port}");
    let ca = format!(
        "server_ca_pem = {:?}",
        std::fs::read_to_string(pki.ca_cert()).unwrap()
    );

    // Without a client certificate the server ends the handshake: a clear start error.
    let output = builder(std::slice::from_ref(&address))
        .extra_toml(&format!("[engine.redis.tls]\n{ca}"))
        .start_failure(START_FAILURE);
    assert!(output.contains(&address), "names the address:\n{output}");
    assert!(
        output.contains("refused gyre's TLS client certificate"),
        "says why:\n{output}"
    );

    let client = pki.client();
    let gyre = builder(&[address]).extra_toml(&format!(
        "[engine.redis.tls]\n{ca}\ncert_pem = {:?}\nkey_pem = {:?}",
        client.cert_pem(),
        client.key_pem(),
    ));
    assert_works(gyre, redis);
}

#[test]
fn tls_wrong_ca_is_a_clear_start_error() {
    let pki = TestPki::new();
    let (_redis, port) = pki.redis(&pki.server(), false);
    let address = format!("rediss://127.0.0.1:{port}");
    let output = builder(std::slice::from_ref(&address))
        .extra_toml(&format!(
            "[engine.redis.tls]\nserver_ca_pem_file = {:?}",
            path(&pki.other_ca_cert())
        ))
        .start_failure(START_FAILURE);
    assert!(output.contains(&address), "names the address:\n{output}");
    assert!(
        output.contains("the server's TLS certificate is not trusted"),
        "says why:\n{output}"
    );
    assert!(
        output.contains("engine.redis.tls.server_ca_pem"),
        "names the key to fix:\n{output}"
    );
}

#[test]
fn tls_insecure_skip_verify_connects_and_warns() {
    let pki = TestPki::new();
    // A certificate for another name, signed by a CA gyre does not know: nothing is checked.
    let (redis, port) = pki.redis(&pki.named_server(), false);
    let gyre = builder(&[format!("rediss://127.0.0.1:{port}")])
        .extra_toml("[engine.redis.tls]\ninsecure_skip_verify = true");
    let env = assert_works(gyre, redis);
    let log = env.gyre.log();
    assert!(
        log.contains("engine.redis.tls.insecure_skip_verify is on"),
        "warns at start:\n{log}"
    );
}

#[test]
fn tls_server_name_checks_the_certificate_against_that_name() {
    let pki = TestPki::new();
    let (redis, port) = pki.redis(&pki.named_server(), false);
    // `tls.enabled` with a redis:// address; the CA as base64.
    let address = format!("redis://127.0.0.1:{port}");
    let ca_b64 = base64::engine::general_purpose::STANDARD
        .encode(std::fs::read(pki.ca_cert()).expect("read CA"));
    let tls = format!("[engine.redis.tls]\nenabled = true\nserver_ca_pem_b64 = {ca_b64:?}");

    // Connecting by IP to a certificate issued for a name only: refused, with the way out.
    let output = builder(std::slice::from_ref(&address))
        .extra_toml(&tls)
        .start_failure(START_FAILURE);
    assert!(
        output.contains("not valid for the host gyre connects to"),
        "says why:\n{output}"
    );
    assert!(
        output.contains("engine.redis.tls.server_name"),
        "names the key:\n{output}"
    );

    let gyre = builder(&[address]).extra_toml(&format!("{tls}\nserver_name = {TLS_SERVER_NAME:?}"));
    assert_works(gyre, redis);
}

/// The SDK's basic scenarios (receive with `redis-cli --tls`, presence and history, recovery),
/// JSON and Protobuf, against gyre on a Redis that speaks only TLS.
#[test]
fn tls_sdk_scenarios() {
    require_node_sdk();
    let pki = TestPki::new();
    let (redis, port) = pki.redis(&pki.server(), false);
    let ca = path(&pki.ca_cert());
    let gyre = SdkEnv::gyre_builder()
        .redis_urls(&[format!("rediss://127.0.0.1:{port}")])
        .extra_toml(&format!("[engine.redis.tls]\nserver_ca_pem_file = {ca:?}"))
        .start();
    for protocol in ["json", "protobuf"] {
        sdk_basic_scenarios(
            &gyre,
            protocol,
            &format!("{SDK_NS}:tls"),
            &[
                ("redis-port", port.to_string()),
                ("redis-tls-ca", ca.clone()),
            ],
        );
    }
    // Redis (which has no plain TCP port: `--port 0`) holds the three publications.
    let mut con = redis.connection();
    let history = redis_cmd(&mut con, &["GYRE.HISTORY", "chat:tls-receive-json"]);
    assert_eq!(as_int(&as_array(&history)[0]), 3, "API, redis-cli, client");
    drop(gyre);
}

#[test]
fn checkconfig_reads_the_pem_files() {
    let (ok, output) = GyreProcess::builder()
        .redis_urls(&["rediss://127.0.0.1:6390".into()])
        .extra_toml("[engine.redis.tls]\nserver_ca_pem_file = \"/nonexistent/ca.pem\"")
        .checkconfig();
    assert!(!ok, "{output}");
    assert!(
        output.contains("engine.redis.tls.server_ca_pem_file")
            && output.contains("/nonexistent/ca.pem"),
        "{output}"
    );
    let (ok, output) = GyreProcess::builder()
        .redis_urls(&["redis://127.0.0.1:6390".into()])
        .redis_option("cluster_address = [\"127.0.0.1:7000\"]")
        .redis_option("sentinel_address = [\"127.0.0.1:26379\"]")
        .redis_option("sentinel_master_name = \"gyre\"")
        .checkconfig();
    assert!(!ok, "{output}");
    for pair in [
        "`engine.redis.cluster_address` and `engine.redis.sentinel_address` cannot be used together",
        "`engine.redis.address` and `engine.redis.cluster_address` cannot be used together",
        "`engine.redis.address` and `engine.redis.sentinel_address` cannot be used together",
    ] {
        assert!(output.contains(pair), "{pair}:\n{output}");
    }
}
