// Connect with a token, subscribe, and receive publications from three sources, in this order:
// the HTTP API, `redis-cli GYRE.PUBLISH` (only with --redis-port) and another client's publish.
//
// Arguments: --url --protocol --secret --api --api-key --channel [--redis-port] [--timeout]
// Result: {clients: {alice, bob}, subscribed, published: [{source, offset, epoch}], received:
// [{offset, data, info?}], events}
import { main, need, Recorder, newClient, newSub, connToken, apiPublish, redisPublish, encodeData, sleep } from './lib.mjs';

main('receive', async ({ args, result, sdk, protocol }) => {
  const url = need(args, 'url');
  const secret = need(args, 'secret');
  const channel = need(args, 'channel');
  const rec = new Recorder();
  result.events = rec.events;

  const alice = newClient(sdk, url, rec, 'alice', { token: connToken(secret, 'alice') });
  const sub = newSub(alice, rec, 'alice', channel);
  result.received = rec.pubsOf('alice', channel);
  alice.connect();
  sub.subscribe();
  const connected = await rec.connected('alice');
  result.subscribed = await rec.subscribed('alice', channel);

  const bob = newClient(sdk, url, rec, 'bob', { token: connToken(secret, 'bob') });
  bob.connect();
  const bobConnected = await rec.connected('bob');
  result.clients = { alice: connected.client, bob: bobConnected.client };

  result.published = [];
  const api = await apiPublish(args, channel, { source: 'api', n: 1 });
  result.published.push({ source: 'api', ...api });
  await rec.pubCount('alice', channel, 1);

  if (args['redis-port']) {
    const r = await redisPublish(args, channel, { source: 'redis', n: 2 });
    result.published.push({ source: 'redis', ...r });
    await rec.pubCount('alice', channel, result.published.length);
  }

  await bob.publish(channel, encodeData(protocol, { source: 'client', n: 3 }));
  result.published.push({ source: 'client' });
  await rec.pubCount('alice', channel, result.published.length);

  // Anything extra (a duplicate) would arrive within this pause.
  await sleep(300);
});
