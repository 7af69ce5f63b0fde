"""Channel errors on one connection, which must stay connected throughout:
- subscribe to a channel of an unknown namespace (--unknown) → 102, unsubscribed(102);
- subscribe to a channel whose namespace forbids client subscriptions (--denied) → 103,
  unsubscribed(103);
- publish / history / presence / presence stats on --denied without being subscribed → 103.

Arguments: --url --protocol --secret --unknown --denied [--timeout]
Result: {unknown: {unsubscribed, errors, subscribedCount, state}, denied: {...}, publish, history,
presence, presenceStats, publishUnknown, stillConnected, connectedCount, events}
"""

import asyncio

from gyre_sdk import Recorder, conn_token, encode_data, main, need, new_client, new_sub, settle


async def scenario(args, result, protocol):
    url, secret = need(args, "url"), need(args, "secret")
    unknown, denied = need(args, "unknown"), need(args, "denied")
    rec = Recorder()
    result["events"] = rec.events

    alice = new_client(url, protocol, rec, "alice", token=conn_token(secret, "alice"))
    await alice.connect()
    await rec.connected("alice")

    async def subscribe_fails(channel):
        sub = new_sub(alice, rec, "alice", channel)
        await sub.subscribe()
        await rec.until(f"{channel} unsubscribed", lambda: len(rec.of("alice", "unsubscribed", channel)) >= 1)
        u = rec.of("alice", "unsubscribed", channel)[0]
        return {
            "unsubscribed": {"code": u["code"], "reason": u["reason"]},
            "errors": [e["error"] for e in rec.of("alice", "error", channel)],
            "subscribedCount": len(rec.of("alice", "subscribed", channel)),
            "state": sub.state.value,
        }

    result["unknown"] = await subscribe_fails(unknown)
    result["denied"] = await subscribe_fails(denied)

    def error_of(r):
        return r["error"] if "error" in r else {"unexpectedSuccess": str(r.get("ok"))}

    result["publish"] = error_of(await settle(alice.publish(denied, encode_data(protocol, {"n": 1}))))
    result["history"] = error_of(await settle(alice.history(denied, limit=-1)))
    result["presence"] = error_of(await settle(alice.presence(denied)))
    result["presenceStats"] = error_of(await settle(alice.presence_stats(denied)))
    result["publishUnknown"] = error_of(await settle(alice.publish(unknown, encode_data(protocol, {"n": 1}))))

    await asyncio.sleep(0.2)
    result["stillConnected"] = alice.state.value == "connected"
    result["connectedCount"] = len(rec.of("alice", "connected"))
    await alice.disconnect()


if __name__ == "__main__":
    main("sub_errors", scenario)
