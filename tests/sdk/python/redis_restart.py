"""Redis restart while the client stays connected (mirror of node/failover.mjs --step restart-redis): alice
subscribes to --channel (history + force_recovery) and 5 publications go through the HTTP API
(`cent`). Then the driver is asked to restart Redis (step `restart-redis`: stop it, wait, start it
again with its AOF, and publish 3 publications straight into Redis, data {"source":"redis","n":1..3})
and, at the same time, 5 more publications go through the HTTP API, each retried with the same
idempotency key until gyre accepts it. alice stays connected and either ends up with all 13
publications exactly once, in offset order, or is told that continuity was lost (a restart from the
AOF starts a new epoch); either way one more API publication made afterwards must reach her.

Arguments: --url --protocol --secret --api --api-key --channel [--timeout]
Result: {published, received, apiRetries, connectedCount, lostContinuity, events}
"""

import asyncio
import time

from gyre_sdk import Recorder, api_publish, conn_token, log, main, need, new_client, new_sub, step


async def scenario(args, result, protocol):
    url, secret, channel = need(args, "url"), need(args, "secret"), need(args, "channel")
    before, from_redis, after = 5, 3, 5
    rec = Recorder()
    result["events"] = rec.events

    alice = new_client(url, protocol, rec, "alice", token=conn_token(secret, "alice"))
    sub = new_sub(alice, rec, "alice", channel)
    result["received"] = rec.pubs_of("alice", channel)
    await alice.connect()
    await sub.subscribe()
    await rec.connected("alice")
    await rec.subscribed("alice", channel)

    result["published"] = []
    result["apiRetries"] = 0
    counter = {"n": 0}

    async def publish_retrying():
        counter["n"] += 1
        n = counter["n"]
        data = {"source": "api", "n": n}
        deadline = time.monotonic() + 20
        while True:
            try:
                r = await api_publish(args, channel, data, idempotency_key=f"restart-{n}")
                result["published"].append({**data, **r})
                return
            except Exception as e:  # noqa: BLE001 - retried until the deadline
                if time.monotonic() > deadline:
                    raise
                result["apiRetries"] += 1
                log(f"publish {n} failed, retrying: {type(e).__name__}: {e}")
                await asyncio.sleep(0.1)

    for _ in range(before):
        await publish_retrying()
    await rec.pub_count("alice", channel, before)

    restarted = asyncio.ensure_future(step("restart-redis"))
    for _ in range(after):
        await publish_retrying()
    await restarted
    total = before + from_redis + after

    def lost() -> bool:
        return any(
            e.get("wasRecovering") and not e.get("recovered")
            for e in rec.of("alice", "subscribed", channel)
        )

    await rec.until(
        f"alice holds all {total} publications, or was told she lost continuity",
        lambda: len(result["received"]) >= total or lost(),
        timeout=25,
    )
    # Publications resume: one more, made after all that, reaches her.
    await publish_retrying()
    last = result["published"][-1]["n"]
    await rec.until(
        f"the last publication (n={last})",
        lambda: any(p.get("data") == {"source": "api", "n": last} for p in result["received"]),
        timeout=10,
    )
    # A duplicate would arrive within this pause.
    await asyncio.sleep(0.5)
    result["lostContinuity"] = lost()
    result["connectedCount"] = len(rec.of("alice", "connected"))
    await alice.disconnect()


if __name__ == "__main__":
    main("redis_restart", scenario)
