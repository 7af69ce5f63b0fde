"""Presence, presence stats and history. alice (token `info` {"name":"Alice"}) and bob subscribe
to --channel; three publications go through the HTTP API; then history with several limits; then
bob disconnects.

Arguments: --url --protocol --secret --api --api-key --channel [--timeout]
Result: {clients, presence, presenceViaClient, stats, published, received, history: {all, first2,
last1Reverse, sinceFirst, positionOnly}, statsAfterBobLeft, presenceAfterBobLeft, events}
"""

import asyncio
import time

from centrifuge import StreamPosition

from gyre_sdk import (
    Recorder, api_publish, conn_token, history_of, main, need, new_client, new_sub, presence_of,
)


async def scenario(args, result, protocol):
    url, secret, channel = need(args, "url"), need(args, "secret"), need(args, "channel")
    rec = Recorder()
    result["events"] = rec.events

    alice = new_client(url, protocol, rec, "alice", token=conn_token(secret, "alice", info={"name": "Alice"}))
    bob = new_client(url, protocol, rec, "bob", token=conn_token(secret, "bob"))
    sub_a = new_sub(alice, rec, "alice", channel)
    sub_b = new_sub(bob, rec, "bob", channel)
    result["received"] = rec.pubs_of("alice", channel)
    await alice.connect()
    await bob.connect()
    await sub_a.subscribe()
    await sub_b.subscribe()
    a = await rec.connected("alice")
    b = await rec.connected("bob")
    result["clients"] = {"alice": a["client"], "bob": b["client"]}
    await rec.subscribed("alice", channel)
    await rec.subscribed("bob", channel)

    result["presence"] = presence_of(await sub_a.presence())
    result["presenceViaClient"] = presence_of(await alice.presence(channel))
    stats = await sub_a.presence_stats()
    result["stats"] = {"numClients": int(stats.num_clients), "numUsers": int(stats.num_users)}

    result["published"] = []
    for n in range(1, 4):
        result["published"].append(await api_publish(args, channel, {"n": n}))
    await rec.pub_count("alice", channel, 3)

    epoch = result["published"][0]["epoch"]
    result["history"] = {
        "all": history_of(await sub_a.history(limit=-1)),
        "first2": history_of(await alice.history(channel, limit=2)),
        "last1Reverse": history_of(await alice.history(channel, limit=1, reverse=True)),
        "sinceFirst": history_of(await alice.history(channel, limit=-1, since=StreamPosition(offset=1, epoch=epoch))),
        "positionOnly": history_of(await alice.history(channel, limit=0)),
    }

    await bob.disconnect()
    # Presence removal is asynchronous on the server: poll for a while.
    deadline = time.monotonic() + 5
    while True:
        s = await sub_a.presence_stats()
        result["statsAfterBobLeft"] = {"numClients": int(s.num_clients), "numUsers": int(s.num_users)}
        if result["statsAfterBobLeft"]["numClients"] == 1 or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.1)
    result["presenceAfterBobLeft"] = presence_of(await sub_a.presence())
    await alice.disconnect()


if __name__ == "__main__":
    main("presence", scenario)
