// Tags filter: alice subscribes to --channel (a namespace with allow_tags_filter) with
// `tagsFilter` = ticker in [AAPL, MSFT] and price >= 100; bob subscribes without a filter.
// Publications with various tags go through the HTTP API; alice must get only the matching ones.
// Then carol asks for a filter on --refused (a namespace without allow_tags_filter) and must be
// refused with error 107.
//
// Arguments: --url --protocol --secret --api --api-key --channel --refused [--timeout]
// Result: {aliceGot, bobGot, refused, events}
import { main, need, Recorder, newClient, newSub, connToken, apiPublish } from './lib.mjs';

main('tags_filter', async ({ args, result, sdk }) => {
  const url = need(args, 'url');
  const secret = need(args, 'secret');
  const channel = need(args, 'channel');
  const refusedChannel = need(args, 'refused');
  const rec = new Recorder();
  result.events = rec.events;

  const tagsFilter = {
    op: 'and',
    nodes: [
      { key: 'ticker', cmp: 'in', vals: ['AAPL', 'MSFT'] },
      { key: 'price', cmp: 'gte', val: '100' },
    ],
  };
  const alice = newClient(sdk, url, rec, 'alice', { token: connToken(secret, 'alice') });
  const aliceSub = newSub(alice, rec, 'alice', channel, { tagsFilter });
  const bob = newClient(sdk, url, rec, 'bob', { token: connToken(secret, 'bob') });
  const bobSub = newSub(bob, rec, 'bob', channel);
  alice.connect();
  bob.connect();
  aliceSub.subscribe();
  bobSub.subscribe();
  await rec.subscribed('alice', channel);
  await rec.subscribed('bob', channel);

  const quotes = [
    { ticker: 'AAPL', price: '150.25' },
    { ticker: 'AAPL', price: '99.5' },
    { ticker: 'GOOG', price: '180' },
    { ticker: 'MSFT', price: '100' },
    { ticker: 'MSFT' },
    { price: '500' },
    { ticker: 'MSFT', price: '1000.01' },
  ];
  for (const [i, tags] of quotes.entries()) {
    await apiPublish(args, channel, { i }, { tags });
  }
  await rec.pubCount('bob', channel, quotes.length);
  // Everything bob got has been dispatched to alice too.
  await rec.pubCount('alice', channel, 3);
  result.aliceGot = rec.pubsOf('alice', channel).map(p => p.data.i);
  result.bobGot = rec.pubsOf('bob', channel).map(p => p.data.i);

  const carol = newClient(sdk, url, rec, 'carol', { token: connToken(secret, 'carol') });
  const carolSub = newSub(carol, rec, 'carol', refusedChannel, { tagsFilter });
  carol.connect();
  await rec.connected('carol');
  // The SDK reports a subscribe refused with a permanent error as an unsubscribe with its code.
  carolSub.subscribe();
  await rec.until('carol refused', () => rec.of('carol', 'unsubscribed').length >= 1);
  const refused = rec.of('carol', 'unsubscribed')[0];
  result.refused = { code: refused.code, reason: refused.reason };
});
