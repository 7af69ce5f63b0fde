// Channel errors on one connection, which must stay connected throughout:
// - subscribe to a channel of an unknown namespace (--unknown) → error 102, unsubscribed(102);
// - subscribe to a channel whose namespace forbids client subscriptions (--denied) → 103,
//   unsubscribed(103);
// - publish / history / presence / presence stats on --denied without being subscribed → 103.
//
// Arguments: --url --protocol --secret --unknown --denied [--timeout]
// Result: {unknown: {unsubscribed, errors}, denied: {...}, publish, history, presence,
// presenceStats, stillConnected, events}
import { main, need, Recorder, newClient, newSub, connToken, encodeData, settle, sleep } from './lib.mjs';

main('sub_errors', async ({ args, result, sdk, protocol }) => {
  const url = need(args, 'url');
  const secret = need(args, 'secret');
  const unknown = need(args, 'unknown');
  const denied = need(args, 'denied');
  const rec = new Recorder();
  result.events = rec.events;

  const alice = newClient(sdk, url, rec, 'alice', { token: connToken(secret, 'alice') });
  alice.connect();
  await rec.connected('alice');

  const subscribeFails = async channel => {
    const sub = newSub(alice, rec, 'alice', channel);
    sub.subscribe();
    const unsubscribed = () => rec.events.filter(e => e.who === 'alice' && e.channel === channel && e.ev === 'unsubscribed');
    await rec.until(`${channel} unsubscribed`, () => unsubscribed().length >= 1);
    const ready = await settle(sub.ready(1000));
    return {
      unsubscribed: { code: unsubscribed()[0].code, reason: unsubscribed()[0].reason },
      errors: rec.events.filter(e => e.who === 'alice' && e.channel === channel && e.ev === 'error').map(e => e.error),
      subscribedCount: rec.events.filter(e => e.who === 'alice' && e.channel === channel && e.ev === 'subscribed').length,
      state: sub.state,
      ready: ready.error || 'resolved',
    };
  };
  result.unknown = await subscribeFails(unknown);
  result.denied = await subscribeFails(denied);

  const errorOf = r => (r.error ? r.error : { unexpectedSuccess: r.ok === undefined ? null : r.ok });
  result.publish = errorOf(await settle(alice.publish(denied, encodeData(protocol, { n: 1 }))));
  result.history = errorOf(await settle(alice.history(denied, { limit: -1 })));
  result.presence = errorOf(await settle(alice.presence(denied)));
  result.presenceStats = errorOf(await settle(alice.presenceStats(denied)));
  result.publishUnknown = errorOf(await settle(alice.publish(unknown, encodeData(protocol, { n: 1 }))));

  await sleep(200);
  result.stillConnected = alice.state === 'connected';
  result.connectedCount = rec.of('alice', 'connected').length;
});
