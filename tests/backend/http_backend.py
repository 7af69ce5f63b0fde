#!/usr/bin/env python3
"""An application backend for Gyre's proxy hooks, Python standard library only.

It is the example of the README ("Backend hooks") and the backend of the hook tests
(tests/tests/hooks_*.rs). Every handler answers the JSON body Centrifugo (and Gyre) POSTs:

    POST /centrifugo/connect      who the client is: a session cookie (`session=s-<user>`) or an
                                  emulated `Authorization: Bearer t-<user>` header; else a
                                  disconnect 4501. The `hooks:` channels the client names become
                                  server-side subscriptions (`hooks:expiring-*` ones expire in
                                  SUB_TTL seconds; `cached:` ones recover in cache mode,
                                  `cache_recover`). For tests of failed connects,
                                  `session=e-<code>` is answered with error <code> and
                                  `session=h-<status>` with that HTTP status
    POST /centrifugo/refresh      prolongs the connection by REFRESH_TTL seconds, unless the user is
                                  in the `expire_users` list (then `expired`)
    POST /centrifugo/subscribe    `hooks:denied-*` → error 403; `hooks:expiring-*` → expires in
                                  SUB_TTL seconds; channel data in the subscribe result
    POST /centrifugo/publish      `hooks:readonly-*` → error 403; `hookdelta:` channels keep
                                  the client's data, sent as a delta where possible (`delta`)
                                  and versioned by its `version` field; else the data rewritten
    POST /centrifugo/sub_refresh  prolongs by SUB_TTL, unless `expire_subscriptions` is set
    POST /centrifugo/rpc          methods `echo`, `whoami`, `fail` (error 1001), `bye` (disconnect
                                  4501), `slow` (answers after 3 s), `garbage` (not JSON), `boom`
                                  (HTTP 500)

For the tests it also records every request (GET /requests; body, headers, and the common name
of the client certificate over TLS) and takes settings (POST /control, a JSON object:
`expire_users`, `expire_subscriptions`, `delay_ms`). RPC methods may carry a namespace
(`ns:echo` is `echo`).

Run: python3 http_backend.py [--port 3000]; it prints `LISTENING <port>` once it listens.
HTTPS: --tls-cert server.crt --tls-key server.key, and with --tls-client-ca ca.crt clients
must present a certificate of that CA (the handshake fails without one); it then prints
`LISTENING <port> CONTROL <port>`, the second a plain HTTP port for /requests and /control.
"""

import json
import ssl
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

REFRESH_TTL = 3
SUB_TTL = 2

SESSIONS = {"s-alice": "alice", "s-bob": "bob", "s-carol": "carol"}

STATE = {
    "lock": threading.Lock(),
    "requests": [],
    "expire_users": [],
    "expire_subscriptions": False,
    "delay_ms": 0,
}


def user_from(headers, body):
    """The session cookie, else a bearer token sent by headers emulation."""
    for part in headers.get("cookie", "").split(";"):
        name, _, value = part.strip().partition("=")
        if name == "session" and value in SESSIONS:
            return SESSIONS[value]
    auth = headers.get("authorization", "")
    if auth.startswith("Bearer t-"):
        return auth[len("Bearer t-"):]
    return None


def check_common(body):
    """Every request carries the client, its transport, protocol and encoding."""
    problems = []
    if not body.get("client"):
        problems.append("no client")
    if body.get("transport") not in (
        "websocket", "http_stream", "sse", "sockjs", "uni_websocket", "uni_sse", "uni_http_stream"
    ):
        problems.append(f"transport {body.get('transport')!r}")
    if body.get("protocol") not in ("json", "protobuf"):
        problems.append(f"protocol {body.get('protocol')!r}")
    if body.get("encoding") not in ("json", "binary"):
        problems.append(f"encoding {body.get('encoding')!r}")
    return problems


def session_of(headers):
    for part in headers.get("cookie", "").split(";"):
        name, _, value = part.strip().partition("=")
        if name == "session":
            return value
    return ""


def connect(body, headers):
    session = session_of(headers)
    if session.startswith("e-"):
        code = int(session[2:])
        return {"error": {"code": code, "message": f"error {code}"}}
    if session.startswith("h-"):
        return int(session[2:])
    user = user_from(headers, body)
    if user is None:
        return {"disconnect": {"code": 4501, "reason": "unauthorized"}}
    result = {
        "user": user,
        "info": {"name": user.capitalize()},
        "data": {"greeting": f"hello {user}", "client_data": body.get("data")},
        "meta": {"plan": "gold", "user": user},
    }
    data = body.get("data") or {}
    if isinstance(data, dict) and data.get("expire_in"):
        result["expire_at"] = int(time.time()) + int(data["expire_in"])
    # Server-side subscriptions: the ones the client asks for in the hooks namespace;
    # `hooks:expiring-*` ones expire in SUB_TTL seconds (then sub_refresh decides).
    channels = [c for c in body.get("channels", []) if c.startswith("hooks:")]
    plain = [c for c in channels if not c.startswith("hooks:expiring")]
    expiring = [c for c in channels if c.startswith("hooks:expiring")]
    cached = [c for c in body.get("channels", []) if c.startswith("cached:")]
    if plain:
        result["channels"] = plain
    subs = {c: {"expire_at": int(time.time()) + SUB_TTL} for c in expiring}
    subs.update({c: {"cache_recover": True} for c in cached})
    if subs:
        result["subs"] = subs
    return {"result": result}


def refresh(body, headers):
    if body.get("user") in STATE["expire_users"]:
        return {"result": {"expired": True}}
    return {"result": {"expire_at": int(time.time()) + REFRESH_TTL,
                       "info": {"name": body.get("user", "").capitalize(), "refreshed": True}}}


def subscribe(body, headers):
    channel = body.get("channel", "")
    if channel.startswith("hooks:denied"):
        return {"error": {"code": 403, "message": "permission denied"}}
    result = {"data": {"welcome": channel, "user": body.get("user"), "meta": body.get("meta")},
              "info": {"role": "reader"}}
    if channel.startswith("hooks:expiring"):
        result["expire_at"] = int(time.time()) + SUB_TTL
    return {"result": result}


def publish(body, headers):
    channel = body.get("channel", "")
    if channel.startswith("hooks:readonly"):
        return {"error": {"code": 403, "message": "read only"}}
    data = body.get("data")
    if channel.startswith("hookdelta:"):
        result = {"delta": True}
        if isinstance(data, dict) and data.get("version"):
            result["version"] = data["version"]
        return {"result": result}
    text = data.get("text") if isinstance(data, dict) else data
    return {"result": {"data": {"text": text, "by": body.get("user"), "checked": True}}}


def sub_refresh(body, headers):
    if STATE["expire_subscriptions"]:
        return {"result": {"expired": True}}
    return {"result": {"expire_at": int(time.time()) + SUB_TTL}}


def rpc(body, headers):
    method = (body.get("method") or "").split(":")[-1]
    if method == "echo":
        return {"result": {"data": {"echo": body.get("data"), "user": body.get("user")}}}
    if method == "whoami":
        return {"result": {"data": {"user": body.get("user"), "meta": body.get("meta")}}}
    if method == "fail":
        return {"error": {"code": 1001, "message": "rpc failed"}}
    if method == "bye":
        return {"disconnect": {"code": 4501, "reason": "go away"}}
    if method == "slow":
        time.sleep(3)
        return {"result": {}}
    if method == "garbage":
        return "garbage"
    if method == "boom":
        return 500
    return {"error": {"code": 1404, "message": "unknown method"}}


HANDLERS = {
    "/centrifugo/connect": connect,
    "/centrifugo/refresh": refresh,
    "/centrifugo/subscribe": subscribe,
    "/centrifugo/publish": publish,
    "/centrifugo/sub_refresh": sub_refresh,
    "/centrifugo/rpc": rpc,
}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        sys.stderr.write("backend: " + (fmt % args) + "\n")

    def reply(self, status, payload):
        raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def do_GET(self):
        if self.path == "/requests":
            with STATE["lock"]:
                self.reply(200, STATE["requests"])
        else:
            self.reply(404, {"error": "not found"})

    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        raw = self.rfile.read(length)
        if self.path == "/control":
            with STATE["lock"]:
                STATE.update(json.loads(raw or b"{}"))
            self.reply(200, {})
            return
        handler = HANDLERS.get(self.path)
        if handler is None:
            self.reply(404, {"error": "no such hook"})
            return
        body = json.loads(raw)
        # Header names are case-insensitive: keep them lowercase.
        headers = {name.lower(): value for name, value in self.headers.items()}
        with STATE["lock"]:
            STATE["requests"].append({
                "path": self.path,
                "body": body,
                "headers": headers,
                "problems": check_common(body),
                "client_cert": client_common_name(self.connection),
            })
            delay = STATE["delay_ms"]
        if delay:
            time.sleep(delay / 1000)
        answer = handler(body, headers)
        if answer == "garbage":
            self.reply(200, b"this is not JSON")
        elif isinstance(answer, int):
            self.reply(answer, {"error": "backend failure"})
        else:
            self.reply(200, answer)


def client_common_name(connection):
    """The CN of the client certificate of a TLS connection, else None."""
    if not isinstance(connection, ssl.SSLSocket):
        return None
    cert = connection.getpeercert() or {}
    for rdn in cert.get("subject", ()):
        for name, value in rdn:
            if name == "commonName":
                return value
    return None


class TlsServer(ThreadingHTTPServer):
    """HTTPS: each accepted connection does its TLS handshake in its own thread, so a client
    that fails or stalls it holds up no one else."""

    context = None

    def process_request_thread(self, request, client_address):
        try:
            request = self.context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as error:
            sys.stderr.write(f"backend: TLS handshake failed: {error}\n")
            self.shutdown_request(request)
            return
        super().process_request_thread(request, client_address)


def arg(name):
    return sys.argv[sys.argv.index(name) + 1] if name in sys.argv else None


def main():
    port = int(arg("--port") or 3000)
    cert = arg("--tls-cert")
    if cert:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, arg("--tls-key"))
        client_ca = arg("--tls-client-ca")
        if client_ca:
            context.load_verify_locations(client_ca)
            context.verify_mode = ssl.CERT_REQUIRED
        TlsServer.context = context
        server = TlsServer(("127.0.0.1", port), Handler)
        # GET /requests and POST /control in plain HTTP too, for test harnesses.
        control = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        control.daemon_threads = True
        threading.Thread(target=control.serve_forever, daemon=True).start()
        print(f"LISTENING {server.server_address[1]} CONTROL {control.server_address[1]}",
              flush=True)
    else:
        server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        print(f"LISTENING {server.server_address[1]}", flush=True)
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()
