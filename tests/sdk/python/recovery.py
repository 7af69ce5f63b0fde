"""Recovery: alice subscribes to --channel (history + force_recovery, or with `--recoverable true`
history she asks to recover from herself), receives 2 live publications, disconnects; --count
(default 5) publications go through the HTTP API while she is offline; she reconnects and must be
`recovered` with every missed publication exactly once, in order; then one more live publication.

Arguments: --url --protocol --secret --api --api-key --channel [--count] [--recoverable true]
  [--timeout]
Result: {published, subscribedFirst, subscribedAgain, received, receivedWhileOffline, events}
"""

import asyncio

from gyre_sdk import Recorder, api_publish, conn_token, main, need, new_client, new_sub


async def scenario(args, result, protocol):
    url, secret, channel = need(args, "url"), need(args, "secret"), need(args, "channel")
    missed = int(args.get("count", 5))
    rec = Recorder()
    result["events"] = rec.events

    alice = new_client(url, protocol, rec, "alice", token=conn_token(secret, "alice"))
    sub = new_sub(alice, rec, "alice", channel, recoverable=args.get("recoverable") == "true")
    received = rec.pubs_of("alice", channel)
    result["received"] = received
    await alice.connect()
    await sub.subscribe()
    await rec.connected("alice")
    result["subscribedFirst"] = await rec.subscribed("alice", channel)

    result["published"] = []

    async def publish():
        n = len(result["published"]) + 1
        result["published"].append(await api_publish(args, channel, {"n": n}))

    await publish()
    await publish()
    await rec.pub_count("alice", channel, 2)

    await alice.disconnect()
    await rec.until("alice disconnected", lambda: len(rec.of("alice", "disconnected")) >= 1)
    for _ in range(missed):
        await publish()
    await asyncio.sleep(0.2)
    result["receivedWhileOffline"] = len(received) - 2

    await alice.connect()
    await rec.connected("alice", 2)
    result["subscribedAgain"] = await rec.subscribed("alice", channel, 2)
    await rec.pub_count("alice", channel, 2 + missed)

    await publish()
    await rec.pub_count("alice", channel, 3 + missed)
    # A duplicate would arrive within this pause.
    await asyncio.sleep(0.3)
    await alice.disconnect()


if __name__ == "__main__":
    main("recovery", scenario)
