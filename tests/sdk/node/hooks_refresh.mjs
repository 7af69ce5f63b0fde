// The refresh and sub_refresh proxies through the unmodified SDK: the server prolongs the
// connection and a subscription itself (the SDK is never asked for a token), until the backend
// says they expired.
// - alice connects with her cookie and `data: {expire_in: 1}`: the backend gives the connection
//   1 s, the refresh proxy prolongs it by 3 s at a time;
// - she subscribes to `hooks:expiring-1` (2 s at a time, prolonged by the sub_refresh proxy);
// - after --hold ms: still the first connection and subscription, nothing unsubscribed;
// - then the backend expires the subscriptions (`expire_subscriptions`): unsubscribed with 2501,
//   and the SDK resubscribes (the subscribe proxy allows it again);
// - then the backend expires alice (`expire_users`): disconnected with 3005, and the SDK
//   reconnects through the connect proxy.
//
// Arguments: --url --protocol --backend http://127.0.0.1:PORT [--hold 5000] [--timeout]
import { main, need, Recorder, newClient, newSub, encodeData, sleep, withCookie } from './lib.mjs';

async function control(backend, settings) {
  const res = await fetch(`${backend}/control`, { method: 'POST', body: JSON.stringify(settings) });
  if (res.status !== 200) throw new Error(`backend control: HTTP ${res.status}`);
}

main('hooks_refresh', async ({ args, result, protocol, sdk }) => {
  const url = need(args, 'url');
  const backend = need(args, 'backend');
  const hold = Number(args.hold || 5000);
  const rec = new Recorder();
  result.events = rec.events;
  const alice = newClient(sdk, url, rec, 'alice', {
    ...withCookie('session=s-alice'),
    data: encodeData(protocol, { expire_in: 1 }),
  });
  alice.connect();
  await rec.connected('alice');
  const sub = newSub(alice, rec, 'alice', 'hooks:expiring-1');
  sub.subscribe();
  await rec.subscribed('alice', 'hooks:expiring-1');

  await sleep(hold);
  result.afterHold = {
    connected: rec.of('alice', 'connected').length,
    disconnected: rec.of('alice', 'disconnected').length,
    unsubscribed: rec.events.filter(e => e.ev === 'unsubscribed' || (e.ev === 'subscribing' && e.code !== 0)).length,
    state: alice.state,
    subState: sub.state,
  };

  await control(backend, { expire_subscriptions: true });
  await rec.until('subscription expired', () => rec.events.some(e => e.ev === 'subscribing' && e.code === 2501), 10000);
  await control(backend, { expire_subscriptions: false });
  await rec.subscribed('alice', 'hooks:expiring-1', 2, 10000);
  result.subExpired = rec.events.find(e => e.ev === 'subscribing' && e.code === 2501);

  await control(backend, { expire_users: ['alice'] });
  await rec.until('connection expired', () => rec.of('alice', 'disconnected').length >= 1 || rec.events.some(e => e.who === 'alice' && e.ev === 'connecting' && e.code === 3005), 10000);
  await control(backend, { expire_users: [] });
  await rec.connected('alice', 2, 10000);
  result.expired = rec.events.find(e => e.who === 'alice' && e.ev === 'connecting' && e.code === 3005) || null;
  result.connectedCount = rec.of('alice', 'connected').length;
  alice.disconnect();
});
