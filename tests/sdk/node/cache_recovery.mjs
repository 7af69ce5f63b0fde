// Cache recovery: --channel is in a namespace with force_recovery_mode = "cache". Three
// publications exist before alice subscribes with `since: {}` (recover from the start): she gets
// only the latest. One live publication follows; she disconnects; --count (default 5)
// publications go through the HTTP API while she is offline; on reconnect she must get only the
// latest of them (`recovered`), then one more live one.
//
// Arguments: --url --protocol --secret --api --api-key --channel [--count] [--timeout]
// Result: {published, received, subscribedFirst, subscribedAgain, events}
import { main, need, Recorder, newClient, newSub, connToken, apiPublish, sleep } from './lib.mjs';

main('cache_recovery', async ({ args, result, sdk }) => {
  const url = need(args, 'url');
  const secret = need(args, 'secret');
  const channel = need(args, 'channel');
  const missed = Number(args.count || 5);
  const rec = new Recorder();
  result.events = rec.events;

  result.published = [];
  let n = 0;
  const publish = async () => {
    n += 1;
    result.published.push(await apiPublish(args, channel, { n }));
  };
  for (let i = 0; i < 3; i++) await publish();

  const alice = newClient(sdk, url, rec, 'alice', { token: connToken(secret, 'alice') });
  const sub = newSub(alice, rec, 'alice', channel, { since: {} });
  result.received = rec.pubsOf('alice', channel);
  alice.connect();
  sub.subscribe();
  await rec.connected('alice');
  result.subscribedFirst = await rec.subscribed('alice', channel);
  await rec.pubCount('alice', channel, 1);
  await publish();
  await rec.pubCount('alice', channel, 2);

  alice.disconnect();
  await rec.until('alice disconnected', () => rec.of('alice', 'disconnected').length >= 1);
  for (let i = 0; i < missed; i++) await publish();
  await sleep(200);

  alice.connect();
  await rec.connected('alice', 2);
  result.subscribedAgain = await rec.subscribed('alice', channel, 2);
  await rec.pubCount('alice', channel, 3);
  await publish();
  await rec.pubCount('alice', channel, 4);
  // Anything more (a missed publication replayed after all) would arrive within this pause.
  await sleep(300);
});
