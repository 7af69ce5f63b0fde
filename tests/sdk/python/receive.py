"""Connect with a token, subscribe, and receive publications from three sources, in this order:
the HTTP API (through the `cent` client), `redis-cli GYRE.PUBLISH` (only with --redis-port) and
another client's publish.

Arguments: --url --protocol --secret --api --api-key --channel [--redis-port] [--timeout]
Result: {clients: {alice, bob}, subscribed, published: [{source, offset, epoch}], received, events}
"""

import asyncio
import json
import subprocess

from gyre_sdk import Recorder, api_publish, conn_token, encode_data, main, need, new_client, new_sub


def redis_publish(args, channel, data):
    argv = ["redis-cli", "-h", args.get("redis-host", "127.0.0.1"), "-p", str(need(args, "redis-port")),
            "GYRE.PUBLISH", channel, json.dumps(data)]
    stdout = subprocess.run(argv, capture_output=True, text=True, timeout=5, check=True).stdout
    # Two lines: the offset and the epoch (empty for a channel without history).
    out = stdout.removesuffix("\n").split("\n")
    if len(out) != 2:
        raise RuntimeError(f"redis-cli GYRE.PUBLISH answered {out!r}")
    return {"offset": int(out[0]), "epoch": out[1]}


async def scenario(args, result, protocol):
    url, secret, channel = need(args, "url"), need(args, "secret"), need(args, "channel")
    rec = Recorder()
    result["events"] = rec.events

    alice = new_client(url, protocol, rec, "alice", token=conn_token(secret, "alice"))
    sub = new_sub(alice, rec, "alice", channel)
    result["received"] = rec.pubs_of("alice", channel)
    await alice.connect()
    await sub.subscribe()
    connected = await rec.connected("alice")
    result["subscribed"] = await rec.subscribed("alice", channel)

    bob = new_client(url, protocol, rec, "bob", token=conn_token(secret, "bob"))
    await bob.connect()
    bob_connected = await rec.connected("bob")
    result["clients"] = {"alice": connected["client"], "bob": bob_connected["client"]}

    result["published"] = []
    r = await api_publish(args, channel, {"source": "api", "n": 1})
    result["published"].append({"source": "api", **r})
    await rec.pub_count("alice", channel, 1)

    if args.get("redis-port"):
        r = await asyncio.to_thread(redis_publish, args, channel, {"source": "redis", "n": 2})
        result["published"].append({"source": "redis", **r})
        await rec.pub_count("alice", channel, len(result["published"]))

    await bob.publish(channel, encode_data(protocol, {"source": "client", "n": 3}))
    result["published"].append({"source": "client"})
    await rec.pub_count("alice", channel, len(result["published"]))

    # A duplicate would arrive within this pause.
    await asyncio.sleep(0.3)
    await bob.disconnect()
    await alice.disconnect()


if __name__ == "__main__":
    main("receive", scenario)
