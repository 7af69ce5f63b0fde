// Connection token expiry and refresh: alice connects with a token that expires in --ttl seconds
// (default 3); getToken hands out new tokens of the same lifetime. She stays connected across at
// least two refreshes and still receives publications.
//
// Arguments: --url --protocol --secret --api --api-key --channel [--ttl] [--wait] [--timeout]
// Result: {getTokenCalls, refreshTimes, connectedCount, disconnects, received, events}
import { main, need, Recorder, newClient, newSub, connToken, apiPublish, elapsed, sleep } from './lib.mjs';

main('token_refresh', async ({ args, result, sdk }) => {
  const url = need(args, 'url');
  const secret = need(args, 'secret');
  const channel = need(args, 'channel');
  const ttl = Number(args.ttl || 3);
  // Long enough for at least two refreshes.
  const waitMs = Number(args.wait || (2 * ttl + 2) * 1000);
  const rec = new Recorder();
  result.events = rec.events;
  result.getTokenCalls = 0;
  result.refreshTimes = [];

  const alice = newClient(sdk, url, rec, 'alice', {
    token: connToken(secret, 'alice', { ttl }),
    getToken: async () => {
      result.getTokenCalls += 1;
      result.refreshTimes.push(elapsed());
      return connToken(secret, 'alice', { ttl });
    },
  });
  const sub = newSub(alice, rec, 'alice', channel);
  result.received = rec.pubsOf('alice', channel);
  alice.connect();
  sub.subscribe();
  await rec.connected('alice');
  await rec.subscribed('alice', channel);

  await apiPublish(args, channel, { n: 1 });
  await rec.pubCount('alice', channel, 1);
  await sleep(waitMs);
  await apiPublish(args, channel, { n: 2 });
  await rec.pubCount('alice', channel, 2);

  result.connectedCount = rec.of('alice', 'connected').length;
  result.disconnects = rec.events.filter(e => e.who === 'alice' && (e.ev === 'disconnected' || e.ev === 'connecting') && e.t > 0)
    .filter(e => !(e.ev === 'connecting' && e.code === 0));
});
