// Failover of the Redis primary (or another disruption: a slot migration) while the client stays
// connected: alice subscribes to --channel (history + force_recovery) and --before (5)
// publications go through the HTTP API. Then the driver is asked to disrupt Redis (step --step,
// default `failover`: kill the primary, get the replica promoted and reachable the way gyre finds
// it, then publish --from-redis (3) publications straight into the new primary with
// GYRE.PUBLISH, data {"source":"redis","n":1..}) while --after (5) more API publications are
// retried until gyre accepts each (with `--load true`: and more, every --pace ms, until the
// driver is done). The script then waits until alice holds every publication it saw acknowledged
// (API and redis), or until she was told that continuity was lost (a subscribed event with
// wasRecovering and not recovered: she must reload her state); then one more API publication
// must reach her.
//
// API publications carry an idempotency key (`failover-<n>`), so a retry of one that was applied
// does not publish it twice; `--idempotent false` publishes without (a publication with a new
// idempotency key waits while its channel's slot migrates).
//
// Arguments: --url --protocol --secret --api --api-key --channel [--before] [--from-redis]
//   [--after] [--step] [--load true] [--pace] [--idempotent false] [--timeout]
// Result: {published: [{source, n, offset, epoch, sentAt}], received, apiRetries, connectedCount,
//   lostContinuity, events, clockOrigin}. `sentAt` (unix ms) is when a publication's first
//   attempt was sent; an event's `t` is ms since clockOrigin (unix ms).
import { main, need, Recorder, newClient, newSub, connToken, apiPublish, step, sleep, log, elapsed } from './lib.mjs';

main('failover', async ({ args, result, sdk }) => {
  const url = need(args, 'url');
  const secret = need(args, 'secret');
  const channel = need(args, 'channel');
  const before = Number(args.before || 5);
  const fromRedis = Number(args['from-redis'] || 3);
  const after = Number(args.after || 5);
  const stepName = args.step || 'failover';
  const load = args.load === 'true';
  const pace = Number(args.pace || 50);
  const idempotent = args.idempotent !== 'false';
  const rec = new Recorder();
  result.clockOrigin = Date.now() - elapsed();
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
    const extra = idempotent ? { idempotency_key: `failover-${n}` } : {};
    const sentAt = Date.now();
    const deadline = sentAt + 25000;
    for (;;) {
      try {
        const r = await apiPublish(args, channel, data, extra);
        result.published.push({ ...data, ...r, sentAt });
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

  let stepDone = false;
  const stepped = step(stepName, 40000).then(
    () => { stepDone = true; },
    e => { stepDone = true; throw e; },
  );
  for (let i = 0; i < after || (load && !stepDone); i++) {
    await publishRetrying();
    if (load) await sleep(pace);
  }
  await stepped;

  const lost = () => rec.events.some(e => e.who === 'alice' && e.ev === 'subscribed' && e.wasRecovering && !e.recovered);
  const total = result.published.length + fromRedis;
  // Only the scenario's own publications count: a driver may publish more (a tail-loss window).
  const ours = () => result.received.filter(p => p.data && ['api', 'redis'].includes(p.data.source));
  await rec.until(
    `alice holds all ${total} publications, or was told she lost continuity`,
    () => ours().length >= total || lost(),
    30000,
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
