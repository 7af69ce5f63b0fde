"""Backend hooks through the unmodified centrifuge-python SDK, no tokens anywhere: the backend
(tests/backend/http_backend.py) knows users by their session cookie, which the SDK sends as a
real header of the WebSocket upgrade (`headers=`).
- alice connects with her cookie (the connect proxy's data arrives in `on_connected`);
- subscribes to an allowed channel (the subscribe proxy's data) and a denied one (403);
- bob subscribes too; alice publishes, bob receives the data as the publish proxy rewrote it;
- RPC: `echo` (the backend's result) and `fail` (the backend's error 1001);
- a client without a cookie is refused by the backend: disconnect 4501, no reconnect.

Arguments: --url --protocol [--timeout]
Result: {connected, room, denied, received, echo, fail, anonymous}
"""

import asyncio

from gyre_sdk import Recorder, decode_data, encode_data, main, need, new_client, new_sub, settle


async def scenario(args, result, protocol):
    url = need(args, "url")
    rec = Recorder()
    result["events"] = rec.events

    alice = new_client(url, protocol, rec, "alice", headers={"Cookie": "session=s-alice"},
                       data=encode_data(protocol, {"from": "python"}))
    await alice.connect()
    connected = await rec.connected("alice")
    result["connected"] = {"data": connected.get("data")}

    room = new_sub(alice, rec, "alice", "hooks:room")
    await room.subscribe()
    subscribed = await rec.subscribed("alice", "hooks:room")
    result["room"] = subscribed.get("data")

    denied = new_sub(alice, rec, "alice", "hooks:denied-1")
    await denied.subscribe()
    await rec.until("denied unsubscribed", lambda: len(rec.of("alice", "unsubscribed", "hooks:denied-1")) >= 1)
    u = rec.of("alice", "unsubscribed", "hooks:denied-1")[0]
    result["denied"] = {"code": u["code"], "reason": u["reason"], "state": denied.state.value}

    bob = new_client(url, protocol, rec, "bob", headers={"Cookie": "session=s-bob"})
    await bob.connect()
    await rec.connected("bob")
    bob_room = new_sub(bob, rec, "bob", "hooks:room")
    await bob_room.subscribe()
    await rec.subscribed("bob", "hooks:room")
    published = await settle(alice.publish("hooks:room", encode_data(protocol, {"text": "hi"})))
    if "error" in published:
        raise RuntimeError(f"publish failed: {published['error']}")
    await rec.pub_count("bob", "hooks:room", 1)
    result["received"] = [
        {"data": p["data"], "user": (p.get("info") or {}).get("user")} for p in rec.pubs_of("bob", "hooks:room")
    ]

    echo = await settle(alice.rpc("echo", encode_data(protocol, {"n": 1})))
    result["echo"] = echo["error"] if "error" in echo else decode_data(echo["ok"].data)
    fail = await settle(alice.rpc("fail", encode_data(protocol, {})))
    result["fail"] = fail.get("error", {"unexpected": "success"})

    anonymous = new_client(url, protocol, rec, "anonymous")
    await anonymous.connect()
    await rec.until("anonymous disconnected", lambda: len(rec.of("anonymous", "disconnected")) >= 1)
    await asyncio.sleep(0.3)
    gone = rec.of("anonymous", "disconnected")[0]
    result["anonymous"] = {
        "code": gone["code"],
        "reason": gone["reason"],
        "state": anonymous.state.value,
        "connectingCount": len(rec.of("anonymous", "connecting")),
    }
    await alice.disconnect()
    await bob.disconnect()


if __name__ == "__main__":
    main("hooks", scenario)
