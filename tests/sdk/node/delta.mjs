// Delta compression: alice subscribes to --channel (a namespace with history, recovery,
// allowed_delta_types = ["fossil"] and delta_publish) with `delta: 'fossil'`. 20 documents that
// change a little each time go through the HTTP API; she disconnects, 5 more are published while
// she is offline, she reconnects and recovers them, then 5 more arrive live. The SDK applies the
// patches itself; the driver compares every document she got with what was published.
//
// With --publish-delta true every publication goes out with the publish API's `delta: true`
// (for a namespace without delta_publish, where only such publications become patches).
//
// Arguments: --url --protocol --secret --api --api-key --channel [--publish-delta] [--timeout]
// Result: {published, received, subscribedFirst, subscribedAgain, stats, events}
import { main, need, Recorder, newClient, newSub, connToken, apiPublish, sleep } from './lib.mjs';

/** Version `n` of a document: a board where a few cells change between versions. */
function documentVersion(n) {
  const cells = [];
  for (let i = 0; i < 48; i++) {
    cells.push({ cell: i, mark: (i * 7 + n) % 11 === 0 ? 'X' : '.', label: `cell number ${i}` });
  }
  return { version: n, title: 'Spielstand — été 😀', cells, updated: `step ${n}` };
}

main('delta', async ({ args, result, sdk }) => {
  const url = need(args, 'url');
  const secret = need(args, 'secret');
  const channel = need(args, 'channel');
  const rec = new Recorder();
  result.events = rec.events;

  const alice = newClient(sdk, url, rec, 'alice', { token: connToken(secret, 'alice') });
  const sub = newSub(alice, rec, 'alice', channel, { delta: 'fossil' });
  result.received = rec.pubsOf('alice', channel);
  alice.connect();
  sub.subscribe();
  await rec.connected('alice');
  result.subscribedFirst = await rec.subscribed('alice', channel);

  result.published = [];
  let n = 0;
  const publish = async () => {
    n += 1;
    const data = documentVersion(n);
    result.published.push(data);
    await apiPublish(args, channel, data, args['publish-delta'] === 'true' ? { delta: true } : {});
  };
  for (let i = 0; i < 20; i++) await publish();
  await rec.pubCount('alice', channel, 20);
  result.statsLive = sub.deltaStats();

  alice.disconnect();
  await rec.until('alice disconnected', () => rec.of('alice', 'disconnected').length >= 1);
  for (let i = 0; i < 5; i++) await publish();
  await sleep(200);

  alice.connect();
  await rec.connected('alice', 2);
  result.subscribedAgain = await rec.subscribed('alice', channel, 2);
  await rec.pubCount('alice', channel, 25);
  for (let i = 0; i < 5; i++) await publish();
  await rec.pubCount('alice', channel, 30);
  // A duplicate would arrive within this pause.
  await sleep(300);
  result.stats = sub.deltaStats();
});
