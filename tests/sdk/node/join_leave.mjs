// Join and leave pushes: alice subscribes to --channel with joinLeave; bob subscribes,
// unsubscribes, subscribes again and disconnects. alice must see bob join twice and leave twice.
//
// Arguments: --url --protocol --secret --channel [--timeout]
// Result: {clients: {alice, bob}, joins: [{client, user}], leaves: [...], events}
import { main, need, Recorder, newClient, newSub, connToken, sleep } from './lib.mjs';

main('join_leave', async ({ args, result, sdk }) => {
  const url = need(args, 'url');
  const secret = need(args, 'secret');
  const channel = need(args, 'channel');
  const rec = new Recorder();
  result.events = rec.events;
  const aliceSaw = ev => rec.events.filter(e => e.who === 'alice' && e.channel === channel && e.ev === ev);

  const alice = newClient(sdk, url, rec, 'alice', { token: connToken(secret, 'alice') });
  const subA = newSub(alice, rec, 'alice', channel, { joinLeave: true });
  alice.connect();
  subA.subscribe();
  const a = await rec.connected('alice');
  await rec.subscribed('alice', channel);

  const bob = newClient(sdk, url, rec, 'bob', { token: connToken(secret, 'bob') });
  const subB = newSub(bob, rec, 'bob', channel);
  bob.connect();
  const b = await rec.connected('bob');
  result.clients = { alice: a.client, bob: b.client };
  const bobs = ev => aliceSaw(ev).filter(e => e.info && e.info.client === b.client);

  subB.subscribe();
  await rec.subscribed('bob', channel);
  await rec.until('alice sees bob join', () => bobs('join').length >= 1);
  subB.unsubscribe();
  await rec.until('alice sees bob leave', () => bobs('leave').length >= 1);
  subB.subscribe();
  await rec.subscribed('bob', channel, 2);
  await rec.until('alice sees bob join again', () => bobs('join').length >= 2);
  bob.disconnect();
  await rec.until('alice sees bob leave on disconnect', () => bobs('leave').length >= 2);

  await sleep(300);
  result.joins = aliceSaw('join').map(e => e.info);
  result.leaves = aliceSaw('leave').map(e => e.info);
});
