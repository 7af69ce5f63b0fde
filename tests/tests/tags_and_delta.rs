//! Publication tags filters (`tf`, namespace `allow_tags_filter`) and fossil delta compression
//! (`delta: "fossil"`, namespace `allowed_delta_types` and `delta_publish`) through a real
//! `gyre`: a raw client checks the wire (codes, `delta` flags, patches that apply), and the
//! unmodified centrifuge-js SDK (JSON and Protobuf) decodes real deltas and filters with
//! `tagsFilter`.

use gyre_tests::ws_client::{Encoding, EngineKind, ProxyEnv, WAIT, WsClient};
use gyre_tests::*;
use serde_json::{Value, json};

/// `tags` (history, recovery, tags filters allowed), `notags` (the same without filters),
/// `deltas` (history, recovery, fossil deltas published; filters allowed too, to show that a
/// filter turns deltas off), `flagged` (deltas negotiable but not `delta_publish`: only
/// publications published with `delta: true` become patches).
const NAMESPACES: &str = r#"
[[channel.namespaces]]
name = "tags"
history_size = 100
history_ttl = "300s"
force_recovery = true
allow_subscribe_for_client = true
allow_tags_filter = true

[[channel.namespaces]]
name = "notags"
history_size = 100
history_ttl = "300s"
force_recovery = true
allow_subscribe_for_client = true

[[channel.namespaces]]
name = "deltas"
history_size = 100
history_ttl = "300s"
force_recovery = true
allow_subscribe_for_client = true
allowed_delta_types = ["fossil"]
delta_publish = true
allow_tags_filter = true

[[channel.namespaces]]
name = "flagged"
history_size = 100
history_ttl = "300s"
force_recovery = true
allow_subscribe_for_client = true
allowed_delta_types = ["fossil"]
"#;

fn env(engine: EngineKind) -> ProxyEnv {
    ProxyEnv::start(engine, GyreProcess::builder().extra_toml(NAMESPACES))
}

fn subscribe(client: &mut WsClient, id: u32, request: Value) -> Value {
    client.send_text(&json!({"id": id, "subscribe": request}).to_string());
    client.reply(id).json().clone()
}

fn publish_tagged(env: &ProxyEnv, channel: &str, data: Value, tags: Value) -> u64 {
    let reply = env.api(
        "publish",
        json!({"channel": channel, "data": data, "tags": tags}),
    );
    reply["result"]["offset"]
        .as_u64()
        .unwrap_or_else(|| panic!("publish: {reply}"))
}

#[test]
fn a_tags_filter_delivers_matching_publications_and_keeps_the_position() {
    let env = env(EngineKind::Memory);
    let mut client = env.client("alice");
    let reply = subscribe(
        &mut client,
        2,
        json!({"channel": "tags:q", "tf": {"key": "ticker", "cmp": "eq", "val": "AAPL"}}),
    );
    assert_eq!(reply["subscribe"]["recoverable"], true, "{reply}");
    let epoch = reply["subscribe"]["epoch"].as_str().unwrap().to_owned();
    for (i, ticker) in ["AAPL", "MSFT", "AAPL", "GOOG"].iter().enumerate() {
        publish_tagged(&env, "tags:q", json!({"i": i}), json!({"ticker": ticker}));
    }
    publish_tagged(&env, "tags:q", json!({"i": 4}), json!({}));
    let got = client.publications("tags:q", 2, WAIT);
    let offsets: Vec<u64> = got.iter().map(|m| m.publication().offset).collect();
    assert_eq!(offsets, [1, 3]);
    assert_eq!(got[1].json()["push"]["pub"]["data"], json!({"i": 2}));
    // The filtered publications moved the position: no gap, so no 2500 unsubscribe.
    publish_tagged(&env, "tags:q", json!({"i": 5}), json!({"ticker": "AAPL"}));
    let next = client.publications("tags:q", 1, WAIT);
    assert_eq!(next[0].publication().offset, 6);
    let others = client.drain();
    assert!(others.is_empty(), "unexpected: {:?}", others[0].reply);

    // Recovery returns only the matching publications after the position.
    let mut again = env.client("alice");
    let reply = subscribe(
        &mut again,
        2,
        json!({"channel": "tags:q", "recover": true, "offset": 1, "epoch": epoch,
               "tf": {"op": "or", "nodes": [
                   {"key": "ticker", "cmp": "eq", "val": "AAPL"},
                   {"key": "ticker", "cmp": "nex"}]}}),
    );
    let result = &reply["subscribe"];
    assert_eq!(result["recovered"], true, "{reply}");
    let recovered: Vec<u64> = result["publications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["offset"].as_u64().unwrap())
        .collect();
    assert_eq!(recovered, [3, 5, 6], "{reply}");
}

#[test]
fn a_tags_filter_needs_allow_tags_filter_and_a_valid_tree() {
    let env = env(EngineKind::Memory);
    let mut client = env.client("alice");
    let bad_request = json!({"code": 107, "message": "bad request"});
    let reply = subscribe(
        &mut client,
        2,
        json!({"channel": "notags:x", "tf": {"key": "k", "cmp": "eq", "val": "v"}}),
    );
    assert_eq!(reply["error"], bad_request, "{reply}");
    let invalid = [
        json!({"key": "k", "cmp": "eq"}),
        json!({"key": "k", "cmp": "like", "val": "v"}),
        json!({"cmp": "eq", "val": "v"}),
        json!({"key": "k", "cmp": "in", "vals": []}),
        json!({"key": "k", "cmp": "ex", "val": "v"}),
        json!({"op": "and", "nodes": []}),
        json!({"op": "not", "nodes": [{"key": "a", "cmp": "ex"}, {"key": "b", "cmp": "ex"}]}),
        json!({"op": "xor", "nodes": [{"key": "a", "cmp": "ex"}]}),
    ];
    for (i, tf) in invalid.into_iter().enumerate() {
        let id = 3 + i as u32;
        let reply = subscribe(&mut client, id, json!({"channel": "tags:x", "tf": tf}));
        assert_eq!(reply["error"], bad_request, "{tf}: {reply}");
    }
    // The connection is fine and nothing was left behind: the same channel subscribes.
    let reply = subscribe(
        &mut client,
        20,
        json!({"channel": "tags:x", "tf": {"key": "k", "cmp": "ex"}}),
    );
    assert!(reply.get("error").is_none(), "{reply}");
}

/// The data of a delta subscriber's publication: a JSON string (whole payload or patch).
fn string_data(publication: &Value) -> String {
    publication["data"]
        .as_str()
        .unwrap_or_else(|| panic!("data is not a JSON string: {publication}"))
        .to_owned()
}

fn board(turn: u32) -> Value {
    let cells: Vec<Value> = (0..40)
        .map(|i| json!({"cell": i, "mark": if (i + turn).is_multiple_of(13) { "X" } else { "." }}))
        .collect();
    json!({"turn": turn, "cells": cells, "title": "naïve café ☕"})
}

#[test]
fn fossil_deltas_are_negotiated_and_apply_to_the_previous_publication() {
    let env = env(EngineKind::Redis);
    let mut client = env.client("alice");
    let reply = subscribe(
        &mut client,
        2,
        json!({"channel": "deltas:board", "delta": "fossil"}),
    );
    assert_eq!(reply["subscribe"]["delta"], true, "{reply}");
    let docs: Vec<Value> = (1..=6).map(board).collect();
    for doc in &docs {
        env.publish("deltas:board", doc.clone());
    }
    let got = client.publications("deltas:board", docs.len(), WAIT);
    let mut previous: Option<Vec<u8>> = None;
    for (message, doc) in got.iter().zip(&docs) {
        let publication = &message.json()["push"]["pub"];
        let data = string_data(publication);
        let whole = if publication["delta"] == true {
            let base = previous
                .as_ref()
                .expect("a patch comes after a whole payload");
            assert!(data.len() < doc.to_string().len() / 2, "{data}");
            gyre_proto::fossil::apply(base, data.as_bytes(), 1 << 20).expect("the patch applies")
        } else {
            assert!(previous.is_none(), "only the first is whole: {publication}");
            data.into_bytes()
        };
        let decoded: Value = serde_json::from_slice(&whole).unwrap();
        assert_eq!(&decoded, doc);
        previous = Some(whole);
    }

    // Not negotiated: a namespace without allowed_delta_types, and a subscription with a tags
    // filter (both keep working, with plain payloads).
    let reply = subscribe(
        &mut client,
        3,
        json!({"channel": "tags:board", "delta": "fossil"}),
    );
    assert!(reply["subscribe"].get("delta").is_none(), "{reply}");
    let mut filtered = env.client("bob");
    let reply = subscribe(
        &mut filtered,
        2,
        json!({"channel": "deltas:board", "delta": "fossil", "tf": {"key": "k", "cmp": "nex"}}),
    );
    assert!(reply["subscribe"].get("delta").is_none(), "{reply}");
    env.publish("deltas:board", board(7));
    let plain = filtered.publications("deltas:board", 1, WAIT);
    assert_eq!(plain[0].json()["push"]["pub"]["data"], board(7));
}

/// The publish API's `delta` in a namespace without `delta_publish`: exactly the flagged
/// publications reach a delta subscriber as patches (once it holds a base), and they apply.
fn the_publish_delta_flag_patches_only_flagged_publications(engine: EngineKind) {
    let env = env(engine);
    let mut client = env.client("alice");
    let reply = subscribe(
        &mut client,
        2,
        json!({"channel": "flagged:doc", "delta": "fossil"}),
    );
    assert_eq!(reply["subscribe"]["delta"], true, "{reply}");
    let flags = [true, true, false, true, true];
    for (turn, flag) in (1..).zip(flags) {
        let reply = env.api(
            "publish",
            json!({"channel": "flagged:doc", "data": board(turn), "delta": flag}),
        );
        assert_eq!(reply["result"]["offset"], turn, "{reply}");
    }
    let got = client.publications("flagged:doc", flags.len(), WAIT);
    let mut previous: Option<Vec<u8>> = None;
    for ((message, flag), turn) in got.iter().zip(flags).zip(1..) {
        let publication = &message.json()["push"]["pub"];
        let data = string_data(publication);
        let patched = publication["delta"] == true;
        // The first one is whole whatever its flag: the client holds no base yet.
        assert_eq!(
            patched,
            flag && turn > 1,
            "publication {turn}: {publication}"
        );
        let whole = match (&previous, patched) {
            (Some(base), true) => gyre_proto::fossil::apply(base, data.as_bytes(), 1 << 20)
                .expect("the patch applies"),
            _ => data.into_bytes(),
        };
        assert_eq!(
            serde_json::from_slice::<Value>(&whole).unwrap(),
            board(turn)
        );
        previous = Some(whole);
    }
    // A subscriber that did not negotiate deltas gets every one of them whole.
    let mut plain = env.client("bob");
    subscribe(&mut plain, 2, json!({"channel": "flagged:doc"}));
    env.api(
        "publish",
        json!({"channel": "flagged:doc", "data": board(6), "delta": true}),
    );
    let got = plain.publications("flagged:doc", 1, WAIT);
    assert_eq!(got[0].json()["push"]["pub"]["data"], board(6));
}

gyre_tests::on_both_engines! {
    the_publish_delta_flag_patches_only_flagged_publications,
}

#[test]
fn recovered_publications_of_a_delta_subscriber_chain_from_a_whole_one() {
    let env = env(EngineKind::Memory);
    let mut client = env.client("alice");
    let reply = subscribe(
        &mut client,
        2,
        json!({"channel": "deltas:r", "delta": "fossil"}),
    );
    let epoch = reply["subscribe"]["epoch"].as_str().unwrap().to_owned();
    let docs: Vec<Value> = (1..=4).map(board).collect();
    for doc in &docs {
        env.publish("deltas:r", doc.clone());
    }
    client.publications("deltas:r", docs.len(), WAIT);
    let mut again = WsClient::connect(&env.ws_url(), Encoding::Json);
    again.send_text(&json!({"id": 1, "connect": {"token": env.token("alice")}}).to_string());
    again.reply(1);
    let reply = subscribe(
        &mut again,
        2,
        json!({"channel": "deltas:r", "delta": "fossil", "recover": true, "offset": 1,
               "epoch": epoch}),
    );
    let result = &reply["subscribe"];
    assert_eq!(
        (&result["recovered"], &result["delta"]),
        (&json!(true), &json!(true))
    );
    let publications = result["publications"].as_array().unwrap();
    assert_eq!(publications.len(), 3, "{reply}");
    assert!(publications[0].get("delta").is_none(), "the first is whole");
    let mut base = string_data(&publications[0]).into_bytes();
    assert_eq!(serde_json::from_slice::<Value>(&base).unwrap(), docs[1]);
    for (publication, doc) in publications[1..].iter().zip(&docs[2..]) {
        assert_eq!(publication["delta"], true, "{publication}");
        base =
            gyre_proto::fossil::apply(&base, string_data(publication).as_bytes(), 1 << 20).unwrap();
        assert_eq!(&serde_json::from_slice::<Value>(&base).unwrap(), doc);
    }
    // The client holds the last recovered document: the next live one is a patch against it.
    env.publish("deltas:r", board(5));
    let live = again.publications("deltas:r", 1, WAIT);
    let publication = &live[0].json()["push"]["pub"];
    assert_eq!(publication["delta"], true, "{publication}");
    let next = gyre_proto::fossil::apply(&base, string_data(publication).as_bytes(), 1 << 20);
    assert_eq!(
        serde_json::from_slice::<Value>(&next.unwrap()).unwrap(),
        board(5)
    );
}

// ------------------------------------------------------------------------------------------------
// centrifuge-js.

fn sdk_env() -> SdkEnv {
    SdkEnv::redis_configured(|builder| builder.extra_toml(NAMESPACES))
}

fn sdk_env_on(engine: EngineKind) -> SdkEnv {
    match engine {
        EngineKind::Redis => sdk_env(),
        EngineKind::Memory => SdkEnv {
            gyre: SdkEnv::gyre_builder()
                .extra_toml(NAMESPACES)
                .memory()
                .start(),
            redis: None,
        },
    }
}

/// centrifuge-js in a namespace without `delta_publish`, every publication sent with the
/// publish API's `delta: true`: the SDK gets patches (its own counters say so) and decodes every
/// document intact, live and after recovery.
fn sdk_delta_flag(protocol: &str, engine: EngineKind) {
    let env = sdk_env_on(engine);
    let r = SdkScript::node("delta.mjs")
        .gyre(&env.gyre)
        .arg("protocol", protocol)
        .arg("channel", format!("flagged:doc-{protocol}"))
        .arg("publish-delta", "true")
        .run()
        .json();
    assert_eq!(r["ok"], true, "{r}");
    let received: Vec<&Value> = r["received"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| &p["data"])
        .collect();
    let published: Vec<&Value> = r["published"].as_array().unwrap().iter().collect();
    assert_eq!(received.len(), 30, "{r}");
    assert_eq!(
        received, published,
        "every document arrives intact, in order"
    );
    assert_eq!(r["subscribedAgain"]["recovered"], true, "{r}");
    assert_eq!(r["statsLive"]["numFullPayloads"], 1, "{r}");
    assert_eq!(r["statsLive"]["numDeltaPayloads"], 19, "{r}");
    assert_eq!(r["stats"]["numFullPayloads"], 2, "{r}");
}

fn sdk_delta(protocol: &str) {
    let env = sdk_env();
    let r = SdkScript::node("delta.mjs")
        .gyre(&env.gyre)
        .arg("protocol", protocol)
        .arg("channel", format!("deltas:doc-{protocol}"))
        .run()
        .json();
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(r["received"].as_array().unwrap().len(), 30, "{r}");
    let received: Vec<&Value> = r["received"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| &p["data"])
        .collect();
    let published: Vec<&Value> = r["published"].as_array().unwrap().iter().collect();
    assert_eq!(
        received, published,
        "every document arrives intact, in order"
    );
    assert_eq!(r["subscribedAgain"]["recovered"], true, "{r}");
    // Deltas were really used: live, after the first whole one, and after recovery.
    let live = &r["statsLive"];
    assert_eq!(live["numFullPayloads"], 1, "{r}");
    assert_eq!(live["numDeltaPayloads"], 19, "{r}");
    let all = &r["stats"];
    assert_eq!(all["numPublications"], 30, "{r}");
    // After the reconnect: the first recovered one is whole, everything else is a patch.
    assert_eq!(all["numFullPayloads"], 2, "{r}");
}

fn sdk_tags_filter(protocol: &str) {
    let env = sdk_env();
    let r = SdkScript::node("tags_filter.mjs")
        .gyre(&env.gyre)
        .arg("protocol", protocol)
        .arg("channel", format!("tags:quotes-{protocol}"))
        .arg("refused", format!("notags:quotes-{protocol}"))
        .run()
        .json();
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(r["aliceGot"], json!([0, 3, 6]), "{r}");
    assert_eq!(r["bobGot"], json!([0, 1, 2, 3, 4, 5, 6]), "{r}");
    assert_eq!(r["refused"]["code"], 107, "{r}");
}

/// centrifuge-python applies the deltas too (its own fossil decoder).
fn python_delta(protocol: &str) {
    let env = sdk_env();
    let r = SdkScript::python("delta.py")
        .gyre(&env.gyre)
        .arg("protocol", protocol)
        .arg("channel", format!("deltas:py-{protocol}"))
        .run()
        .json();
    assert_eq!(r["ok"], true, "{r}");
    let received: Vec<&Value> = r["received"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| &p["data"])
        .collect();
    let published: Vec<&Value> = r["published"].as_array().unwrap().iter().collect();
    assert_eq!(received.len(), 16, "{r}");
    assert_eq!(
        received, published,
        "every document arrives intact, in order"
    );
    assert_eq!(r["subscribedAgain"]["recovered"], true, "{r}");
}

mod sdk {
    #[test]
    fn python_delta_json() {
        gyre_tests::require_python_sdk();
        super::python_delta("json");
    }

    #[test]
    fn python_delta_protobuf() {
        gyre_tests::require_python_sdk();
        super::python_delta("protobuf");
    }

    #[test]
    fn delta_flag_json_redis() {
        gyre_tests::require_node_sdk();
        super::sdk_delta_flag("json", super::EngineKind::Redis);
    }

    #[test]
    fn delta_flag_protobuf_redis() {
        gyre_tests::require_node_sdk();
        super::sdk_delta_flag("protobuf", super::EngineKind::Redis);
    }

    #[test]
    fn delta_flag_json_memory() {
        gyre_tests::require_node_sdk();
        super::sdk_delta_flag("json", super::EngineKind::Memory);
    }

    #[test]
    fn delta_json() {
        gyre_tests::require_node_sdk();
        super::sdk_delta("json");
    }

    #[test]
    fn delta_protobuf() {
        gyre_tests::require_node_sdk();
        super::sdk_delta("protobuf");
    }

    #[test]
    fn tags_filter_json() {
        gyre_tests::require_node_sdk();
        super::sdk_tags_filter("json");
    }

    #[test]
    fn tags_filter_protobuf() {
        gyre_tests::require_node_sdk();
        super::sdk_tags_filter("protobuf");
    }
}

#[test]
fn the_keys_pass_checkconfig() {
    let (ok, text) = checkconfig_toml(NAMESPACES);
    assert!(ok, "{text}");
    let (ok, text) = checkconfig_toml(
        "[[channel.namespaces]]\nname = \"d\"\nallowed_delta_types = [\"xdelta\"]\n",
    );
    assert!(!ok);
    assert!(
        text.contains("channel.namespaces[0].allowed_delta_types[0]"),
        "{text}"
    );
}
