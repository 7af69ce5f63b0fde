//! `gyre` against a Redis that requires a password: an ACL user with its password, given by the
//! `engine.redis.user`/`password` keys or in the address URL, and `requirepass` for the default
//! user. A wrong or missing password is a clear start error that never shows the password.
//! The unmodified centrifuge-js SDK (JSON and Protobuf) runs its basic scenarios against a gyre
//! that is such an ACL user: publications from the API, `redis-cli --user … GYRE.PUBLISH` and a
//! client, presence, history and recovery.

use std::time::Duration;

use gyre_tests::ws_client::{EngineKind, ProxyEnv, WAIT, cmd};
use gyre_tests::{
    GyreBuilder, GyreProcess, Namespace, RedisServer, SDK_NS, SdkEnv, cmd as redis_cmd,
    require_node_sdk, sdk_basic_scenarios,
};
use serde_json::json;

const USER: &str = "gyre";
const PASSWORD: &str = "gyre-acl-secret";
const DEFAULT_PASSWORD: &str = "default-user-secret";
const WRONG_PASSWORD: &str = "not-the-password-42";
const START_FAILURE: Duration = Duration::from_secs(15);

/// A Redis (TCP) where `gyre` is an ACL user with [`PASSWORD`] and the default user needs
/// [`DEFAULT_PASSWORD`]. Set after the start: the harness checks readiness without a password.
fn protected_redis() -> RedisServer {
    let redis = RedisServer::builder().tcp().start();
    let mut con = redis.connection();
    redis_cmd(
        &mut con,
        &[
            "ACL",
            "SETUSER",
            USER,
            "on",
            &format!(">{PASSWORD}"),
            "~*",
            "&*",
            "+@all",
        ],
    );
    redis_cmd(
        &mut con,
        &["CONFIG", "SET", "requirepass", DEFAULT_PASSWORD],
    );
    redis
}

fn builder(urls: &[String]) -> GyreBuilder {
    GyreProcess::builder()
        .namespace(Namespace::full("chat", 100, 300))
        .redis_urls(urls)
}

/// The users of the clients connected to `redis`, per `CLIENT LIST` (as `default`).
fn client_users(redis: &RedisServer) -> Vec<String> {
    let mut con = redis.connection();
    redis_cmd(&mut con, &["AUTH", DEFAULT_PASSWORD]);
    let list = redis_cmd(&mut con, &["CLIENT", "LIST"]);
    let text = match list {
        gyre_tests::Value::BulkString(b) => String::from_utf8_lossy(&b).into_owned(),
        gyre_tests::Value::VerbatimString { text, .. } => text,
        other => panic!("CLIENT LIST answered {other:?}"),
    };
    text.lines()
        .filter_map(|line| line.split(' ').find_map(|f| f.strip_prefix("user=")))
        .map(str::to_owned)
        .collect()
}

fn assert_works(builder: GyreBuilder, redis: RedisServer) -> ProxyEnv {
    let env = ProxyEnv {
        gyre: builder.start(),
        redis: Some(redis),
        engine: EngineKind::Redis,
    };
    let mut client = env.client("alice");
    client.call(cmd::subscribe(1, "chat:acl"));
    assert_eq!(env.publish("chat:acl", json!({"n": 1})).0, 1);
    client.publications("chat:acl", 1, WAIT);
    env
}

#[test]
fn acl_user_from_the_keys() {
    let redis = protected_redis();
    let port = redis.port().unwrap();
    let env = assert_works(
        builder(&[format!("redis://127.0.0.1:{port}")])
            .redis_option(&format!("user = {USER:?}"))
            .redis_option(&format!("password = {PASSWORD:?}")),
        redis,
    );
    let users = client_users(env.redis.as_ref().unwrap());
    // The command and subscription connections, as the ACL user.
    assert!(
        users.iter().filter(|u| *u == USER).count() >= 2,
        "{users:?}"
    );
}

#[test]
fn acl_user_from_the_url_wins_over_the_keys() {
    let redis = protected_redis();
    let port = redis.port().unwrap();
    let env = assert_works(
        builder(&[format!("redis://{USER}:{PASSWORD}@127.0.0.1:{port}")])
            // Wrong, but the URL's credentials come first.
            .redis_option(&format!("password = {WRONG_PASSWORD:?}")),
        redis,
    );
    let users = client_users(env.redis.as_ref().unwrap());
    assert!(
        users.iter().filter(|u| *u == USER).count() >= 2,
        "{users:?}"
    );
}

/// The SDK's basic scenarios (receive with `redis-cli --user gyre --pass …`, presence and
/// history, recovery), JSON and Protobuf, with gyre connecting as the ACL user.
#[test]
fn acl_user_sdk_scenarios() {
    require_node_sdk();
    let redis = protected_redis();
    let port = redis.port().unwrap();
    let gyre = SdkEnv::gyre_builder()
        .redis_urls(&[format!("redis://127.0.0.1:{port}")])
        .redis_option(&format!("user = {USER:?}"))
        .redis_option(&format!("password = {PASSWORD:?}"))
        .start();
    for protocol in ["json", "protobuf"] {
        sdk_basic_scenarios(
            &gyre,
            protocol,
            &format!("{SDK_NS}:acl"),
            &[
                ("redis-port", port.to_string()),
                ("redis-user", USER.to_owned()),
                ("redis-password", PASSWORD.to_owned()),
            ],
        );
    }
    let users = client_users(&redis);
    assert!(
        users.iter().filter(|u| *u == USER).count() >= 2,
        "gyre's connections are the ACL user's: {users:?}"
    );
    assert!(!gyre.log().contains(PASSWORD), "{}", gyre.log());
    drop(gyre);
}

#[test]
fn default_user_with_requirepass() {
    let redis = protected_redis();
    let port = redis.port().unwrap();
    assert_works(
        builder(&[format!("redis://127.0.0.1:{port}")])
            .redis_option(&format!("password = {DEFAULT_PASSWORD:?}")),
        redis,
    );
}

#[test]
fn wrong_or_missing_password_is_a_clear_start_error_without_the_password() {
    let redis = protected_redis();
    let port = redis.port().unwrap();

    let output = builder(&[format!("redis://127.0.0.1:{port}")])
        .redis_option(&format!("user = {USER:?}"))
        .redis_option(&format!("password = {WRONG_PASSWORD:?}"))
        .start_failure(START_FAILURE);
    assert!(
        output.contains(&format!(
            "redis redis://127.0.0.1:{port}: authentication failed"
        )),
        "names the address and the reason:\n{output}"
    );
    assert!(
        !output.contains(WRONG_PASSWORD),
        "shows the password:\n{output}"
    );

    let output = builder(&[format!("redis://{USER}:{WRONG_PASSWORD}@127.0.0.1:{port}")])
        .start_failure(START_FAILURE);
    assert!(
        output.contains(&format!("redis://{USER}:***@127.0.0.1:{port}")),
        "names the address, password hidden:\n{output}"
    );
    assert!(output.contains("authentication failed"), "{output}");
    assert!(
        !output.contains(WRONG_PASSWORD),
        "shows the password:\n{output}"
    );

    let output = builder(&[format!("redis://127.0.0.1:{port}")]).start_failure(START_FAILURE);
    assert!(
        output.contains("the server requires a password: set engine.redis.password"),
        "{output}"
    );
}
