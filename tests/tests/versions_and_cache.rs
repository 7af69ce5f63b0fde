//! Versioned publications (the publish API's `version` and `version_epoch`) and cache recovery
//! (namespace `force_recovery_mode = "cache"`) through a real `gyre`, on both engines: a raw
//! client checks the wire (replies, pushes, offsets).

use gyre_tests::ws_client::{EngineKind, ProxyEnv, WAIT, WsClient};
use gyre_tests::*;
use serde_json::{Value, json};

/// `docs` (history, recovery: versions are checked), `nohistory` (versions cannot be checked),
/// `cells` (cache recovery: a recovering subscriber gets the latest publication only).
const NAMESPACES: &str = r#"
[[channel.namespaces]]
name = "docs"
history_size = 100
history_ttl = "300s"
force_recovery = true
allow_subscribe_for_client = true

[[channel.namespaces]]
name = "nohistory"
allow_subscribe_for_client = true

[[channel.namespaces]]
name = "cells"
history_size = 1
history_ttl = "300s"
force_recovery = true
force_recovery_mode = "cache"
allow_subscribe_for_client = true
"#;

fn env(engine: EngineKind) -> ProxyEnv {
    ProxyEnv::start(engine, GyreProcess::builder().extra_toml(NAMESPACES))
}

fn subscribe(client: &mut WsClient, id: u32, request: Value) -> Value {
    client.send_text(&json!({"id": id, "subscribe": request}).to_string());
    client.reply(id).json().clone()
}

fn publish_versioned(env: &ProxyEnv, channel: &str, version: u64, epoch: &str) -> Value {
    env.api(
        "publish",
        json!({"channel": channel, "data": {"v": version, "e": epoch}, "version": version,
               "version_epoch": epoch}),
    )
}

/// A publication whose version is not newer than the channel's (same version epoch) is skipped:
/// the reply is a success without offset and epoch (it took no position), and subscribers never
/// see it; a new version epoch starts over.
fn versions_skip_what_is_not_newer(engine: EngineKind) {
    let env = env(engine);
    let mut client = env.client("alice");
    let reply = subscribe(&mut client, 2, json!({"channel": "docs:a"}));
    assert!(reply.get("error").is_none(), "{reply}");

    let first = publish_versioned(&env, "docs:a", 5, "");
    assert_eq!(first["result"]["offset"], 1, "{first}");
    let epoch = first["result"]["epoch"].as_str().unwrap().to_owned();
    for stale in [5, 3] {
        let skipped = publish_versioned(&env, "docs:a", stale, "");
        assert_eq!(skipped, json!({"result": {}}), "version {stale}");
    }
    let newer = publish_versioned(&env, "docs:a", 6, "");
    assert_eq!(newer["result"], json!({"offset": 2, "epoch": epoch}));
    let reset = publish_versioned(&env, "docs:a", 1, "day2");
    assert_eq!(reset["result"]["offset"], 3, "a new version epoch: {reset}");
    let skipped = publish_versioned(&env, "docs:a", 1, "day2");
    assert_eq!(skipped, json!({"result": {}}));

    let got = client.publications("docs:a", 3, WAIT);
    let seen: Vec<(u64, Value)> = got
        .iter()
        .map(|m| {
            (
                m.publication().offset,
                m.json()["push"]["pub"]["data"]["v"].clone(),
            )
        })
        .collect();
    assert_eq!(seen, [(1, json!(5)), (2, json!(6)), (3, json!(1))]);
    let history = env.api("history", json!({"channel": "docs:a", "limit": -1}));
    assert_eq!(
        history["result"]["publications"].as_array().unwrap().len(),
        3,
        "{history}"
    );
    // Nothing else arrives: the marker is the next publication the client gets.
    env.publish("docs:a", json!("marker"));
    let next = client.publications("docs:a", 1, WAIT);
    assert_eq!(next[0].json()["push"]["pub"]["data"], "marker");

    // broadcast answers per channel the same way.
    let reply = env.api(
        "broadcast",
        json!({"channels": ["docs:a", "docs:b"], "data": {"v": 1}, "version": 1,
               "version_epoch": "day2"}),
    );
    let responses = &reply["result"]["responses"];
    assert_eq!(responses[0], json!({"result": {}}), "{reply}");
    assert_eq!(responses[1]["result"]["offset"], 1, "{reply}");

    // Without history nothing is stored to compare with: every publication goes out.
    let mut bob = env.client("bob");
    subscribe(&mut bob, 2, json!({"channel": "nohistory:a"}));
    for _ in 0..2 {
        let reply = publish_versioned(&env, "nohistory:a", 1, "");
        assert_eq!(reply, json!({"result": {}}));
    }
    assert_eq!(bob.publications("nohistory:a", 2, WAIT).len(), 2);
}

/// A client that missed publications of a cache-mode channel gets only the latest one on
/// resubscribe, `recovered: true`, and then the live ones; without a publication to give it is
/// told `recovered: false`; and a client that already holds the latest gets nothing again.
fn cache_recovery_gives_only_the_latest_publication(engine: EngineKind) {
    let env = env(engine);
    let mut first = env.client("alice");
    // Nothing published yet: nothing to recover, as Centrifugo says.
    let reply = subscribe(
        &mut first,
        2,
        json!({"channel": "cells:now", "recover": true}),
    );
    let result = &reply["subscribe"];
    assert_eq!(result["was_recovering"], true, "{reply}");
    assert!(result.get("recovered").is_none(), "{reply}");
    let (offset, epoch) = env.publish("cells:now", json!({"song": 1}));
    assert_eq!(offset, 1);
    first.publications("cells:now", 1, WAIT);
    drop(first);

    for song in 2..=6 {
        env.publish("cells:now", json!({"song": song}));
    }
    let mut again = env.client("alice");
    let reply = subscribe(
        &mut again,
        2,
        json!({"channel": "cells:now", "recover": true, "offset": 1, "epoch": epoch}),
    );
    let result = &reply["subscribe"];
    assert_eq!(result["recovered"], true, "{reply}");
    assert_eq!(result["offset"], 6, "{reply}");
    let publications = result["publications"].as_array().unwrap();
    assert_eq!(publications.len(), 1, "only the latest: {reply}");
    assert_eq!(publications[0]["data"], json!({"song": 6}));
    assert_eq!(publications[0]["offset"], 6);
    env.publish("cells:now", json!({"song": 7}));
    let live = again.publications("cells:now", 1, WAIT);
    assert_eq!(live[0].publication().offset, 7);

    // A client at the top already: recovered, nothing sent twice.
    let mut current = env.client("alice");
    let reply = subscribe(
        &mut current,
        2,
        json!({"channel": "cells:now", "recover": true, "offset": 7, "epoch": epoch}),
    );
    assert_eq!(reply["subscribe"]["recovered"], true, "{reply}");
    assert!(reply["subscribe"].get("publications").is_none(), "{reply}");

    // A stream-mode namespace still replays every missed publication.
    for n in 1..=3 {
        env.publish("docs:stream", json!({"n": n}));
    }
    let mut streamed = env.client("alice");
    let reply = subscribe(
        &mut streamed,
        2,
        json!({"channel": "docs:stream", "recover": true, "offset": 0, "epoch": ""}),
    );
    let recovered = reply["subscribe"]["publications"].as_array().unwrap();
    assert_eq!(recovered.len(), 3, "{reply}");
}

gyre_tests::on_both_engines! {
    versions_skip_what_is_not_newer,
    cache_recovery_gives_only_the_latest_publication,
}

/// centrifuge-js, unmodified, on a cache-mode channel (Redis engine): the first subscribe with
/// `since: {}` and the resubscribe after 5 missed publications each deliver only the latest one,
/// with `recovered: true`; the live ones arrive in between and after.
fn sdk_cache_recovery(protocol: &str) {
    let env = SdkEnv::redis_configured(|builder| builder.extra_toml(NAMESPACES));
    let r = SdkScript::node("cache_recovery.mjs")
        .gyre(&env.gyre)
        .arg("protocol", protocol)
        .arg("channel", format!("cells:sdk-{protocol}"))
        .arg("count", 5)
        .run()
        .json();
    assert_eq!(r["ok"], true, "{r}");
    let received: Vec<(&Value, &Value)> = r["received"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (&p["data"]["n"], &p["offset"]))
        .collect();
    // 3 published before the first subscribe, 1 live, 5 missed, 1 live.
    assert_eq!(
        received,
        [
            (&json!(3), &json!(3)),
            (&json!(4), &json!(4)),
            (&json!(9), &json!(9)),
            (&json!(10), &json!(10))
        ],
        "{r}"
    );
    for subscribed in [&r["subscribedFirst"], &r["subscribedAgain"]] {
        assert_eq!(subscribed["wasRecovering"], true, "{r}");
        assert_eq!(subscribed["recovered"], true, "{r}");
    }
}

mod sdk {

    #[test]
    fn cache_recovery_json() {
        gyre_tests::require_node_sdk();
        super::sdk_cache_recovery("json");
    }

    #[test]
    fn cache_recovery_protobuf() {
        gyre_tests::require_node_sdk();
        super::sdk_cache_recovery("protobuf");
    }
}

#[test]
fn force_recovery_mode_passes_checkconfig_and_bad_values_are_refused() {
    let (ok, text) = checkconfig_toml(NAMESPACES);
    assert!(ok, "{text}");
    let (ok, text) = checkconfig_toml(
        "[[channel.namespaces]]\nname = \"c\"\nforce_recovery_mode = \"latest\"\n",
    );
    assert!(!ok);
    assert!(
        text.contains("channel.namespaces[0].force_recovery_mode"),
        "{text}"
    );
}
