// Recovery: alice subscribes to --channel (a namespace with history and force_recovery, or with
// `--recoverable true` one where she asks for recovery herself), receives 2 live publications,
// disconnects; --count (default 5) publications go through the HTTP API while she is offline; she
// reconnects and must be `recovered` with every missed publication exactly once, in order; then
// one more live publication.
//
// Arguments: --url --protocol --secret --api --api-key --channel [--count] [--recoverable true]
//   [--timeout]
// Result: {published: [{offset, epoch}], subscribedFirst, subscribedAgain, received, events}
import { main, need, Recorder, newClient, newSub, connToken, apiCall, apiPublish, sleep } from './lib.mjs';

main('recovery', async ({ args, result, sdk }) => {
  const url = need(args, 'url');
  const secret = need(args, 'secret');
  const channel = need(args, 'channel');
  const missed = Number(args.count || 5);
  const rec = new Recorder();
  result.events = rec.events;

  const alice = newClient(sdk, url, rec, 'alice', { token: connToken(secret, 'alice') });
  const sub = newSub(alice, rec, 'alice', channel, { recoverable: args.recoverable === 'true' });
  result.received = rec.pubsOf('alice', channel);
  alice.connect();
  sub.subscribe();
  await rec.connected('alice');
  result.subscribedFirst = await rec.subscribed('alice', channel);

  result.published = [];
  let n = 0;
  const publish = async () => {
    n += 1;
    result.published.push(await apiPublish(args, channel, { n }));
  };
  await publish();
  await publish();
  await rec.pubCount('alice', channel, 2);

  alice.disconnect();
  await rec.until('alice disconnected', () => rec.of('alice', 'disconnected').length >= 1);
  // Until the server has read her close frame it may still write to the old connection (and
  // the SDK still hands such a publication on): publish only once her presence entry is gone.
  await serverDropped(args, channel, 'alice');
  for (let i = 0; i < missed; i++) await publish();
  // Offline for a moment longer, so nothing can arrive on the old connection.
  await sleep(200);
  const before = result.received.length;
  result.receivedWhileOffline = before - 2;

  alice.connect();
  await rec.connected('alice', 2);
  result.subscribedAgain = await rec.subscribed('alice', channel, 2);
  await rec.pubCount('alice', channel, 2 + missed);

  await publish();
  await rec.pubCount('alice', channel, 3 + missed);
  // A duplicate would arrive within this pause.
  await sleep(300);
});

/** Waits (up to 5 s) until `user` has no presence entry in `channel`; returns at once when the
 * namespace has no presence (nothing to wait for). */
async function serverDropped(args, channel, user) {
  const deadline = Date.now() + 5000;
  for (;;) {
    let clients;
    try {
      const r = await apiCall(need(args, 'api'), need(args, 'api-key'), 'presence', { channel });
      clients = Object.values(r.clients || {});
    } catch {
      return;
    }
    if (!clients.some((c) => c.user === user)) return;
    if (Date.now() > deadline) throw new Error(`the server kept ${user}'s connection after her disconnect`);
    await sleep(10);
  }
}
