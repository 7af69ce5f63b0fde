"""Connection token expiry and refresh: alice connects with a token that expires in --ttl seconds
(default 3); get_token hands out new tokens of the same lifetime. She stays connected across at
least two refreshes and still receives publications.

Arguments: --url --protocol --secret --api --api-key --channel [--ttl] [--wait] [--timeout]
Result: {getTokenCalls, refreshTimes, connectedCount, disconnects, received, events}
"""

import asyncio

from gyre_sdk import Recorder, api_publish, conn_token, elapsed, main, need, new_client, new_sub


async def scenario(args, result, protocol):
    url, secret, channel = need(args, "url"), need(args, "secret"), need(args, "channel")
    ttl = int(args.get("ttl", 3))
    wait = float(args.get("wait", (2 * ttl + 2) * 1000)) / 1000.0
    rec = Recorder()
    result["events"] = rec.events
    result["getTokenCalls"] = 0
    result["refreshTimes"] = []

    async def get_token():
        result["getTokenCalls"] += 1
        result["refreshTimes"].append(elapsed())
        return conn_token(secret, "alice", ttl=ttl)

    alice = new_client(url, protocol, rec, "alice", token=conn_token(secret, "alice", ttl=ttl), get_token=get_token)
    sub = new_sub(alice, rec, "alice", channel)
    result["received"] = rec.pubs_of("alice", channel)
    await alice.connect()
    await sub.subscribe()
    await rec.connected("alice")
    await rec.subscribed("alice", channel)

    await api_publish(args, channel, {"n": 1})
    await rec.pub_count("alice", channel, 1)
    await asyncio.sleep(wait)
    await api_publish(args, channel, {"n": 2})
    await rec.pub_count("alice", channel, 2)

    result["connectedCount"] = len(rec.of("alice", "connected"))
    result["disconnects"] = [
        e for e in rec.events
        if e["who"] == "alice" and (e["ev"] == "disconnected" or (e["ev"] == "connecting" and e["code"] != 0))
    ]
    await alice.disconnect()


if __name__ == "__main__":
    main("token_refresh", scenario)
