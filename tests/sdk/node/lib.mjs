// Shared helpers of the Node scenario scripts (run by tests/tests/sdk_node.rs).
//
// Every scenario script:
// - takes `--key value` arguments (see `parseArgs`), e.g. `--url ws://127.0.0.1:8000/connection/websocket
//   --protocol json --secret S --api http://127.0.0.1:8000/api --api-key K --channel chat:1`;
// - drives the unmodified `centrifuge` SDK (JSON build, or `centrifuge/build/protobuf` with
//   `--protocol protobuf`) over the `ws` package;
// - prints exactly ONE JSON line to stdout: `{"ok":true,...}` on success, `{"ok":false,"error":…,…}`
//   on an internal failure (then exits non-zero), always within `--timeout` ms (default 30000);
// - logs to stderr. A line `GYRE-STEP <name>` on stderr asks the driver to do something (restart
//   Redis…); the script then waits for one line on stdin as the driver's acknowledgement.

import { createHmac } from 'node:crypto';
import { execFile } from 'node:child_process';
import { createInterface } from 'node:readline';
import WebSocket from 'ws';
import { EventSource } from 'eventsource';
import SockJS from 'sockjs-client';

const started = Date.now();

/** Milliseconds since the script started (timestamps of recorded events). */
export function elapsed() {
  return Date.now() - started;
}

/** `--key value` pairs (and bare `--flag` = true) into an object; numbers stay strings. */
export function parseArgs(argv = process.argv.slice(2)) {
  const out = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (!a.startsWith('--')) throw new Error(`unexpected argument ${JSON.stringify(a)}`);
    const eq = a.indexOf('=');
    if (eq > 0) {
      out[a.slice(2, eq)] = a.slice(eq + 1);
    } else if (i + 1 < argv.length && !argv[i + 1].startsWith('--')) {
      out[a.slice(2)] = argv[++i];
    } else {
      out[a.slice(2)] = true;
    }
  }
  return out;
}

/** A required argument. */
export function need(args, key) {
  const v = args[key];
  if (v === undefined || v === true || v === '') throw new Error(`missing --${key}`);
  return v;
}

export function log(...parts) {
  process.stderr.write(`[${elapsed()}ms] ${parts.map(p => (typeof p === 'string' ? p : JSON.stringify(p))).join(' ')}\n`);
}

export function sleep(ms) {
  return new Promise(resolve => setTimeout(resolve, ms));
}

// ---------------------------------------------------------------------------------------------
// JWT (HS256), signed here with node:crypto.

function b64url(buf) {
  return Buffer.from(buf).toString('base64').replace(/=+$/, '').replace(/\+/g, '-').replace(/\//g, '_');
}

/** HS256 JWT over `claims` (an object) with `secret`. */
export function signHS256(secret, claims) {
  const header = b64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }));
  const payload = b64url(JSON.stringify(claims));
  const sig = b64url(createHmac('sha256', secret).update(`${header}.${payload}`).digest());
  return `${header}.${payload}.${sig}`;
}

/** Unix seconds now. */
export function nowSec() {
  return Math.floor(Date.now() / 1000);
}

/** Connection token of `user`: expires in `ttl` seconds (negative = already expired). */
export function connToken(secret, user, { ttl = 3600, info } = {}) {
  const claims = { sub: user, iat: nowSec(), exp: nowSec() + ttl };
  if (info !== undefined) claims.info = info;
  return signHS256(secret, claims);
}

// ---------------------------------------------------------------------------------------------
// SDK loading and value normalisation (JSON vs Protobuf build).

/** The SDK module for `protocol` ('json' or 'protobuf'). */
export async function loadSdk(protocol) {
  if (protocol === 'json') return import('centrifuge');
  if (protocol === 'protobuf') return import('centrifuge/build/protobuf');
  throw new Error(`--protocol must be json or protobuf, not ${JSON.stringify(protocol)}`);
}

/** A number from a JS number, a protobufjs Long or a numeric string; undefined stays undefined. */
export function num(v) {
  if (v === undefined || v === null) return v;
  if (typeof v === 'object' && typeof v.toNumber === 'function') return v.toNumber();
  return Number(v);
}

/** Publication/info data as a JSON value: JSON clients get objects, Protobuf clients bytes. */
export function decodeData(d) {
  if (d === undefined || d === null) return d;
  if (d instanceof Uint8Array || d instanceof ArrayBuffer) {
    const text = new TextDecoder().decode(d);
    if (text === '') return null;
    try {
      return JSON.parse(text);
    } catch {
      return { undecodable: text };
    }
  }
  return d;
}

/** Data to hand to `publish`: bytes for Protobuf clients, the value itself for JSON clients. */
export function encodeData(protocol, value) {
  return protocol === 'protobuf' ? new TextEncoder().encode(JSON.stringify(value)) : value;
}

function infoOf(info) {
  if (!info) return undefined;
  const out = { client: info.client, user: info.user };
  const connInfo = info.connInfo ?? info.conn_info;
  const chanInfo = info.chanInfo ?? info.chan_info;
  if (connInfo !== undefined && connInfo !== null && !(connInfo instanceof Uint8Array && connInfo.length === 0)) {
    out.connInfo = decodeData(connInfo);
  }
  if (chanInfo !== undefined && chanInfo !== null && !(chanInfo instanceof Uint8Array && chanInfo.length === 0)) {
    out.chanInfo = decodeData(chanInfo);
  }
  return out;
}

/** A publication (subscription event or history entry) as plain JSON. */
export function pubOf(ctx) {
  const p = { offset: num(ctx.offset) ?? 0, data: decodeData(ctx.data) };
  const info = infoOf(ctx.info);
  if (info) p.info = info;
  if (ctx.tags && Object.keys(ctx.tags).length > 0) p.tags = ctx.tags;
  return p;
}

function errOf(e) {
  if (!e) return e;
  const out = { code: e.code, message: e.message };
  if (e.temporary) out.temporary = true;
  return out;
}

/** Presence result as `{clientId: {client, user, connInfo?, chanInfo?}}`. */
export function presenceOf(res) {
  const out = {};
  for (const [id, info] of Object.entries(res.clients || {})) out[id] = infoOf(info);
  return out;
}

export function historyOf(res) {
  return { offset: num(res.offset) ?? 0, epoch: res.epoch || '', publications: (res.publications || []).map(pubOf) };
}

// ---------------------------------------------------------------------------------------------
// Clients and recording of what they observe.

/**
 * A recorder collects what clients and subscriptions observe, in order:
 * `events` (every state change, error, join, leave, subscribed…) and `pubs[channel]`.
 */
export class Recorder {
  constructor() {
    this.events = [];
    this.pubs = {};
    this.waiters = [];
  }

  add(ev) {
    ev.t = elapsed();
    this.events.push(ev);
    this.poke();
  }

  poke() {
    for (const w of [...this.waiters]) {
      let done = false;
      try {
        done = w.cond();
      } catch (e) {
        w.reject(e);
        this.waiters = this.waiters.filter(x => x !== w);
        continue;
      }
      if (done) {
        w.resolve();
        this.waiters = this.waiters.filter(x => x !== w);
      }
    }
  }

  /** Resolves once `cond()` is true (checked now and after every recorded event). */
  until(what, cond, timeoutMs = 10000) {
    return new Promise((resolve, reject) => {
      if (cond()) return resolve();
      const w = { cond, resolve: null, reject: null };
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter(x => x !== w);
        reject(new Error(`timed out after ${timeoutMs}ms waiting for ${what}`));
      }, timeoutMs);
      w.resolve = () => { clearTimeout(timer); resolve(); };
      w.reject = e => { clearTimeout(timer); reject(e); };
      this.waiters.push(w);
    });
  }

  /** Events of `who` (a client label) named `ev`. */
  of(who, ev) {
    return this.events.filter(e => e.who === who && e.ev === ev);
  }

  pubsOf(who, channel) {
    return (this.pubs[`${who} ${channel}`] ||= []);
  }

  /** Records the client events of `client` under the label `who`. */
  watchClient(who, client) {
    client.on('connecting', ctx => this.add({ who, ev: 'connecting', code: ctx.code, reason: ctx.reason }));
    client.on('connected', ctx => this.add({ who, ev: 'connected', client: ctx.client, transport: ctx.transport }));
    client.on('disconnected', ctx => this.add({ who, ev: 'disconnected', code: ctx.code, reason: ctx.reason }));
    client.on('error', ctx => this.add({ who, ev: 'error', type: ctx.type, error: errOf(ctx.error) }));
    return client;
  }

  /** Records the events and publications of subscription `sub` under the label `who`. */
  watchSub(who, sub) {
    const channel = sub.channel;
    sub.on('subscribing', ctx => this.add({ who, channel, ev: 'subscribing', code: ctx.code, reason: ctx.reason }));
    sub.on('subscribed', ctx => {
      const ev = {
        who, channel, ev: 'subscribed',
        recoverable: !!ctx.recoverable,
        positioned: !!ctx.positioned,
        wasRecovering: !!ctx.wasRecovering,
        recovered: !!ctx.recovered,
        hasRecoveredPublications: !!ctx.hasRecoveredPublications,
      };
      if (ctx.streamPosition) {
        ev.streamPosition = { offset: num(ctx.streamPosition.offset) ?? 0, epoch: ctx.streamPosition.epoch || '' };
      }
      this.add(ev);
    });
    sub.on('unsubscribed', ctx => this.add({ who, channel, ev: 'unsubscribed', code: ctx.code, reason: ctx.reason }));
    sub.on('error', ctx => this.add({ who, channel, ev: 'error', type: ctx.type, error: errOf(ctx.error) }));
    sub.on('join', ctx => this.add({ who, channel, ev: 'join', info: infoOf(ctx.info) }));
    sub.on('leave', ctx => this.add({ who, channel, ev: 'leave', info: infoOf(ctx.info) }));
    sub.on('publication', ctx => {
      const p = pubOf(ctx);
      p.t = elapsed();
      this.pubsOf(who, channel).push(p);
      this.poke();
    });
    return sub;
  }

  /** Waits until `who`'s connected-event count reaches `n`; returns the last one. */
  async connected(who, n = 1, timeoutMs = 10000) {
    await this.until(`${who} connected (#${n})`, () => this.of(who, 'connected').length >= n, timeoutMs);
    return this.of(who, 'connected')[n - 1];
  }

  async subscribed(who, channel, n = 1, timeoutMs = 10000) {
    const list = () => this.events.filter(e => e.who === who && e.channel === channel && e.ev === 'subscribed');
    await this.until(`${who} subscribed to ${channel} (#${n})`, () => list().length >= n, timeoutMs);
    return list()[n - 1];
  }

  /** Waits until `who` received a publication on `channel` satisfying `pred`. */
  async pubWhere(who, channel, what, pred, timeoutMs = 10000) {
    await this.until(`${who} publication on ${channel}: ${what}`, () => this.pubsOf(who, channel).some(pred), timeoutMs);
  }

  /** Waits until `who` received `n` publications on `channel`. */
  async pubCount(who, channel, n, timeoutMs = 10000) {
    await this.until(`${who}: ${n} publications on ${channel}`, () => this.pubsOf(who, channel).length >= n, timeoutMs);
  }
}

/**
 * The SDK's endpoint and transport options for the WebSocket `url` of gyre, per the script's
 * `--transport`: `websocket` (default), or a fallback — `http_stream`, `sse` (the `eventsource`
 * package stands in for the browser's EventSource) or `sockjs` (`sockjs-client`) — on the same
 * host. `--emulation-endpoint` sends the emulated transports' commands to another URL (another
 * gyre node, to test routing between nodes).
 */
export function transportOptions(url, args = parseArgs()) {
  const transport = args.transport || 'websocket';
  if (transport === 'websocket') return { endpoint: url, options: { websocket: WebSocket } };
  const base = url.replace(/^ws/, 'http').replace(/\/connection\/websocket$/, '');
  const options = { websocket: WebSocket, eventsource: EventSource, sockjs: SockJS };
  // The SDK's default, '/emulation', is relative to a browser page: Node's fetch needs a full URL.
  options.emulationEndpoint = args['emulation-endpoint'] || `${base}/emulation`;
  if (transport === 'sockjs') {
    // One sockjs-client sub-transport per run (`--sockjs-transport xhr-polling`, …).
    if (args['sockjs-transport']) options.sockjsOptions = { transports: [args['sockjs-transport']] };
  }
  const endpoints = { http_stream: 'http_stream', sse: 'sse', sockjs: 'sockjs' };
  if (!endpoints[transport]) throw new Error(`unknown --transport ${JSON.stringify(transport)}`);
  return { endpoint: [{ transport, endpoint: `${base}/connection/${endpoints[transport]}` }], options };
}

/**
 * SDK options that make every request of a client carry `cookie`, as a browser does for the
 * page's cookies: the WebSocket upgrade (`ws` takes headers), the HTTP-stream and `/emulation`
 * requests (`fetch`), and the EventSource request (its `fetch`). Only the transports' own
 * constructors are replaced; the SDK itself is untouched.
 */
export function withCookie(cookie) {
  const fetchWithCookie = (url, init = {}) =>
    globalThis.fetch(url, { ...init, headers: { ...(init.headers || {}), Cookie: cookie } });
  class CookieWebSocket extends WebSocket {
    constructor(address, protocols) {
      super(address, protocols, { headers: { Cookie: cookie } });
    }
  }
  class CookieEventSource extends EventSource {
    constructor(url, init = {}) {
      super(url, { ...init, fetch: fetchWithCookie });
    }
  }
  return { websocket: CookieWebSocket, fetch: fetchWithCookie, eventsource: CookieEventSource };
}

/**
 * A `Centrifuge` client of `sdk` for `url` (over `--transport`, see `transportOptions`), recorded
 * by `rec` as `who` (not connected yet). Fast reconnects so tests stay short.
 */
export function newClient(sdk, url, rec, who, options = {}) {
  const transport = transportOptions(url);
  const client = new sdk.Centrifuge(transport.endpoint, {
    ...transport.options,
    name: 'gyre-sdk-test',
    minReconnectDelay: 100,
    maxReconnectDelay: 1000,
    timeout: 5000,
    ...options,
  });
  rec.watchClient(who, client);
  return client;
}

/** A subscription of `client` to `channel`, recorded as `who` (not subscribed yet). */
export function newSub(client, rec, who, channel, options = {}) {
  const sub = client.newSubscription(channel, { minResubscribeDelay: 100, maxResubscribeDelay: 1000, ...options });
  rec.watchSub(who, sub);
  return sub;
}

/** Runs `promise`; returns `{ok: value}` or `{error: {code, message}}` (SDK errors are plain objects). */
export async function settle(promise) {
  try {
    return { ok: await promise };
  } catch (e) {
    if (e && typeof e === 'object' && 'code' in e) return { error: errOf(e) };
    return { error: { code: -1, message: String(e && e.message ? e.message : e) } };
  }
}

// ---------------------------------------------------------------------------------------------
// Publishing from outside the SDK: the HTTP server API and redis-cli.

/** POST `{api}/{method}` with X-API-Key; returns `result`, throws on transport or API errors. */
export async function apiCall(api, key, method, body) {
  const res = await fetch(`${api.replace(/\/+$/, '')}/${method}`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', 'X-API-Key': key },
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(5000),
  });
  const text = await res.text();
  if (res.status !== 200) throw new Error(`API ${method}: HTTP ${res.status}: ${text.slice(0, 300)}`);
  let reply;
  try {
    reply = JSON.parse(text);
  } catch {
    throw new Error(`API ${method}: not JSON: ${text.slice(0, 300)}`);
  }
  if (reply.error) {
    const e = new Error(`API ${method}: error ${reply.error.code} ${reply.error.message}`);
    e.apiError = reply.error;
    throw e;
  }
  return reply.result ?? {};
}

/** Publishes `data` through the HTTP API; returns `{offset, epoch}`. */
export async function apiPublish(args, channel, data, extra = {}) {
  const r = await apiCall(need(args, 'api'), need(args, 'api-key'), 'publish', { channel, data, ...extra });
  return { offset: num(r.offset) ?? 0, epoch: r.epoch || '' };
}

/**
 * `redis-cli GYRE.PUBLISH <channel> <json>` against `--redis-port` (and `--redis-host`, default
 * 127.0.0.1); extra arguments (e.g. HISTORY 100 300) follow. Returns `{offset, epoch}`.
 * `--redis-tls-ca FILE` talks TLS to a server whose certificate that CA signed;
 * `--redis-user` and `--redis-password` authenticate (AUTH [user] password).
 */
export function redisPublish(args, channel, data, extra = []) {
  // -c follows a Redis Cluster's redirects, as users do; it changes nothing for one server.
  const argv = ['-c', '-h', args['redis-host'] || '127.0.0.1', '-p', String(need(args, 'redis-port'))];
  if (args['redis-tls-ca']) argv.push('--tls', '--cacert', args['redis-tls-ca']);
  if (args['redis-user']) argv.push('--user', args['redis-user']);
  if (args['redis-password']) argv.push('--pass', args['redis-password'], '--no-auth-warning');
  argv.push('GYRE.PUBLISH', channel, JSON.stringify(data), ...extra);
  return new Promise((resolve, reject) => {
    execFile('redis-cli', argv, { timeout: 5000 }, (err, stdout, stderr) => {
      const shown = argv.map(a => (a === args['redis-password'] ? '***' : a)).join(' ');
      if (err) return reject(new Error(`redis-cli ${shown}: ${err.message.replaceAll(args['redis-password'] || '\0', '***')} ${stderr}`));
      // Two lines: the offset and the epoch (empty for a channel without history).
      const lines = stdout.replace(/\n$/, '').split('\n');
      const offset = Number(lines[0]);
      if (lines.length !== 2 || !Number.isInteger(offset)) {
        return reject(new Error(`redis-cli GYRE.PUBLISH answered ${JSON.stringify(stdout)}`));
      }
      resolve({ offset, epoch: lines[1] });
    });
  });
}

// ---------------------------------------------------------------------------------------------
// Steps: ask the driver (the Rust test) to do something, wait for its acknowledgement on stdin.

let stdinLines = null;
let stdinWaiters = [];
let stdinClosed = false;

function stdinSetup() {
  if (stdinLines) return;
  stdinLines = [];
  const rl = createInterface({ input: process.stdin });
  rl.on('line', line => {
    const w = stdinWaiters.shift();
    if (w) w.resolve(line);
    else stdinLines.push(line);
  });
  rl.on('close', () => {
    stdinClosed = true;
    for (const w of stdinWaiters) w.reject(new Error('stdin closed: no driver to run the step'));
    stdinWaiters = [];
  });
}

/** Asks the driver to perform step `name` and waits (at most `timeoutMs`) for its answer line. */
export async function step(name, timeoutMs = 30000) {
  stdinSetup();
  process.stderr.write(`GYRE-STEP ${name}\n`);
  log(`waiting for the driver to do step ${name}`);
  const line = await new Promise((resolve, reject) => {
    if (stdinLines.length > 0) return resolve(stdinLines.shift());
    if (stdinClosed) return reject(new Error('stdin closed: no driver to run the step'));
    const timer = setTimeout(() => reject(new Error(`driver did not finish step ${name} within ${timeoutMs}ms`)), timeoutMs);
    stdinWaiters.push({
      resolve: v => { clearTimeout(timer); resolve(v); },
      reject: e => { clearTimeout(timer); reject(e); },
    });
  });
  if (line.startsWith('ERR')) throw new Error(`driver failed step ${name}: ${line}`);
  log(`driver did step ${name}: ${line}`);
  return line;
}

// ---------------------------------------------------------------------------------------------
// Entry point.

let finished = false;

function finish(line, code) {
  if (finished) return;
  finished = true;
  process.stdout.write(JSON.stringify(line) + '\n', () => process.exit(code));
  // In case the write callback never comes (closed pipe).
  setTimeout(() => process.exit(code), 2000).unref();
}

/**
 * Runs `scenario(args, result)`; `result` is the object printed at the end (the scenario fills it
 * as it goes, so a failure still shows what was observed). Prints one JSON line and exits:
 * 0 on success, 1 on an error, 2 on a timeout.
 */
export function main(name, scenario) {
  let args;
  const result = { ok: false, scenario: name };
  try {
    args = parseArgs();
  } catch (e) {
    finish({ ...result, error: String(e.message || e) }, 1);
    return;
  }
  result.protocol = args.protocol || 'json';
  const timeoutMs = Number(args.timeout || 30000);
  setTimeout(() => {
    finish({ ...result, ok: false, error: `scenario timed out after ${timeoutMs}ms` }, 2);
  }, timeoutMs);
  process.on('unhandledRejection', e => {
    log('unhandled rejection', String(e && e.stack ? e.stack : JSON.stringify(e)));
  });
  (async () => {
    const sdk = await loadSdk(result.protocol);
    await scenario({ args, result, sdk, protocol: result.protocol });
  })().then(
    () => finish({ ...result, ok: true }, 0),
    e => {
      log('scenario failed:', String(e && e.stack ? e.stack : JSON.stringify(e)));
      const msg = e && e.message ? e.message : (e && typeof e === 'object' ? JSON.stringify(e) : String(e));
      finish({ ...result, ok: false, error: msg }, 1);
    },
  );
}

// ---------------------------------------------------------------------------------------------
// The browser.

/**
 * Debian's Chromium, headless, through playwright-core (`--chromium PATH` or $CHROMIUM overrides
 * /usr/bin/chromium). Root in CI: no sandbox. The other flags keep it off the (closed) network.
 */
export async function launchChromium(args) {
  const { chromium } = await import('playwright-core');
  return chromium.launch({
    executablePath: args.chromium || process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--no-first-run'],
  });
}
