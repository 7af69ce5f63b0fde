//! The HTTP server API of `gyre` (`POST /api/<method>`,
//! docs/protocol.md#server-api-and-the-client-protocol): authentication, every implemented method's
//! request and response shape, and errors. Run on both engines.

use std::time::{Duration, Instant};

use gyre_tests::ws_client::{EngineKind, ProxyEnv, WAIT, cmd, hs256_token, unix_now};
use gyre_tests::{GyreProcess, Namespace, http_request, http_request_with_timeout, wait_until};
use serde_json::{Value, json};

fn env(engine: EngineKind) -> ProxyEnv {
    ProxyEnv::start(
        engine,
        GyreProcess::builder()
            .namespace(Namespace::full("chat", 100, 300))
            .namespace(
                Namespace::new("plain")
                    .allow_subscribe()
                    .allow_publish()
                    .allow_history()
                    .allow_presence(),
            ),
    )
}

/// POST without going through `GyreProcess::api` (which insists on HTTP 200).
fn post(env: &ProxyEnv, path: &str, headers: &[(&str, &str)], body: &str) -> (u16, String) {
    http_request(env.gyre.port(), "POST", path, headers, body.as_bytes())
        .unwrap_or_else(|e| panic!("POST {path}: {e}"))
}

/// POST `/api/<method>` with the API key, whatever the status.
fn post_api(env: &ProxyEnv, method: &str, body: &str) -> (u16, String) {
    let key = env.gyre.api_key();
    post(env, &format!("/api/{method}"), &[("X-API-Key", key)], body)
}

/// The `replies` of a batch answer.
fn batch_replies(reply: &Value) -> &Vec<Value> {
    reply["replies"]
        .as_array()
        .unwrap_or_else(|| panic!("no replies in {reply}"))
}

fn authentication(engine: EngineKind) {
    let env = env(engine);
    let body = r#"{"channel":"chat:auth","data":{"n":1}}"#;
    let key = env.gyre.api_key().to_owned();
    assert_eq!(post(&env, "/api/publish", &[], body).0, 401, "no key");
    assert_eq!(
        post(&env, "/api/publish", &[("X-API-Key", "wrong")], body).0,
        401,
        "wrong key"
    );
    let ok = |(status, text): (u16, String)| {
        assert_eq!(status, 200, "{text}");
        let reply: Value = serde_json::from_str(&text).unwrap();
        assert!(reply["result"]["offset"].is_u64(), "{reply}");
    };
    ok(post(&env, "/api/publish", &[("X-API-Key", &key)], body));
    ok(post(
        &env,
        "/api/publish",
        &[("Authorization", &format!("apikey {key}"))],
        body,
    ));
    ok(post(
        &env,
        &format!("/api/publish?api_key={key}"),
        &[],
        body,
    ));
    assert_eq!(
        env.api("history", json!({"channel": "chat:auth"}))["result"]["offset"],
        3
    );
}

fn publish_broadcast_history(engine: EngineKind) {
    let env = env(engine);
    let mut client = env.client("alice");
    client.send(&[cmd::subscribe(1, "chat:h"), cmd::subscribe(2, "chat:h2")]);
    client.reply(1);
    client.reply(2);

    // publish: offset + epoch with history; `{}` without.
    let reply = env.api("publish", json!({"channel": "chat:h", "data": {"n": 1}}));
    let epoch = reply["result"]["epoch"].as_str().expect("epoch").to_owned();
    assert_eq!(reply, json!({"result": {"offset": 1, "epoch": epoch}}));
    assert_eq!(
        env.api("publish", json!({"channel": "plain:x", "data": {"n": 1}})),
        json!({"result": {}})
    );
    assert_eq!(
        env.api("publish", json!({"channel": "nope:x", "data": {}})),
        json!({"error": {"code": 102, "message": "unknown channel"}})
    );
    // tags travel to subscribers.
    env.api(
        "publish",
        json!({"channel": "chat:h", "data": {"n": 2}, "tags": {"k": "v"}}),
    );

    // broadcast: one response per channel, in order, errors inline.
    let reply = env.api(
        "broadcast",
        json!({"channels": ["chat:h", "chat:h2", "nope:x"], "data": {"n": 3}}),
    );
    let responses = reply["result"]["responses"].as_array().expect("responses");
    assert_eq!(responses.len(), 3, "{reply}");
    assert_eq!(responses[0]["result"]["offset"], 3);
    assert_eq!(responses[0]["result"]["epoch"], epoch.as_str());
    assert_eq!(responses[1]["result"]["offset"], 1);
    assert_eq!(
        responses[2],
        json!({"error": {"code": 102, "message": "unknown channel"}})
    );

    let pubs = client.publications("chat:h", 3, WAIT);
    let json: Vec<&Value> = pubs.iter().map(|p| &p.json()["push"]["pub"]).collect();
    assert_eq!(json[0], &json!({"data": {"n": 1}, "offset": 1}));
    assert_eq!(
        json[1],
        &json!({"data": {"n": 2}, "offset": 2, "tags": {"k": "v"}})
    );
    assert_eq!(json[2], &json!({"data": {"n": 3}, "offset": 3}));
    assert_eq!(
        client.publications("chat:h2", 1, WAIT)[0]
            .publication()
            .offset,
        1
    );

    // history: all, limit, reverse, since, position only.
    let history = |body: Value| env.api("history", body)["result"].clone();
    let offsets = |result: &Value| -> Vec<u64> {
        result["publications"]
            .as_array()
            .map(|a| a.iter().map(|p| p["offset"].as_u64().unwrap()).collect())
            .unwrap_or_default()
    };
    let all = history(json!({"channel": "chat:h", "limit": -1}));
    assert_eq!(
        (all["offset"].as_u64(), all["epoch"].as_str()),
        (Some(3), Some(epoch.as_str()))
    );
    assert_eq!(offsets(&all), [1, 2, 3]);
    assert_eq!(
        all["publications"][1],
        json!({"data": {"n": 2}, "offset": 2, "tags": {"k": "v"}})
    );
    assert_eq!(
        offsets(&history(json!({"channel": "chat:h", "limit": 2}))),
        [1, 2]
    );
    assert_eq!(
        offsets(&history(
            json!({"channel": "chat:h", "limit": 2, "reverse": true})
        )),
        [3, 2]
    );
    assert_eq!(
        offsets(&history(
            json!({"channel": "chat:h", "limit": -1, "since": {"offset": 1, "epoch": epoch}})
        )),
        [2, 3]
    );
    let position = history(json!({"channel": "chat:h"}));
    assert_eq!(offsets(&position), [0u64; 0], "limit 0: position only");
    assert_eq!(position["offset"], 3);
    assert_eq!(
        env.api(
            "history",
            json!({"channel": "chat:h", "limit": -1, "since": {"offset": 1, "epoch": "wrongepo"}})
        ),
        json!({"error": {"code": 112, "message": "unrecoverable position"}})
    );
    assert_eq!(
        env.api("history", json!({"channel": "plain:x"})),
        json!({"error": {"code": 108, "message": "not available"}})
    );

    // history_remove: publications go, the position stays.
    assert_eq!(
        env.api("history_remove", json!({"channel": "chat:h"})),
        json!({"result": {}})
    );
    let after = history(json!({"channel": "chat:h", "limit": -1}));
    assert_eq!(offsets(&after), [0u64; 0], "{after}");
    assert_eq!(
        (after["offset"].as_u64(), after["epoch"].as_str()),
        (Some(3), Some(epoch.as_str()))
    );
    let reply = env.api("publish", json!({"channel": "chat:h", "data": {"n": 4}}));
    assert_eq!(
        reply["result"]["offset"], 4,
        "offsets continue after history_remove"
    );
}

fn presence_channels_info(engine: EngineKind) {
    let env = env(engine);
    let secret = env.gyre.hmac_secret().to_owned();
    let token = |user: &str, info: Option<Value>| {
        let mut claims = json!({"sub": user, "exp": unix_now() + 3600});
        if let Some(info) = info {
            claims["info"] = info;
        }
        hs256_token(&secret, &claims)
    };
    let mut clients = Vec::new();
    let mut ids = Vec::new();
    for (user, info) in [
        ("alice", Some(json!({"name": "Alice"}))),
        ("alice", None),
        ("bob", None),
    ] {
        let mut client = gyre_tests::ws_client::WsClient::connect(
            &env.ws_url(),
            gyre_tests::ws_client::Encoding::Json,
        );
        let reply = client.call(cmd::connect(0, &token(user, info)));
        ids.push(reply.connect.unwrap().client);
        client.send(&[cmd::subscribe(1, "chat:p")]);
        client.reply(1);
        clients.push(client);
    }
    clients[2].send(&[cmd::subscribe(2, "plain:q")]);
    clients[2].reply(2);

    let presence = env.api("presence", json!({"channel": "chat:p"}));
    assert_eq!(
        presence,
        json!({"result": {"presence": {
            ids[0].clone(): {"client": ids[0], "user": "alice", "conn_info": {"name": "Alice"}},
            ids[1].clone(): {"client": ids[1], "user": "alice"},
            ids[2].clone(): {"client": ids[2], "user": "bob"},
        }}})
    );
    assert_eq!(
        env.api("presence_stats", json!({"channel": "chat:p"})),
        json!({"result": {"num_clients": 3, "num_users": 2}})
    );
    assert_eq!(
        env.api("presence", json!({"channel": "plain:q"})),
        json!({"error": {"code": 108, "message": "not available"}})
    );
    assert_eq!(
        env.api("channels", json!({})),
        json!({"result": {"channels": {"chat:p": {"num_clients": 3}, "plain:q": {"num_clients": 1}}}})
    );
    let info = env.api("info", json!({}));
    let nodes = info["result"]["nodes"].as_array().expect("nodes");
    assert_eq!(nodes.len(), 1, "{info}");
    assert!(!nodes[0]["uid"].as_str().unwrap_or("").is_empty(), "{info}");
    assert!(
        !nodes[0]["name"].as_str().unwrap_or("").is_empty(),
        "{info}"
    );
    assert_eq!(nodes[0]["num_clients"], 3, "{info}");
    assert_eq!(nodes[0]["num_channels"], 2, "{info}");

    // bob leaves: presence and channels follow.
    drop(clients.pop());
    wait_until(Duration::from_secs(5), "bob's presence removed", || {
        env.api("presence_stats", json!({"channel": "chat:p"}))
            == json!({"result": {"num_clients": 2, "num_users": 1}})
    });
    wait_until(Duration::from_secs(5), "plain:q gone from channels", || {
        env.api("channels", json!({}))
            == json!({"result": {"channels": {"chat:p": {"num_clients": 2}}}})
    });
}

/// `info` reports the node fields Centrifugo's does.
fn info_has_every_node_field(engine: EngineKind) {
    let env = env(engine);
    let _client = env.client("alice");
    let info = env.api("info", json!({}));
    let node = &info["result"]["nodes"][0];
    for field in [
        "uid",
        "name",
        "version",
        "num_clients",
        "num_users",
        "num_channels",
        "uptime",
        "num_subs",
    ] {
        assert!(node.get(field).is_some(), "{field} missing in {info}");
    }
    assert_eq!(node["num_users"], 1, "{info}");
}

/// `batch` answers with a top-level `replies` array, one `{<method>: result}` or `{error}` per
/// command, in order (what the `cent` clients parse).
fn batch_replies_are_top_level(engine: EngineKind) {
    let env = env(engine);
    let reply = env.api(
        "batch",
        json!({"commands": [
            {"publish": {"channel": "chat:b", "data": {"n": 1}}},
            {"publish": {"channel": "nope:x", "data": {}}},
            {"history": {"channel": "chat:b", "limit": -1}},
        ]}),
    );
    let replies = reply["replies"]
        .as_array()
        .unwrap_or_else(|| panic!("{reply}"));
    assert_eq!(replies.len(), 3);
    assert_eq!(replies[0]["publish"]["offset"], 1, "{reply}");
    assert_eq!(
        replies[1],
        json!({"error": {"code": 102, "message": "unknown channel"}})
    );
    assert_eq!(
        replies[2]["history"]["publications"][0]["data"],
        json!({"n": 1})
    );
}

/// `batch` runs every command in order, whatever the envelope.
fn batch_runs_every_command(engine: EngineKind) {
    let env = env(engine);
    let reply = env.api(
        "batch",
        json!({"commands": [
            {"publish": {"channel": "chat:b", "data": {"n": 1}}},
            {"publish": {"channel": "nope:x", "data": {}}},
            {"publish": {"channel": "chat:b", "data": {"n": 2}}},
            {"history": {"channel": "chat:b", "limit": -1}},
        ]}),
    );
    let replies = reply
        .get("replies")
        .or_else(|| reply["result"].get("replies"))
        .and_then(Value::as_array)
        .unwrap_or_else(|| panic!("{reply}"));
    assert_eq!(replies.len(), 4, "{reply}");
    assert_eq!(replies[0]["publish"]["offset"], 1, "{reply}");
    assert_eq!(replies[1]["error"]["code"], 102, "{reply}");
    assert_eq!(replies[2]["publish"]["offset"], 2, "{reply}");
    let pubs = &replies[3]["history"]["publications"];
    assert_eq!(pubs[0]["data"], json!({"n": 1}), "{reply}");
    assert_eq!(pubs[1]["data"], json!({"n": 2}), "{reply}");
}

/// Errors of a call that was decoded are HTTP 200 with Centrifugo's error codes.
fn api_errors(engine: EngineKind) {
    let env = env(engine);
    let call = |method: &str, body: &str| {
        let (status, text) = post_api(&env, method, body);
        assert_eq!(status, 200, "{method} {body}: {text}");
        serde_json::from_str::<Value>(&text).unwrap_or_else(|e| panic!("{text}: {e}"))
    };
    assert_eq!(
        call("no_such_method", "{}"),
        json!({"error": {"code": 104, "message": "method not found"}})
    );
    assert_eq!(
        call("publish", r#"{"channel":"chat:e"}"#),
        json!({"error": {"code": 107, "message": "bad request"}}),
        "neither data nor b64data"
    );
    assert_eq!(
        call("presence", r#"{"channel":"nope:x"}"#),
        json!({"error": {"code": 102, "message": "unknown channel"}})
    );
}

/// A body that is not the method's request JSON is not an API call: HTTP 400 saying what is
/// wrong, and nothing runs.
fn malformed_json_is_http_400(engine: EngineKind) {
    let env = env(engine);
    for (method, body, problem) in [
        ("publish", "{not json", "key must be a string"),
        ("publish", r#"{"data":{"n":1}}"#, "missing field `channel`"),
        (
            "publish",
            r#"{"channel":7,"data":1}"#,
            "invalid type: integer `7`",
        ),
        (
            "history",
            r#"{"channel":"chat:m","limit":"all"}"#,
            "invalid type",
        ),
        ("info", "", "EOF while parsing"),
        (
            "batch",
            r#"{"commands":[{"publish":{}}"#,
            "EOF while parsing",
        ),
        ("batch", r#"{"commands":{}}"#, "an array of commands"),
    ] {
        let (status, text) = post_api(&env, method, body);
        assert_eq!(status, 400, "{method} {body}: {text}");
        assert!(
            text.contains(&format!("not a valid {method} request")) && text.contains(problem),
            "{method} {body}: {problem:?} missing from {text:?}"
        );
    }
    assert_eq!(
        env.api("history", json!({"channel": "chat:m"}))["result"]["offset"],
        json!(null),
        "nothing was published"
    );
}

/// In a batch, a command that cannot be decoded gets error 107 and the others run.
fn batch_with_a_malformed_command(engine: EngineKind) {
    let env = env(engine);
    let reply = env.api(
        "batch",
        json!({"parallel": true, "commands": [
            {"publish": {"channel": "chat:bm", "data": {"n": 1}}},
            {"publish": {"data": {"n": 2}}},
            {"publish": {"channel": ["chat:bm"], "data": {"n": 3}}},
            {"publish": "chat:bm"},
            {},
            {"publish": {"channel": "chat:bm", "data": {}}, "info": {}},
            42,
            {"publish": {"channel": "chat:bm", "data": {"n": 4}}},
        ]}),
    );
    let replies = batch_replies(&reply);
    let bad_request = json!({"error": {"code": 107, "message": "bad request"}});
    assert_eq!(replies.len(), 8, "{reply}");
    assert_eq!(replies[0]["publish"]["offset"], 1, "{reply}");
    for (i, reply) in replies.iter().enumerate().take(7).skip(1) {
        assert_eq!(reply, &bad_request, "command {i}");
    }
    assert_eq!(replies[7]["publish"]["offset"], 2, "{reply}");
    let history = env.api("history", json!({"channel": "chat:bm", "limit": -1}));
    let data: Vec<&Value> = history["result"]["publications"]
        .as_array()
        .unwrap_or_else(|| panic!("{history}"))
        .iter()
        .map(|p| &p["data"])
        .collect();
    assert_eq!(data, [&json!({"n": 1}), &json!({"n": 4})]);
}

gyre_tests::on_both_engines! {
    authentication,
    publish_broadcast_history,
    presence_channels_info,
    info_has_every_node_field,
    batch_replies_are_top_level,
    batch_runs_every_command,
    api_errors,
    malformed_json_is_http_400,
    batch_with_a_malformed_command,
}

/// `/metrics` serves Prometheus text with the node gauges and the command counters.
#[test]
fn metrics_count_connections_and_commands() {
    let env = env(EngineKind::Memory);
    env.publish("chat:m", json!({"n": 1}));
    let _client = env.client("alice");
    let needles = [
        "gyre_node_num_clients 1",
        "gyre_client_connections_accepted_total{transport=\"websocket\"} 1",
        "gyre_client_commands_total{method=\"connect\"} 1",
        "gyre_client_command_duration_seconds_bucket{method=\"connect\"",
    ];
    // The session records a command's duration after it queued the reply, so the client may read
    // its connect reply a moment before the histogram has the sample.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (status, text) = http_request(env.gyre.port(), "GET", "/metrics", &[], b"")
            .unwrap_or_else(|e| panic!("GET /metrics: {e}"));
        assert_eq!(status, 200, "{text}");
        match needles.iter().find(|needle| !text.contains(*needle)) {
            None => break,
            Some(needle) if Instant::now() > deadline => {
                panic!("{needle} missing from:\n{text}")
            }
            Some(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// Batches do not nest: a batch inside a batch gets "method not found" (as in Centrifugo), so a
/// request nested 1000 deep (it used to overflow gyre's stack) is answered and gyre lives on.
#[test]
fn nested_batch_is_method_not_found() {
    let env = env(EngineKind::Memory);
    // Text, not a `Value`: dropping a `Value` 1000 deep overflows the test thread's stack.
    let mut body = r#"{"commands":[{"publish":{"channel":"chat:nest","data":1}}]}"#.to_owned();
    for _ in 0..1000 {
        body = format!(r#"{{"commands":[{{"batch":{body}}}]}}"#);
    }
    let (status, text) = post_api(&env, "batch", &body);
    assert_eq!(status, 200, "{text}");
    let reply: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{text}: {e}"));
    assert_eq!(
        reply,
        json!({"replies": [{"error": {"code": 104, "message": "method not found"}}]})
    );
    // Also beside other commands, one level down.
    let reply = env.api(
        "batch",
        json!({"commands": [
            {"batch": {"commands": [{"publish": {"channel": "chat:nest", "data": 1}}]}},
            {"publish": {"channel": "chat:nest", "data": 2}},
        ]}),
    );
    assert_eq!(
        batch_replies(&reply)[0],
        json!({"error": {"code": 104, "message": "method not found"}})
    );
    assert_eq!(batch_replies(&reply)[1]["publish"]["offset"], 1, "{reply}");
    let mut env = env;
    assert!(env.gyre.is_alive(), "gyre died:\n{}", env.gyre.log_tail(30));
    let (offset, _) = env.publish("chat:nest", json!({"after": true}));
    assert_eq!(offset, 2, "only the top-level publishes ran");
}

/// More commands than `http_api.batch_max_commands` is HTTP 400 naming the key, and none of
/// them runs; exactly the cap is fine.
#[test]
fn batch_over_the_cap_is_refused() {
    let env = ProxyEnv::start(
        EngineKind::Memory,
        GyreProcess::builder()
            .namespace(Namespace::full("chat", 100, 300))
            .http_api_option("batch_max_commands = 5"),
    );
    let batch_of = |n: u64| {
        let commands: Vec<Value> = (1..=n)
            .map(|n| json!({"publish": {"channel": "chat:cap", "data": {"n": n}}}))
            .collect();
        json!({"commands": commands}).to_string()
    };
    let (status, text) = post_api(&env, "batch", &batch_of(6));
    assert_eq!(status, 400, "{text}");
    assert!(
        text.contains("more than 5 commands") && text.contains("http_api.batch_max_commands"),
        "{text}"
    );
    let (status, text) = post_api(&env, "batch", &batch_of(5));
    assert_eq!(status, 200, "{text}");
    let reply: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{text}: {e}"));
    let offsets: Vec<&Value> = batch_replies(&reply)
        .iter()
        .map(|r| &r["publish"]["offset"])
        .collect();
    assert_eq!(
        offsets,
        [&json!(1), &json!(2), &json!(3), &json!(4), &json!(5)],
        "the refused batch published nothing: {reply}"
    );
}

/// Peak resident memory of `gyre` so far (`VmHWM` of `/proc/<pid>/status`), in bytes.
fn peak_rss_bytes(env: &ProxyEnv) -> u64 {
    let pid = env.gyre.pid().expect("gyre is running");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("read /proc/{pid}/status: {e}"));
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmHWM in /proc/{pid}/status:\n{status}"));
    kib * 1024
}

/// A batch as large as the body limit allows (4 MB, 113,000 small publishes) raises gyre's peak
/// RSS by a few times the body, not by hundreds of megabytes: the body, the commands as slices
/// of it and the replies written into one buffer. Before the batch rework this grew the peak by
/// 188 MB (45x the body); 10x leaves room for allocator slack and hyper's buffers.
#[test]
fn large_batch_memory_stays_proportional() {
    let env = ProxyEnv::start(
        EngineKind::Memory,
        GyreProcess::builder().http_api_option("batch_max_commands = 300000"),
    );
    let command = r#"{"publish":{"channel":"a","data":1}}"#;
    let count = ((4 << 20) - 64) / (command.len() + 1);
    let body = format!(r#"{{"commands":[{}]}}"#, vec![command; count].join(","));
    let before = peak_rss_bytes(&env);
    let (status, text) = http_request_with_timeout(
        env.gyre.port(),
        "POST",
        "/api/batch",
        &[("X-API-Key", env.gyre.api_key())],
        body.as_bytes(),
        Duration::from_secs(120),
    )
    .unwrap_or_else(|e| panic!("POST /api/batch: {e}"));
    let growth = peak_rss_bytes(&env).saturating_sub(before);
    eprintln!(
        "batch of {count} commands, {} bytes: reply {} bytes, peak RSS {} MiB before, +{} KiB",
        body.len(),
        text.len(),
        before >> 20,
        growth >> 10
    );
    assert_eq!(status, 200, "{}", &text[..text.len().min(300)]);
    let reply: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("reply: {e}"));
    let replies = batch_replies(&reply);
    assert_eq!(replies.len(), count);
    assert!(replies.iter().all(|r| r == &json!({"publish": {}})));
    let bound = 10 * body.len() as u64;
    assert!(
        growth < bound,
        "peak RSS grew by {growth} bytes for a {} byte batch (bound {bound})",
        body.len()
    );
}
