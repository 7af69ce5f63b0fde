"""Join and leave pushes: alice subscribes to --channel with join_leave; bob subscribes,
unsubscribes, subscribes again and disconnects. alice must see bob join twice and leave twice.

Arguments: --url --protocol --secret --channel [--timeout]
Result: {clients: {alice, bob}, joins: [{client, user}], leaves: [...], events}
"""

import asyncio

from gyre_sdk import Recorder, conn_token, main, need, new_client, new_sub


async def scenario(args, result, protocol):
    url, secret, channel = need(args, "url"), need(args, "secret"), need(args, "channel")
    rec = Recorder()
    result["events"] = rec.events

    alice = new_client(url, protocol, rec, "alice", token=conn_token(secret, "alice"))
    sub_a = new_sub(alice, rec, "alice", channel, join_leave=True)
    await alice.connect()
    await sub_a.subscribe()
    a = await rec.connected("alice")
    await rec.subscribed("alice", channel)

    bob = new_client(url, protocol, rec, "bob", token=conn_token(secret, "bob"))
    sub_b = new_sub(bob, rec, "bob", channel)
    await bob.connect()
    b = await rec.connected("bob")
    result["clients"] = {"alice": a["client"], "bob": b["client"]}

    def bobs(ev):
        return [e for e in rec.of("alice", ev, channel) if e.get("info") and e["info"]["client"] == b["client"]]

    await sub_b.subscribe()
    await rec.subscribed("bob", channel)
    await rec.until("alice sees bob join", lambda: len(bobs("join")) >= 1)
    await sub_b.unsubscribe()
    await rec.until("alice sees bob leave", lambda: len(bobs("leave")) >= 1)
    await sub_b.subscribe()
    await rec.subscribed("bob", channel, 2)
    await rec.until("alice sees bob join again", lambda: len(bobs("join")) >= 2)
    await bob.disconnect()
    await rec.until("alice sees bob leave on disconnect", lambda: len(bobs("leave")) >= 2)

    await asyncio.sleep(0.3)
    result["joins"] = [e["info"] for e in rec.of("alice", "join", channel)]
    result["leaves"] = [e["info"] for e in rec.of("alice", "leave", channel)]
    await alice.disconnect()


if __name__ == "__main__":
    main("join_leave", scenario)
