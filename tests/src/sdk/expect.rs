//! What the scenario results must show, shared by the Node and the Python tests (both SDKs'
//! scripts print the same shapes).

use serde_json::{Value as Json, json};

use super::{json_array, json_data, json_offsets, json_str};

/// `receive`: subscribed recoverable + positioned, not recovering; publications from the API
/// (offset 1), redis-cli (offset 2, only `with_redis`) and bob's client publish, in order,
/// exactly once; only the client publication carries `info` (bob's).
pub fn receive(r: &Json, with_redis: bool) {
    let sub = &r["subscribed"];
    assert_eq!(sub["recoverable"], true, "{sub}");
    assert_eq!(sub["positioned"], true, "{sub}");
    assert_eq!(sub["wasRecovering"], false, "{sub}");
    assert_eq!(sub["recovered"], false, "{sub}");

    let published = json_array(&r["published"]);
    assert_eq!(published[0]["offset"], 1, "API publish: {r}");
    let epoch = json_str(&published[0], "epoch");
    assert_eq!(epoch.len(), 8, "epoch {epoch:?}");
    let mut data = vec![json!({"source": "api", "n": 1})];
    if with_redis {
        assert_eq!(published.len(), 3, "{r}");
        assert_eq!(
            published[1]["offset"], 2,
            "redis-cli GYRE.PUBLISH (gyre registers its namespaces with GYRE.NAMESPACE): {r}"
        );
        assert_eq!(published[1]["epoch"], epoch);
        data.push(json!({"source": "redis", "n": 2}));
    }
    data.push(json!({"source": "client", "n": 3}));
    let n = data.len() as u64;

    let received = &r["received"];
    assert_eq!(
        json_offsets(received),
        (1..=n).collect::<Vec<_>>(),
        "{received}"
    );
    assert_eq!(json_data(received), data);
    let received = json_array(received);
    let last = received.len() - 1;
    for p in &received[..last] {
        assert!(p.get("info").is_none(), "server publication with info: {p}");
    }
    assert_eq!(received[last]["info"]["user"], "bob", "{}", received[last]);
    assert_eq!(received[last]["info"]["client"], r["clients"]["bob"]);
}

/// `presence`: both clients with their users (and alice's token `info`), stats 2/2, history
/// of the 3 publications with every limit, then 1/1 after bob left.
pub fn presence(r: &Json) {
    let alice = json_str(&r["clients"], "alice").to_owned();
    let bob = json_str(&r["clients"], "bob").to_owned();
    let alice_info = json!({"client": alice, "user": "alice", "connInfo": {"name": "Alice"}});
    let expected = json!({
        alice.clone(): alice_info,
        bob.clone(): {"client": bob, "user": "bob"},
    });
    assert_eq!(r["presence"], expected);
    assert_eq!(r["presenceViaClient"], expected);
    assert_eq!(r["stats"], json!({"numClients": 2, "numUsers": 2}));

    assert_eq!(json_offsets(&r["received"]), [1, 2, 3]);
    let epoch = json_str(&r["published"][0], "epoch").to_owned();
    let h = &r["history"];
    assert_eq!(json_offsets(&h["all"]["publications"]), [1, 2, 3], "{h}");
    assert_eq!(
        json_data(&h["all"]["publications"]),
        [json!({"n": 1}), json!({"n": 2}), json!({"n": 3})]
    );
    for key in [
        "all",
        "first2",
        "last1Reverse",
        "sinceFirst",
        "positionOnly",
    ] {
        assert_eq!(h[key]["offset"], 3, "history {key}: {}", h[key]);
        assert_eq!(h[key]["epoch"], epoch.as_str(), "history {key}: {}", h[key]);
    }
    assert_eq!(json_offsets(&h["first2"]["publications"]), [1, 2]);
    assert_eq!(json_offsets(&h["last1Reverse"]["publications"]), [3]);
    assert_eq!(json_offsets(&h["sinceFirst"]["publications"]), [2, 3]);
    assert_eq!(json_offsets(&h["positionOnly"]["publications"]), [0u64; 0]);

    assert_eq!(
        r["statsAfterBobLeft"],
        json!({"numClients": 1, "numUsers": 1})
    );
    assert_eq!(r["presenceAfterBobLeft"], json!({alice: alice_info}));
}

/// `join_leave`: alice saw bob join twice and leave twice (exactly), and nothing of anyone
/// else; her own join, if the server sends it, is tolerated once, her own leave never.
pub fn join_leave(r: &Json) {
    let alice = json_str(&r["clients"], "alice");
    let bob = json_str(&r["clients"], "bob");
    for kind in ["joins", "leaves"] {
        let events = json_array(&r[kind]);
        let of_bob: Vec<&Json> = events.iter().filter(|e| e["client"] == bob).collect();
        assert_eq!(of_bob.len(), 2, "{kind} of bob: {}", r[kind]);
        assert!(of_bob.iter().all(|e| e["user"] == "bob"), "{}", r[kind]);
        assert!(
            events
                .iter()
                .all(|e| e["client"] == bob || e["client"] == alice),
            "{kind} of unknown clients: {}",
            r[kind]
        );
    }
    let own_joins = json_array(&r["joins"])
        .iter()
        .filter(|e| e["client"] == alice)
        .count();
    assert!(own_joins <= 1, "alice saw her own join {own_joins} times");
    assert!(
        !json_array(&r["leaves"])
            .iter()
            .any(|e| e["client"] == alice),
        "alice saw her own leave"
    );
}

/// `recovery`: 2 live + `missed` recovered + 1 live publication, offsets 1.. exactly once and
/// in order; both subscriptions recoverable and positioned, the second a successful recovery.
pub fn recovery(r: &Json, missed: u64) {
    let total = 3 + missed;
    let first = &r["subscribedFirst"];
    assert_eq!(first["recoverable"], true, "{first}");
    assert_eq!(first["positioned"], true, "{first}");
    assert_eq!(first["wasRecovering"], false, "{first}");
    assert_eq!(first["recovered"], false, "{first}");
    let again = &r["subscribedAgain"];
    assert_eq!(again["recoverable"], true, "{again}");
    assert_eq!(again["positioned"], true, "{again}");
    assert_eq!(again["wasRecovering"], true, "{again}");
    assert_eq!(again["recovered"], true, "{again}");
    assert_eq!(r["receivedWhileOffline"], 0, "{r}");
    let expected: Vec<u64> = (1..=total).collect();
    assert_eq!(json_offsets(&r["published"]), expected, "publish offsets");
    assert_eq!(
        json_offsets(&r["received"]),
        expected,
        "every publication exactly once, in order: {}",
        r["received"]
    );
    let data: Vec<Json> = (1..=total).map(|n| json!({"n": n})).collect();
    assert_eq!(json_data(&r["received"]), data);
}

/// `token_errors`: a bad signature ends with 3500 and no reconnect; an expired token is
/// refreshed through getToken (one connect error 109); without getToken the SDK gives up.
pub fn token_errors(r: &Json) {
    let bad = &r["badSignature"];
    assert_eq!(bad["disconnected"]["code"], 3500, "bad signature: {bad}");
    assert_eq!(bad["state"], "disconnected", "3500 is terminal: {bad}");
    assert_eq!(bad["connectedCount"], 0, "{bad}");
    assert_eq!(bad["connectingCount"], 1, "no reconnect after 3500: {bad}");

    let expired = &r["expired"];
    assert_eq!(
        expired["errors"],
        json!([{"type": "connect", "code": 109}]),
        "expired token: {expired}"
    );
    assert_eq!(expired["getTokenCalls"], 1, "{expired}");
    assert_eq!(expired["state"], "connected", "{expired}");

    let gave_up = &r["expiredNoRefresh"];
    assert_eq!(
        gave_up["errors"][0],
        json!({"type": "connect", "code": 109}),
        "{gave_up}"
    );
    assert_eq!(
        gave_up["disconnected"]["code"], 1,
        "unauthorized: {gave_up}"
    );
    assert_eq!(gave_up["connectedCount"], 0, "{gave_up}");
    assert_eq!(gave_up["state"], "disconnected", "{gave_up}");
}

/// `token_refresh`: at least two refreshes (the second getToken call proves the refresh reply
/// announced the next expiry), one connection throughout, both publications received.
pub fn token_refresh(r: &Json) {
    let calls = r["getTokenCalls"].as_u64().unwrap();
    assert!(calls >= 2, "getToken called {calls} times: {r}");
    assert_eq!(r["connectedCount"], 1, "one connection throughout: {r}");
    assert_eq!(r["disconnects"], json!([]), "{r}");
    assert_eq!(json_offsets(&r["received"]), [1, 2]);
}

/// `sub_errors`: 102 for the unknown namespace, 103 for everything on the locked one, and
/// the connection survives.
pub fn channel_errors(r: &Json) {
    for (key, code) in [("unknown", 102), ("denied", 103)] {
        let s = &r[key];
        assert_eq!(s["unsubscribed"]["code"], code, "{key}: {s}");
        assert_eq!(s["subscribedCount"], 0, "{key}: {s}");
        assert_eq!(s["state"], "unsubscribed", "{key}: {s}");
    }
    for call in ["publish", "history", "presence", "presenceStats"] {
        assert_eq!(
            r[call]["code"], 103,
            "{call} on a locked channel: {}",
            r[call]
        );
    }
    assert_eq!(r["publishUnknown"]["code"], 102, "{}", r["publishUnknown"]);
    assert_eq!(r["stillConnected"], true);
    assert_eq!(r["connectedCount"], 1, "errors must not disconnect");
}

/// `redis_restart`: 5 API publications; then 3 straight into the restarted Redis and 5 API,
/// interleaved in any order; then one more API publication. The client never reconnected,
/// nothing arrived twice, and either every publication arrived (offsets 1..=14 in order, each
/// source's in its own order) or the client was told it could not recover (a restart from
/// the AOF starts a new epoch, see the module's "When an epoch changes") and the last one
/// still reached it.
pub fn redis_restart(r: &Json) {
    let data = json_data(&r["received"]);
    let mut unique = data.clone();
    unique.sort_by_key(|d| d.to_string());
    unique.dedup();
    assert_eq!(
        unique.len(),
        data.len(),
        "a publication arrived twice: {data:?}"
    );
    let first: Vec<Json> = (1..=5).map(|n| json!({"source": "api", "n": n})).collect();
    assert_eq!(data[..5], first[..], "before the restart");
    assert!(
        data.contains(&json!({"source": "api", "n": 11})),
        "publications resume: {data:?}"
    );
    if r["lostContinuity"] == false {
        let expected: Vec<u64> = (1..=14).collect();
        assert_eq!(
            json_offsets(&r["received"]),
            expected,
            "every publication exactly once, in order: {}",
            r["received"]
        );
        let of = |source: &str| -> Vec<Json> {
            data[5..]
                .iter()
                .filter(|d| d["source"] == source)
                .map(|d| d["n"].clone())
                .collect()
        };
        assert_eq!(of("redis"), [json!(1), json!(2), json!(3)], "{data:?}");
        assert_eq!(
            of("api"),
            (6..=11).map(|n| json!(n)).collect::<Vec<_>>(),
            "{data:?}"
        );
    } else {
        // Told so: a resubscription that could not recover (the client reloads its state).
        assert!(
            json_array(&r["events"])
                .iter()
                .any(|e| e["ev"] == "subscribed"
                    && e["wasRecovering"] == true
                    && e["recovered"] == false),
            "{r}"
        );
    }
    assert_eq!(r["connectedCount"], 1, "the client stays connected: {r}");
    // Code 0 is the script's own disconnect() at the end.
    let disconnects: Vec<&Json> = json_array(&r["events"])
        .iter()
        .filter(|e| e["ev"] == "disconnected" && e["code"] != 0)
        .collect();
    assert!(disconnects.is_empty(), "{disconnects:?}");
}
