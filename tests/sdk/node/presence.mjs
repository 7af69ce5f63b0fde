// Presence, presence stats and history, through the client and the subscription objects.
// alice (token `info` {"name":"Alice"}) and bob subscribe to --channel; three publications go
// through the HTTP API; then history with several limits; then bob disconnects.
//
// Arguments: --url --protocol --secret --api --api-key --channel [--timeout]
// Result: {clients, presence, presenceViaClient, stats, published, received, history: {all, first2,
// last1Reverse, sinceFirst, positionOnly}, statsAfterBobLeft, events}
import {
  main, need, Recorder, newClient, newSub, connToken, apiPublish, presenceOf, historyOf, num, sleep,
} from './lib.mjs';

main('presence', async ({ args, result, sdk }) => {
  const url = need(args, 'url');
  const secret = need(args, 'secret');
  const channel = need(args, 'channel');
  const rec = new Recorder();
  result.events = rec.events;

  const alice = newClient(sdk, url, rec, 'alice', { token: connToken(secret, 'alice', { info: { name: 'Alice' } }) });
  const bob = newClient(sdk, url, rec, 'bob', { token: connToken(secret, 'bob') });
  const subA = newSub(alice, rec, 'alice', channel);
  const subB = newSub(bob, rec, 'bob', channel);
  result.received = rec.pubsOf('alice', channel);
  alice.connect();
  bob.connect();
  subA.subscribe();
  subB.subscribe();
  const a = await rec.connected('alice');
  const b = await rec.connected('bob');
  result.clients = { alice: a.client, bob: b.client };
  await rec.subscribed('alice', channel);
  await rec.subscribed('bob', channel);

  result.presence = presenceOf(await subA.presence());
  result.presenceViaClient = presenceOf(await alice.presence(channel));
  const stats = await subA.presenceStats();
  result.stats = { numClients: num(stats.numClients), numUsers: num(stats.numUsers) };

  result.published = [];
  for (let n = 1; n <= 3; n++) result.published.push(await apiPublish(args, channel, { n }));
  await rec.pubCount('alice', channel, 3);

  const epoch = result.published[0].epoch;
  result.history = {
    all: historyOf(await subA.history({ limit: -1 })),
    first2: historyOf(await alice.history(channel, { limit: 2 })),
    last1Reverse: historyOf(await alice.history(channel, { limit: 1, reverse: true })),
    sinceFirst: historyOf(await alice.history(channel, { limit: -1, since: { offset: 1, epoch } })),
    positionOnly: historyOf(await alice.history(channel, { limit: 0 })),
  };

  bob.disconnect();
  // Presence removal is asynchronous on the server: poll for a while.
  const deadline = Date.now() + 5000;
  for (;;) {
    const s = await subA.presenceStats();
    result.statsAfterBobLeft = { numClients: num(s.numClients), numUsers: num(s.numUsers) };
    if (result.statsAfterBobLeft.numClients === 1 || Date.now() > deadline) break;
    await sleep(100);
  }
  result.presenceAfterBobLeft = presenceOf(await subA.presence());
});
