"""Shared helpers of the Python scenario scripts (run by tests/tests/sdk_python.rs).

Every scenario script:
- takes ``--key value`` arguments (see ``parse_args``), e.g. ``--url ws://127.0.0.1:8000/connection/websocket
  --protocol json --secret S --api http://127.0.0.1:8000/api --api-key K --channel chat:1``;
- drives the unmodified ``centrifuge-python`` SDK (JSON, or Protobuf with ``--protocol protobuf``);
- prints exactly ONE JSON line to stdout: ``{"ok": true, ...}`` on success, ``{"ok": false, "error": ...}``
  on an internal failure (then exits non-zero), always within ``--timeout`` ms (default 30000);
- logs to stderr.
"""

import asyncio
import base64
import hashlib
import hmac
import json
import os
import sys
import threading
import time
import traceback
from typing import Any, Callable, Dict, List, Optional

from centrifuge import (
    Client,
    ClientEventHandler,
    ConnectedContext,
    ConnectingContext,
    DisconnectedContext,
    ErrorContext,
    JoinContext,
    LeaveContext,
    PublicationContext,
    ReplyError,
    SubscribedContext,
    SubscribingContext,
    Subscription,
    SubscriptionErrorContext,
    SubscriptionEventHandler,
    UnsubscribedContext,
)

_STARTED = time.monotonic()


def elapsed() -> int:
    """Milliseconds since the script started (timestamps of recorded events)."""
    return int((time.monotonic() - _STARTED) * 1000)


def log(*parts: Any) -> None:
    text = " ".join(p if isinstance(p, str) else json.dumps(p, default=str) for p in parts)
    sys.stderr.write(f"[{elapsed()}ms] {text}\n")
    sys.stderr.flush()


def parse_args(argv: Optional[List[str]] = None) -> Dict[str, Any]:
    """``--key value`` pairs (and bare ``--flag`` = True) into a dict; values stay strings."""
    argv = sys.argv[1:] if argv is None else argv
    out: Dict[str, Any] = {}
    i = 0
    while i < len(argv):
        a = argv[i]
        if not a.startswith("--"):
            raise ValueError(f"unexpected argument {a!r}")
        if "=" in a:
            k, v = a[2:].split("=", 1)
            out[k] = v
        elif i + 1 < len(argv) and not argv[i + 1].startswith("--"):
            out[a[2:]] = argv[i + 1]
            i += 1
        else:
            out[a[2:]] = True
        i += 1
    return out


def need(args: Dict[str, Any], key: str) -> str:
    v = args.get(key)
    if v is None or v is True or v == "":
        raise ValueError(f"missing --{key}")
    return v


# ---------------------------------------------------------------------------------------------
# JWT (HS256), signed here with hmac + hashlib.


def _b64url(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def sign_hs256(secret: str, claims: Dict[str, Any]) -> str:
    header = _b64url(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
    payload = _b64url(json.dumps(claims, separators=(",", ":")).encode())
    sig = hmac.new(secret.encode(), f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{_b64url(sig)}"


def conn_token(secret: str, user: str, ttl: int = 3600, info: Any = None) -> str:
    """Connection token of ``user`` expiring in ``ttl`` seconds (negative: already expired)."""
    now = int(time.time())
    claims: Dict[str, Any] = {"sub": user, "iat": now, "exp": now + ttl}
    if info is not None:
        claims["info"] = info
    return sign_hs256(secret, claims)


# ---------------------------------------------------------------------------------------------
# Values.


def decode_data(d: Any) -> Any:
    """Publication/info data as a JSON value: JSON clients get objects, Protobuf clients bytes."""
    if isinstance(d, (bytes, bytearray)):
        if len(d) == 0:
            return None
        try:
            return json.loads(d.decode())
        except (ValueError, UnicodeDecodeError):
            return {"undecodable": d.decode(errors="replace")}
    return d


def encode_data(protocol: str, value: Any) -> Any:
    """Data for ``publish``: bytes for Protobuf clients, the value itself for JSON clients."""
    return json.dumps(value).encode() if protocol == "protobuf" else value


def info_of(info: Any) -> Optional[Dict[str, Any]]:
    if info is None:
        return None
    out: Dict[str, Any] = {"client": info.client, "user": info.user}
    conn_info = decode_data(info.conn_info)
    if conn_info is not None:
        out["connInfo"] = conn_info
    chan_info = decode_data(info.chan_info)
    if chan_info is not None:
        out["chanInfo"] = chan_info
    return out


def pub_of(pub: Any) -> Dict[str, Any]:
    p: Dict[str, Any] = {"offset": int(pub.offset or 0), "data": decode_data(pub.data)}
    info = info_of(pub.info)
    if info:
        p["info"] = info
    if pub.tags:
        p["tags"] = dict(pub.tags)
    return p


def presence_of(res: Any) -> Dict[str, Any]:
    return {cid: info_of(info) for cid, info in res.clients.items()}


def history_of(res: Any) -> Dict[str, Any]:
    return {
        "offset": int(res.offset or 0),
        "epoch": res.epoch or "",
        "publications": [pub_of(p) for p in res.publications],
    }


def error_of(e: BaseException) -> Dict[str, Any]:
    if isinstance(e, ReplyError):
        out: Dict[str, Any] = {"code": e.code, "message": e.message}
        if e.temporary:
            out["temporary"] = True
        return out
    code = getattr(e, "code", -1)
    return {"code": code if isinstance(code, int) else -1, "message": f"{type(e).__name__}: {e}"}


async def settle(coro: Any) -> Dict[str, Any]:
    """Awaits ``coro``; ``{"ok": value}`` or ``{"error": {code, message}}``."""
    try:
        return {"ok": await coro}
    except Exception as e:  # noqa: BLE001 - every failure is a result here
        return {"error": error_of(e)}


# ---------------------------------------------------------------------------------------------
# Recording what clients and subscriptions observe.


class WaitTimeout(Exception):
    """A wait of the scenario ran out (distinct from the scenario's own --timeout)."""


class Recorder:
    """Collects ``events`` (state changes, errors, joins, leaves, subscribed…) and ``pubs``."""

    def __init__(self) -> None:
        self.events: List[Dict[str, Any]] = []
        self.pubs: Dict[str, List[Dict[str, Any]]] = {}
        self._changed = asyncio.Event()

    def add(self, ev: Dict[str, Any]) -> None:
        ev["t"] = elapsed()
        self.events.append(ev)
        self._changed.set()

    def pubs_of(self, who: str, channel: str) -> List[Dict[str, Any]]:
        return self.pubs.setdefault(f"{who} {channel}", [])

    def of(self, who: str, ev: str, channel: Optional[str] = None) -> List[Dict[str, Any]]:
        return [
            e
            for e in self.events
            if e["who"] == who and e["ev"] == ev and (channel is None or e.get("channel") == channel)
        ]

    async def until(self, what: str, cond: Callable[[], bool], timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not cond():
            left = deadline - time.monotonic()
            if left <= 0:
                raise WaitTimeout(f"timed out after {timeout}s waiting for {what}")
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), timeout=min(left, 0.1))
            except asyncio.TimeoutError:
                pass

    async def connected(self, who: str, n: int = 1, timeout: float = 10.0) -> Dict[str, Any]:
        await self.until(f"{who} connected (#{n})", lambda: len(self.of(who, "connected")) >= n, timeout)
        return self.of(who, "connected")[n - 1]

    async def subscribed(self, who: str, channel: str, n: int = 1, timeout: float = 10.0) -> Dict[str, Any]:
        await self.until(
            f"{who} subscribed to {channel} (#{n})",
            lambda: len(self.of(who, "subscribed", channel)) >= n,
            timeout,
        )
        return self.of(who, "subscribed", channel)[n - 1]

    async def pub_count(self, who: str, channel: str, n: int, timeout: float = 10.0) -> None:
        await self.until(
            f"{who}: {n} publications on {channel}",
            lambda: len(self.pubs_of(who, channel)) >= n,
            timeout,
        )


class _ClientEvents(ClientEventHandler):
    def __init__(self, rec: Recorder, who: str) -> None:
        self.rec = rec
        self.who = who

    async def on_connecting(self, ctx: ConnectingContext) -> None:
        self.rec.add({"who": self.who, "ev": "connecting", "code": ctx.code, "reason": ctx.reason})

    async def on_connected(self, ctx: ConnectedContext) -> None:
        ev = {"who": self.who, "ev": "connected", "client": ctx.client}
        if ctx.data:
            ev["data"] = decode_data(ctx.data)
        self.rec.add(ev)

    async def on_disconnected(self, ctx: DisconnectedContext) -> None:
        self.rec.add({"who": self.who, "ev": "disconnected", "code": ctx.code, "reason": ctx.reason})

    async def on_error(self, ctx: ErrorContext) -> None:
        self.rec.add({"who": self.who, "ev": "error", "code": ctx.code, "error": error_of(ctx.error)})


class _SubEvents(SubscriptionEventHandler):
    def __init__(self, rec: Recorder, who: str, channel: str) -> None:
        self.rec = rec
        self.who = who
        self.channel = channel

    def _add(self, ev: Dict[str, Any]) -> None:
        self.rec.add({"who": self.who, "channel": self.channel, **ev})

    async def on_subscribing(self, ctx: SubscribingContext) -> None:
        self._add({"ev": "subscribing", "code": ctx.code, "reason": ctx.reason})

    async def on_subscribed(self, ctx: SubscribedContext) -> None:
        ev: Dict[str, Any] = {
            "ev": "subscribed",
            "recoverable": bool(ctx.recoverable),
            "positioned": bool(ctx.positioned),
            "wasRecovering": bool(ctx.was_recovering),
            "recovered": bool(ctx.recovered),
        }
        if ctx.data:
            ev["data"] = decode_data(ctx.data)
        if ctx.stream_position is not None:
            ev["streamPosition"] = {
                "offset": int(ctx.stream_position.offset or 0),
                "epoch": ctx.stream_position.epoch or "",
            }
        self._add(ev)

    async def on_unsubscribed(self, ctx: UnsubscribedContext) -> None:
        self._add({"ev": "unsubscribed", "code": ctx.code, "reason": ctx.reason})

    async def on_publication(self, ctx: PublicationContext) -> None:
        p = pub_of(ctx.pub)
        p["t"] = elapsed()
        self.rec.pubs_of(self.who, self.channel).append(p)
        self.rec._changed.set()

    async def on_join(self, ctx: JoinContext) -> None:
        self._add({"ev": "join", "info": info_of(ctx.info)})

    async def on_leave(self, ctx: LeaveContext) -> None:
        self._add({"ev": "leave", "info": info_of(ctx.info)})

    async def on_error(self, ctx: SubscriptionErrorContext) -> None:
        self._add({"ev": "error", "code": ctx.code, "error": error_of(ctx.error)})


def new_client(url: str, protocol: str, rec: Recorder, who: str, **kwargs: Any) -> Client:
    """A ``centrifuge.Client`` recorded as ``who`` (not connected yet); fast reconnects."""
    options: Dict[str, Any] = dict(
        use_protobuf=protocol == "protobuf",
        name="gyre-sdk-test",
        timeout=5.0,
        min_reconnect_delay=0.1,
        max_reconnect_delay=1.0,
        proxy=None,
    )
    options.update(kwargs)
    return Client(url, events=_ClientEvents(rec, who), **options)


def new_sub(client: Client, rec: Recorder, who: str, channel: str, **kwargs: Any) -> Subscription:
    options: Dict[str, Any] = dict(min_resubscribe_delay=0.1, max_resubscribe_delay=1.0)
    options.update(kwargs)
    return client.new_subscription(channel, events=_SubEvents(rec, who, channel), **options)


# ---------------------------------------------------------------------------------------------
# Publishing through the HTTP server API with the `cent` client.


async def api_publish(args: Dict[str, Any], channel: str, data: Any, **extra: Any) -> Dict[str, Any]:
    """Publishes with ``cent.AsyncClient`` (POST {api}/publish, X-API-Key); returns {offset, epoch}."""
    from cent import AsyncClient, PublishRequest

    async with _cent_lock:
        global _cent_client
        if _cent_client is None:
            _cent_client = AsyncClient(need(args, "api"), need(args, "api-key"), timeout=5.0)
        client = _cent_client
    result = await client.publish(PublishRequest(channel=channel, data=data, **extra))
    return {"offset": int(result.offset or 0), "epoch": result.epoch or ""}


_cent_client: Any = None
_cent_lock = asyncio.Lock()


async def _close_cent() -> None:
    global _cent_client
    if _cent_client is not None:
        try:
            await _cent_client.close()
        except Exception:  # noqa: BLE001 - closing is best effort
            pass
        _cent_client = None


# ---------------------------------------------------------------------------------------------
# Steps: ask the driver (the Rust test) to do something, wait for its acknowledgement on stdin.

_step_queue: Optional[asyncio.Queue] = None


def _read_stdin(loop: asyncio.AbstractEventLoop, queue: asyncio.Queue) -> None:
    for line in sys.stdin:
        loop.call_soon_threadsafe(queue.put_nowait, line.rstrip("\n"))
    loop.call_soon_threadsafe(queue.put_nowait, None)


async def step(name: str, timeout: float = 30.0) -> str:
    """Writes ``GYRE-STEP <name>`` on stderr and waits for the driver's answer line on stdin."""
    global _step_queue
    if _step_queue is None:
        _step_queue = asyncio.Queue()
        threading.Thread(
            target=_read_stdin, args=(asyncio.get_running_loop(), _step_queue), daemon=True
        ).start()
    sys.stderr.write(f"GYRE-STEP {name}\n")
    sys.stderr.flush()
    log(f"waiting for the driver to do step {name}")
    try:
        line = await asyncio.wait_for(_step_queue.get(), timeout)
    except asyncio.TimeoutError:
        raise WaitTimeout(f"driver did not finish step {name} within {timeout}s") from None
    if line is None:
        raise RuntimeError("stdin closed: no driver to run the step")
    if line.startswith("ERR"):
        raise RuntimeError(f"driver failed step {name}: {line}")
    log(f"driver did step {name}: {line}")
    return line


# ---------------------------------------------------------------------------------------------
# Entry point.


def _finish(line: Dict[str, Any], code: int) -> None:
    sys.stdout.write(json.dumps(line, default=str) + "\n")
    sys.stdout.flush()
    sys.stderr.flush()
    # Skip interpreter teardown: open sockets and pending tasks must not delay the exit.
    os._exit(code)


def main(name: str, scenario: Callable[..., Any]) -> None:
    """Runs ``await scenario(args, result, protocol)``. ``result`` is printed at the end (filled as
    the scenario goes, so a failure still shows what was observed). Prints one JSON line and exits
    0 on success, 1 on an error, 2 on a timeout."""
    result: Dict[str, Any] = {"ok": False, "scenario": name}
    try:
        args = parse_args()
    except ValueError as e:
        _finish({**result, "error": str(e)}, 1)
        return
    protocol = args.get("protocol", "json")
    result["protocol"] = protocol
    timeout = float(args.get("timeout", 30000)) / 1000.0
    if protocol not in ("json", "protobuf"):
        _finish({**result, "error": f"--protocol must be json or protobuf, not {protocol!r}"}, 1)
        return

    def watchdog() -> None:
        _finish({**result, "ok": False, "error": f"scenario hung past its {int(timeout * 1000)}ms timeout"}, 2)

    # Last resort when the event loop itself is stuck.
    hard = threading.Timer(timeout + 5.0, watchdog)
    hard.daemon = True
    hard.start()

    async def run() -> None:
        cm = asyncio.timeout(timeout)
        try:
            async with cm:
                await scenario(args, result, protocol)
        except BaseException as e:  # noqa: BLE001 - every failure becomes the JSON line
            await _close_cent()
            if cm.expired():
                _finish({**result, "ok": False, "error": f"scenario timed out after {int(timeout * 1000)}ms"}, 2)
            log("scenario failed:", traceback.format_exc())
            _finish({**result, "ok": False, "error": f"{type(e).__name__}: {e}"}, 1)
        await _close_cent()
        _finish({**result, "ok": True}, 0)

    asyncio.run(run())
