// Redis restart while the client stays connected: alice subscribes to --channel (history +
// force_recovery) and 5 publications go through the HTTP API. Then the driver is asked to restart
// Redis (step `restart-redis`: stop it, wait, start it again with its AOF, and publish 3
// publications straight into Redis with GYRE.PUBLISH, data {"source":"redis","n":1..3}, while gyre
// may still be reconnecting) and, at the same time, 5 more publications go through the HTTP API,
// each retried with the same idempotency key until gyre accepts it (some land while Redis is
// down). alice stays connected and either ends up with all 13 publications exactly once, in offset
// order, or is told that continuity was lost (a restart from the AOF starts a new epoch: the
// module cannot tell it lost nothing; a subscribed event with wasRecovering and not recovered);
// either way, one more API publication made afterwards must reach her.
//
// Arguments: --url --protocol --secret --api --api-key --channel [--timeout]
// Result: {published, received, apiRetries, connectedCount, lostContinuity, events}
import { main, need, Recorder, newClient, newSub, connToken, apiPublish, step, sleep, log } from './lib.mjs';

main('redis_restart', async ({ args, result, sdk }) => {
  const url = need(args, 'url');
  const secret = need(args, 'secret');
  const channel = need(args, 'channel');
  const before = Number(args.before || 5);
  const fromRedis = Number(args['from-redis'] || 3);
  const after = Number(args.after || 5);
  const total = before + fromRedis + after;
  const rec = new Recorder();
  result.events = rec.events;

  const alice = newClient(sdk, url, rec, 'alice', { token: connToken(secret, 'alice') });
  const sub = newSub(alice, rec, 'alice', channel);
  result.received = rec.pubsOf('alice', channel);
  alice.connect();
  sub.subscribe();
  await rec.connected('alice');
  await rec.subscribed('alice', channel);

  result.published = [];
  result.apiRetries = 0;
  let n = 0;
  const publishRetrying = async () => {
    n += 1;
    const data = { source: 'api', n };
    const deadline = Date.now() + 20000;
    for (;;) {
      try {
        const r = await apiPublish(args, channel, data, { idempotency_key: `restart-${n}` });
        result.published.push({ ...data, ...r });
        return;
      } catch (e) {
        if (Date.now() > deadline) throw e;
        result.apiRetries += 1;
        log(`publish ${n} failed, retrying: ${e.message}`);
        await sleep(100);
      }
    }
  };
  for (let i = 0; i < before; i++) await publishRetrying();
  await rec.pubCount('alice', channel, before);

  const restarted = step('restart-redis', 30000);
  for (let i = 0; i < after; i++) await publishRetrying();
  await restarted;
  const lost = () => rec.events.some(e => e.who === 'alice' && e.ev === 'subscribed' && e.wasRecovering && !e.recovered);
  await rec.until(
    `alice holds all ${total} publications, or was told she lost continuity`,
    () => result.received.length >= total || lost(),
    25000,
  );
  // Publications resume: one more, made after all that, reaches her.
  await publishRetrying();
  const last = result.published[result.published.length - 1];
  await rec.pubWhere('alice', channel, `the last publication (n=${last.n})`, p => p.data && p.data.n === last.n && p.data.source === 'api', 10000);
  // A duplicate would arrive within this pause.
  await sleep(500);
  result.lostContinuity = lost();
  result.connectedCount = rec.of('alice', 'connected').length;
});
