// Leader election on a real Lease with short timings (lease 3 s, renew deadline 2 s, retry 0.5 s):
// one leader at a time, takeover after a crash only once the lease expired, fast takeover after
// a graceful release, and a leader that cannot renew stops leading before the lease expires.
import { afterEach, describe, expect, test } from '@jest/globals';
import { KubeClient } from '../../src/core/kube/client.ts';
import {
  LeaderElector,
  type Lease,
  type LeaderElectionOptions,
} from '../../src/controller/runtime/leader-election.ts';
import { Registry } from '../../src/core/metrics.ts';
import { eventually, useTestNamespace } from '../cluster/testing.ts';

/** eventually() for a synchronous check. */
function poll<T>(what: string, check: () => T | undefined, timeoutMs?: number): Promise<T> {
  return eventually(what, () => Promise.resolve(check()), timeoutMs);
}

const ns = useTestNamespace('rt-leader');
const timings = { leaseDurationSeconds: 3, renewDeadlineSeconds: 2, retryPeriodSeconds: 0.5 };

const cleanup: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const fn of cleanup.splice(0).reverse()) await fn();
});

function client(): KubeClient {
  const c = new KubeClient(ns.kc);
  cleanup.push(() => c.close());
  return c;
}

interface Candidate {
  elector: LeaderElector;
  log: string[];
  done: Promise<void>;
  signal?: AbortSignal;
}

function candidate(lease: string, identity: string, extra: Partial<LeaderElectionOptions> = {}): Candidate {
  const log: string[] = [];
  const c: Partial<Candidate> = { log };
  const elector = new LeaderElector({
    client: client(),
    namespace: ns.name,
    name: lease,
    identity,
    ...timings,
    onStartedLeading: (signal) => {
      c.signal = signal;
      log.push('started');
    },
    onStoppedLeading: () => log.push('stopped'),
    ...extra,
  });
  c.elector = elector;
  c.done = elector.run();
  cleanup.push(() => elector.stop({ release: false }));
  return c as Candidate;
}

const leasePath = (name: string) => `/apis/coordination.k8s.io/v1/namespaces/${ns.name}/leases/${name}`;

async function readLease(name: string): Promise<Lease> {
  return client().request<Lease>('GET', leasePath(name));
}

async function leader(candidates: Candidate[]): Promise<Candidate> {
  return poll('a leader', () => {
    const leaders = candidates.filter((c) => c.elector.isLeader());
    return leaders.length === 1 ? leaders[0] : undefined;
  });
}

describe('LeaderElector', () => {
  test('of two candidates exactly one leads, and the Lease names it', async () => {
    const metrics = new Registry();
    const observed: string[] = [];
    const a = candidate('one-leader', 'a', { metrics, onNewLeader: (id) => observed.push(id) });
    const b = candidate('one-leader', 'b');
    const first = await leader([a, b]);
    const other = first === a ? b : a;
    // Watch both for several renew periods: never two leaders, never a change of leader.
    for (let i = 0; i < 30; i++) {
      expect([a, b].filter((c) => c.elector.isLeader())).toEqual([first]);
      await new Promise((r) => setTimeout(r, 50));
    }
    const lease = await readLease('one-leader');
    expect(lease.spec?.holderIdentity).toBe(first.elector.identity);
    expect(lease.spec?.leaseDurationSeconds).toBe(3);
    expect(lease.spec?.renewTime).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/);
    expect(other.log).toEqual([]);
    expect(other.elector.leader()).toBe(first.elector.identity);
    expect(first.log).toEqual(['started']);
    // a saw exactly one holder, the leader, however the race went.
    expect(observed).toEqual([first.elector.identity]);
    expect(await metrics.render()).toContain(
      `leader_election_master_status{name="one-leader"} ${first === a ? 1 : 0}`,
    );
  });

  test('after the leader crashes (no release) the other takes over once the lease expired', async () => {
    const a = candidate('crash', 'a');
    const b = candidate('crash', 'b');
    const first = await leader([a, b]);
    const other = first === a ? b : a;
    const transitionsBefore = (await readLease('crash')).spec?.leaseTransitions ?? 0;

    await first.elector.stop({ release: false });
    const crashed = await readLease('crash');
    await leader([other]);
    const lease = await readLease('crash');
    // Never before the crashed leader's last renewal had expired (the Lease's own timestamps).
    expect(Date.parse(lease.spec!.acquireTime!)).toBeGreaterThanOrEqual(
      Date.parse(crashed.spec!.renewTime!) + crashed.spec!.leaseDurationSeconds! * 1000,
    );
    expect(lease.spec?.holderIdentity).toBe(other.elector.identity);
    expect(lease.spec?.leaseTransitions).toBe(transitionsBefore + 1);
    expect(first.log).toEqual(['started', 'stopped']);
    expect(first.signal?.aborted).toBe(true);
  });

  test('after a graceful stop the lease is released and the other takes over within a retry period', async () => {
    const a = candidate('release', 'a');
    const b = candidate('release', 'b');
    const first = await leader([a, b]);
    const other = first === a ? b : a;

    const held = await readLease('release');
    await first.elector.stop();
    await first.done;
    await leader([other]);
    const lease = await readLease('release');
    expect(lease.spec?.holderIdentity).toBe(other.elector.identity);
    // Taken over before the released lease could have expired: the release, not the expiry, let it in.
    expect(Date.parse(lease.spec!.acquireTime!)).toBeLessThan(
      Date.parse(held.spec!.renewTime!) + held.spec!.leaseDurationSeconds! * 1000,
    );
    expect(first.log).toEqual(['started', 'stopped']);
  });

  test('a leader that cannot renew stops leading within the renew deadline, before the lease expires', async () => {
    const a = candidate('stolen', 'a');
    await leader([a]);
    // Someone else writes the Lease and keeps renewing it: a's renewals now fail (409 or held).
    const intruder = client();
    let stop = false;
    const steal = async () => {
      while (!stop) {
        const lease = await intruder.request<Lease>('GET', leasePath('stolen'));
        lease.spec = { ...lease.spec, holderIdentity: 'intruder', leaseDurationSeconds: 3 };
        await intruder.request('PUT', leasePath('stolen'), { body: lease }).catch(() => undefined);
        await new Promise((r) => setTimeout(r, 300));
      }
    };
    const stolenAt = Date.now();
    const stealing = steal();
    try {
      await a.done;
      const lostAfter = Date.now() - stolenAt;
      expect(a.log).toEqual(['started', 'stopped']);
      expect(a.elector.isLeader()).toBe(false);
      expect(a.signal?.aborted).toBe(true);
      // renewDeadline (2 s) after its last renewal, and well before a 3 s lease would expire.
      expect(lostAfter).toBeGreaterThan(1000);
      expect(lostAfter).toBeLessThan(3000);
      expect(a.elector.leader()).toBe('intruder');
    } finally {
      stop = true;
      await stealing;
    }
  }, 30_000);

  test('rejects timings that would let a leader lose its lease before it notices', () => {
    const c = new KubeClient(ns.kc);
    const make = (t: Partial<LeaderElectionOptions>) => () =>
      new LeaderElector({ client: c, namespace: 'x', name: 'y', ...t });
    expect(make({ leaseDurationSeconds: 10, renewDeadlineSeconds: 10 })).toThrow(/leaseDurationSeconds/);
    expect(make({ renewDeadlineSeconds: 2, retryPeriodSeconds: 2 })).toThrow(/renewDeadlineSeconds/);
    expect(make({}).call(null).identity).toMatch(/^.+_[0-9a-f]{8}$/);
  });
});
