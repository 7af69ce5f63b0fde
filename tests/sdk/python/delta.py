"""Delta compression: alice subscribes to --channel (history, recovery, allowed_delta_types =
["fossil"] and delta_publish) with ``delta=DeltaType.FOSSIL``. 10 documents that change a little
each time go through the HTTP API; she disconnects, 3 more are published while she is offline, she
reconnects and recovers them, then 3 more arrive live. The SDK applies the patches itself; the
driver compares every document she got with what was published.

Arguments: --url --protocol --secret --api --api-key --channel [--timeout]
Result: {published, received, subscribedAgain, events}
"""

import asyncio

from centrifuge import DeltaType

from gyre_sdk import Recorder, api_publish, conn_token, main, need, new_client, new_sub


def document(n: int) -> dict:
    cells = [{"cell": i, "mark": "X" if (i * 7 + n) % 11 == 0 else "."} for i in range(48)]
    return {"version": n, "title": "Spielstand — été", "cells": cells}


async def scenario(args, result, protocol):
    url, secret, channel = need(args, "url"), need(args, "secret"), need(args, "channel")
    rec = Recorder()
    result["events"] = rec.events

    alice = new_client(url, protocol, rec, "alice", token=conn_token(secret, "alice"))
    sub = new_sub(alice, rec, "alice", channel, delta=DeltaType.FOSSIL)
    result["received"] = rec.pubs_of("alice", channel)
    await alice.connect()
    await sub.subscribe()
    await rec.connected("alice")
    await rec.subscribed("alice", channel)

    result["published"] = []

    async def publish():
        data = document(len(result["published"]) + 1)
        result["published"].append(data)
        await api_publish(args, channel, data)

    for _ in range(10):
        await publish()
    await rec.pub_count("alice", channel, 10)

    await alice.disconnect()
    await rec.until("alice disconnected", lambda: len(rec.of("alice", "disconnected")) >= 1)
    for _ in range(3):
        await publish()
    await asyncio.sleep(0.2)

    await alice.connect()
    await rec.connected("alice", 2)
    result["subscribedAgain"] = await rec.subscribed("alice", channel, 2)
    await rec.pub_count("alice", channel, 13)
    for _ in range(3):
        await publish()
    await rec.pub_count("alice", channel, 16)
    await asyncio.sleep(0.3)
    await alice.disconnect()


if __name__ == "__main__":
    main("delta", scenario)
