"""Connection token failures:
- badSignature: a token signed with the wrong secret → the server closes with 3500 (invalid token,
  terminal: the SDK stays disconnected, no reconnect);
- expired: a token whose exp is in the past → connect error 109; the SDK asks get_token for a new
  token, reconnects and succeeds;
- expiredNoRefresh: the same without get_token → the SDK gives up (disconnected, unauthorized).

Arguments: --url --protocol --secret [--timeout]
Result: {badSignature: {disconnected, connectedCount, connectingCount, state}, expired: {errors,
getTokenCalls, connected, state}, expiredNoRefresh: {errors, disconnected, connectedCount, state}}
"""

import asyncio

from gyre_sdk import Recorder, conn_token, main, need, new_client


def errors_of(rec, who):
    return [{"code": e["code"], "error": e["error"]} for e in rec.of(who, "error")]


async def scenario(args, result, protocol):
    url, secret = need(args, "url"), need(args, "secret")

    rec = Recorder()
    result["badSignature"] = {"events": rec.events}
    c = new_client(url, protocol, rec, "mallory", token=conn_token(f"{secret}-wrong", "mallory"))
    await c.connect()
    await rec.until("disconnected after a bad signature", lambda: len(rec.of("mallory", "disconnected")) >= 1)
    # A reconnect attempt would show up within this pause.
    await asyncio.sleep(0.7)
    result["badSignature"].update({
        "disconnected": rec.of("mallory", "disconnected")[0],
        "state": c.state.value,
        "connectedCount": len(rec.of("mallory", "connected")),
        "connectingCount": len(rec.of("mallory", "connecting")),
    })
    await c.disconnect()

    rec = Recorder()
    result["expired"] = {"events": rec.events}
    calls = {"n": 0}

    async def get_token():
        calls["n"] += 1
        return conn_token(secret, "alice")

    c = new_client(url, protocol, rec, "alice", token=conn_token(secret, "alice", ttl=-60), get_token=get_token)
    await c.connect()
    await rec.connected("alice")
    result["expired"].update({
        "errors": errors_of(rec, "alice"),
        "getTokenCalls": calls["n"],
        "connected": True,
        "state": c.state.value,
    })
    await c.disconnect()

    rec = Recorder()
    result["expiredNoRefresh"] = {"events": rec.events}
    c = new_client(url, protocol, rec, "bob", token=conn_token(secret, "bob", ttl=-60))
    await c.connect()
    await rec.until(
        "disconnected after an expired token without get_token",
        lambda: len(rec.of("bob", "disconnected")) >= 1,
    )
    await asyncio.sleep(0.3)
    result["expiredNoRefresh"].update({
        "errors": errors_of(rec, "bob"),
        "disconnected": rec.of("bob", "disconnected")[0],
        "connectedCount": len(rec.of("bob", "connected")),
        "state": c.state.value,
    })
    await c.disconnect()


if __name__ == "__main__":
    main("token_errors", scenario)
