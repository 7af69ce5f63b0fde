// The chaos scenario (run by tests/tests/chaos.rs): many subscribers on several gyre nodes, steady
// publishing through every node's API, and a fault the driver injects meanwhile.
//
// --clients-per-node clients connect to each node of --urls (comma-separated); client i of a node
// subscribes to --subs-per-client of the --channels (comma-separated), round robin, so every
// channel has subscribers on every node (JSON protocol). A client whose connection drops
// reconnects to the next node of --urls in turn (its WebSocket constructor picks the URL; the SDK
// itself is untouched), so after a node dies its clients go on elsewhere.
//
// Each subscription is recorded twice: `seen`, what the SDK emitted (subscribed events and
// publications), and `wire`, what gyre sent in the order it arrived (subscribe replies with their
// recovered publications, publication pushes), read from the socket before the SDK. Order is
// judged on the wire: centrifuge-js 5.7.4 dispatches WebSocket messages that arrive together
// concurrently (a message's replies start before the previous message's are done), so its
// publication events can come out of order although the server sent them in order.
//
// One publisher per node of --apis publishes {id, pad} to the channels in turn, one every --pace
// ms, and records every acknowledgement (channel, id, epoch, offset, sentAt) and every failure
// (not retried: a publish that failed may or may not have been applied). Once --warmup
// publications were acknowledged, the driver is asked for step `fault` (it may take up to
// --fault-timeout ms); publishing goes on meanwhile and until every publisher had --after more
// acknowledged after the step. Then one last publication per channel (retried with an idempotency
// key until acknowledged) must reach every subscriber of the channel; the script waits for that
// (at most --settle ms; a subscriber still waiting is listed in `unsettled`), then 500 ms for
// duplicates.
//
// Arguments: --urls --apis --api-key --secret --channels [--clients-per-node 3]
//   [--subs-per-client 2] [--pace 20] [--pad 0] [--warmup 30] [--after 20]
//   [--fault-timeout 60000] [--settle 30000] [--timeout]
// Result: {acked: [{channel, id, epoch, offset, sentAt}], failed: [{channel, id, sentAt, error}],
//   subscriptions: [{who, channel, seen, wire}] (both lists of {ev: 'subscribed', t, wasRecovering,
//   recovered, epoch, offset} | {ev: 'pub', t, offset, id}), clients: [{who, home, urls, events}], unsettled,
//   faultAt, faultDoneAt}. Times are unix ms.
import WebSocket from 'ws';
import { main, need, connToken, num, step, sleep, log } from './lib.mjs';

/**
 * A WebSocket class that starts on `urls[home]` and moves to the next URL at every reconnect, and
 * records what gyre sent, in the order it arrived, before the SDK sees it: `wire(channel)` is the
 * log of the client's subscription to `channel`, which gets the subscribe replies (matched to
 * their commands by id) with their recovered publications, and the publication pushes.
 */
function rotatingWebSocket(urls, home, record, wire) {
  let attempt = 0;
  return class extends WebSocket {
    constructor(_address, protocols) {
      const url = urls[(home + attempt) % urls.length];
      attempt += 1;
      record.urls.push(url);
      super(url, protocols);
      this.subscribing = new Map();
      // Registered before the SDK's own handler, so it runs first.
      this.on('message', (data, isBinary) => {
        if (!isBinary) this.received(String(data));
      });
    }

    send(data, ...rest) {
      if (typeof data === 'string') {
        for (const line of data.split('\n')) {
          const command = line ? JSON.parse(line) : {};
          if (command.subscribe) this.subscribing.set(command.id, command.subscribe.channel);
        }
      }
      return super.send(data, ...rest);
    }

    received(text) {
      const t = Date.now();
      for (const line of text.split('\n')) {
        if (!line) continue;
        const message = JSON.parse(line);
        const pubOf = p => ({ ev: 'pub', t, offset: num(p.offset) ?? 0, id: idOf(p.data) });
        if (message.push && message.push.pub) {
          const log_ = wire(message.push.channel);
          if (log_) log_.push(pubOf(message.push.pub));
        } else if (message.id && message.subscribe && this.subscribing.has(message.id)) {
          const log_ = wire(this.subscribing.get(message.id));
          const s = message.subscribe;
          if (!log_) continue;
          log_.push({
            ev: 'subscribed', t, wasRecovering: !!s.was_recovering, recovered: !!s.recovered,
            epoch: s.epoch || '', offset: num(s.offset) ?? 0,
          });
          for (const p of s.publications || []) log_.push(pubOf(p));
        }
      }
    }
  };
}

/** The `id` of a publication's data, or the whole data as text when it has none. */
function idOf(data) {
  return data && typeof data.id === 'string' ? data.id : JSON.stringify(data);
}

/** POST {api}/publish; resolves to {offset, epoch}; throws on any failure. */
async function publish(api, key, body) {
  const res = await fetch(`${api}/publish`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', 'X-API-Key': key },
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(5000),
  });
  const text = await res.text();
  if (res.status !== 200) throw new Error(`HTTP ${res.status}: ${text.slice(0, 200)}`);
  const reply = JSON.parse(text);
  if (reply.error) throw new Error(`error ${reply.error.code} ${reply.error.message}`);
  const r = reply.result || {};
  if (!r.epoch) throw new Error(`no position in ${text.slice(0, 200)}`);
  return { offset: num(r.offset) ?? 0, epoch: r.epoch };
}

main('chaos', async ({ args, result, sdk }) => {
  const urls = need(args, 'urls').split(',');
  const apis = need(args, 'apis').split(',');
  const apiKey = need(args, 'api-key');
  const secret = need(args, 'secret');
  const channels = need(args, 'channels').split(',');
  const perNode = Number(args['clients-per-node'] || 3);
  const subsPerClient = Math.min(Number(args['subs-per-client'] || 2), channels.length);
  const pace = Number(args.pace || 20);
  const pad = 'x'.repeat(Number(args.pad || 0));
  const warmup = Number(args.warmup || 30);
  const after = Number(args.after || 20);
  const faultTimeout = Number(args['fault-timeout'] || 60000);
  const settleMs = Number(args.settle || 30000);

  result.acked = [];
  result.failed = [];
  result.subscriptions = [];
  result.clients = [];
  const changed = [];
  const poke = () => { for (const f of [...changed]) f(); };
  const until = (what, cond, timeoutMs) => new Promise((resolve, reject) => {
    if (cond()) return resolve();
    const timer = setTimeout(() => { stop(); reject(new Error(`timed out after ${timeoutMs}ms waiting for ${what}`)); }, timeoutMs);
    const check = () => { if (cond()) { stop(); clearTimeout(timer); resolve(); } };
    const stop = () => { const i = changed.indexOf(check); if (i >= 0) changed.splice(i, 1); };
    changed.push(check);
  });

  // Subscribers.
  const clients = [];
  let c = 0;
  for (let node = 0; node < urls.length; node++) {
    for (let i = 0; i < perNode; i++, c++) {
      const who = `n${node}c${i}`;
      const record = { who, home: node, urls: [], events: [] };
      result.clients.push(record);
      const wires = {};
      const client = new sdk.Centrifuge(urls[node], {
        websocket: rotatingWebSocket(urls, node, record, channel => wires[channel]),
        token: connToken(secret, who),
        name: 'gyre-chaos',
        minReconnectDelay: 100,
        maxReconnectDelay: 1000,
        timeout: 5000,
      });
      for (const ev of ['connected', 'disconnected', 'connecting']) {
        client.on(ev, ctx => { record.events.push({ ev, t: Date.now(), code: ctx.code, reason: ctx.reason }); poke(); });
      }
      client.on('error', ctx => record.events.push({ ev: 'error', t: Date.now(), type: ctx.type, message: String(ctx.error && ctx.error.message) }));
      for (let k = 0; k < subsPerClient; k++) {
        const channel = channels[(c + k) % channels.length];
        const log_ = { who, channel, seen: [], wire: [], other: [] };
        wires[channel] = log_.wire;
        result.subscriptions.push(log_);
        const sub = client.newSubscription(channel, { minResubscribeDelay: 100, maxResubscribeDelay: 1000 });
        sub.on('subscribed', ctx => {
          const pos = ctx.streamPosition || {};
          log_.seen.push({
            ev: 'subscribed', t: Date.now(), wasRecovering: !!ctx.wasRecovering, recovered: !!ctx.recovered,
            epoch: pos.epoch || '', offset: num(pos.offset) ?? 0,
          });
          poke();
        });
        sub.on('publication', ctx => {
          log_.seen.push({ ev: 'pub', t: Date.now(), offset: num(ctx.offset) ?? 0, id: idOf(ctx.data) });
          poke();
        });
        for (const ev of ['subscribing', 'unsubscribed']) {
          sub.on(ev, ctx => log_.other.push({ ev, t: Date.now(), code: ctx.code, reason: ctx.reason }));
        }
        sub.on('error', ctx => log_.other.push({ ev: 'error', t: Date.now(), type: ctx.type, message: String(ctx.error && ctx.error.message) }));
        sub.subscribe();
      }
      client.connect();
      clients.push(client);
    }
  }
  const subscribedOnce = () => result.subscriptions.every(s => s.seen.some(e => e.ev === 'subscribed'));
  await until('every subscription subscribed', subscribedOnce, 20000);
  log(`${result.subscriptions.length} subscriptions of ${clients.length} clients subscribed`);

  // Publishers: one per API, each going through the channels in turn.
  let stopping = false;
  const ackedBy = apis.map(() => 0);
  const publishers = apis.map(async (api, p) => {
    for (let n = 1; !stopping; n++) {
      const channel = channels[(n + p) % channels.length];
      const id = `p${p}-${n}`;
      const sentAt = Date.now();
      try {
        const pos = await publish(api, apiKey, { channel, data: { id, pad } });
        result.acked.push({ channel, id, ...pos, sentAt });
        ackedBy[p] += 1;
        poke();
      } catch (e) {
        result.failed.push({ channel, id, sentAt, error: String(e.message || e) });
      }
      await sleep(pace);
    }
  });
  await until(`${warmup} acknowledged publications`, () => result.acked.length >= warmup, 30000);

  result.faultAt = Date.now();
  await step('fault', faultTimeout);
  result.faultDoneAt = Date.now();
  const base = [...ackedBy];
  await until(`${after} more acknowledged publications through every API`, () => ackedBy.every((n, p) => n >= base[p] + after), 30000);
  stopping = true;
  await Promise.all(publishers);
  log(`publishing stopped: ${result.acked.length} acknowledged, ${result.failed.length} failed`);

  // The last publication of each channel, retried (safely, with an idempotency key) until it is
  // acknowledged, must reach every subscriber of the channel.
  const finals = {};
  await Promise.all(channels.map(async (channel, i) => {
    const id = `final-${channel}`;
    const sentAt = Date.now();
    const deadline = sentAt + 20000;
    for (let attempt = 0; ; attempt++) {
      try {
        const pos = await publish(apis[(i + attempt) % apis.length], apiKey, { channel, data: { id, pad }, idempotency_key: id });
        result.acked.push({ channel, id, ...pos, sentAt });
        finals[channel] = id;
        poke();
        return;
      } catch (e) {
        if (Date.now() > deadline) throw new Error(`the last publication of ${channel} was never acknowledged: ${e.message}`);
        await sleep(100);
      }
    }
  }));
  const settled = s => s.seen.some(e => e.ev === 'pub' && e.id === finals[s.channel]);
  try {
    await until('every subscriber got the last publication of its channel', () => result.subscriptions.every(settled), settleMs);
  } catch (e) {
    log(e.message);
  }
  result.unsettled = result.subscriptions.filter(s => !settled(s)).map(s => `${s.who} ${s.channel}`);
  await sleep(500);
  for (const client of clients) client.disconnect();
});
