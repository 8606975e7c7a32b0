// Leader election on a coordination.k8s.io/v1 Lease, following client-go's leaderelection:
// - a candidate takes the lease when it is free (no holder) or expired; every write is a PUT
//   carrying the resourceVersion it read, so two candidates cannot both win (409 for the loser);
// - expiry is judged by the candidate's own clock, from when it last saw the lease record
//   change, never from the timestamps inside it: clocks of different machines disagree;
// - the leader renews every retryPeriod; if it cannot renew for renewDeadline it stops leading
//   (onStoppedLeading: stop writing) before others may take over at leaseDuration;
// - on a graceful stop the leader releases the lease (empty holder, 1 s duration) so a
//   successor takes over at its next retry instead of waiting for the lease to expire.
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { sleep } from './backoff.ts';
import { isConflict, isNotFound, type KubeClient } from '../../core/kube/client.ts';
import { silentLogger, type Logger } from './log.ts';
import type { Counter, Gauge, Registry } from '../../core/metrics.ts';
import { resourcePath, type KubeObject } from '../../core/kube/objects.ts';

const LEASES = { apiVersion: 'coordination.k8s.io/v1', resource: 'leases' };
/** client-go's JitterFactor: candidates retry at retryPeriod * [1, 1.2). */
const JITTER = 1.2;

export interface LeaseSpec {
  holderIdentity?: string;
  leaseDurationSeconds?: number;
  acquireTime?: string;
  renewTime?: string;
  leaseTransitions?: number;
}

export interface Lease extends KubeObject {
  spec?: LeaseSpec;
}

export interface LeaderElectionOptions {
  client: KubeClient;
  namespace: string;
  /** The Lease's name, shared by every candidate of one election. */
  name: string;
  /** Unique per candidate; default hostname + "_" + random suffix. */
  identity?: string;
  /** How long others wait after the last renewal they saw before taking over; default 15. */
  leaseDurationSeconds?: number;
  /** How long the leader keeps trying to renew before it gives up leading; default 10. */
  renewDeadlineSeconds?: number;
  /** Time between attempts to acquire or renew; default 2. */
  retryPeriodSeconds?: number;
  /** Release the lease when stopped gracefully; default true. */
  releaseOnCancel?: boolean;
  /** Called when this candidate becomes leader; `signal` aborts when it stops leading. */
  onStartedLeading?: (signal: AbortSignal) => void;
  /** Called once when leadership ends, by stop() or by failing to renew. */
  onStoppedLeading?: () => void;
  /** Called when the observed holder changes (including to this candidate). */
  onNewLeader?: (identity: string) => void;
  logger?: Logger;
  metrics?: Registry;
}

export function defaultIdentity(): string {
  return `${hostname()}_${randomBytes(4).toString('hex')}`;
}

/** Lease times are MicroTime: RFC 3339 with exactly six fractional digits. */
function microTime(ms: number): string {
  return new Date(ms).toISOString().replace(/\.(\d{3})Z$/, '.$1000Z');
}

export class LeaderElector {
  readonly identity: string;
  private readonly options: LeaderElectionOptions;
  private readonly client: KubeClient;
  private readonly leaseDurationMs: number;
  private readonly renewDeadlineMs: number;
  private readonly retryPeriodMs: number;
  private readonly log: Logger;
  private readonly stopController = new AbortController();
  private running?: Promise<void>;
  private release = true;
  /** performance.now() when the last successful acquire or renewal began. */
  private renewedAt = -Infinity;
  private leading = false;
  /** The lease as last read or written by us: its resourceVersion allows a GET-less renewal. */
  private lease?: Lease;
  private observedSpec = '';
  private observedAt = 0;
  private observedHolder = '';
  private readonly metrics?: { leader: Gauge; transitions: Counter };

  constructor(options: LeaderElectionOptions) {
    this.options = options;
    this.client = options.client;
    this.identity = options.identity ?? defaultIdentity();
    this.leaseDurationMs = (options.leaseDurationSeconds ?? 15) * 1000;
    this.renewDeadlineMs = (options.renewDeadlineSeconds ?? 10) * 1000;
    this.retryPeriodMs = (options.retryPeriodSeconds ?? 2) * 1000;
    this.release = options.releaseOnCancel ?? true;
    // client-go's checks: otherwise the leader could lose the lease before it notices.
    if (!(this.leaseDurationMs > this.renewDeadlineMs)) {
      throw new Error('leaseDurationSeconds must be greater than renewDeadlineSeconds');
    }
    if (!(this.renewDeadlineMs > JITTER * this.retryPeriodMs)) {
      throw new Error(`renewDeadlineSeconds must be greater than ${JITTER} * retryPeriodSeconds`);
    }
    if (!(this.retryPeriodMs > 0)) throw new Error('retryPeriodSeconds must be positive');
    if (!this.identity) throw new Error('the identity must not be empty');
    this.log = (options.logger ?? silentLogger).child({
      lease: `${options.namespace}/${options.name}`,
      identity: this.identity,
    });
    if (options.metrics) {
      this.metrics = {
        leader: options.metrics.gauge({
          name: 'leader_election_master_status',
          help: '1 while this process leads the lease, else 0.',
          labelNames: ['name'],
        }),
        transitions: options.metrics.counter({
          name: 'leader_election_transitions_total',
          help: 'Times this process started or stopped leading.',
          labelNames: ['name'],
        }),
      };
      this.metrics.leader.set({ name: options.name }, 0);
    }
  }

  isLeader(): boolean {
    return this.leading;
  }

  /** The holder of the lease as last observed ("" when free or unknown). */
  leader(): string {
    return this.observedHolder;
  }

  /**
   * Campaigns, leads, and resolves once leadership ended (lost or stop()) or stop() was called
   * before winning. Call once; start a new elector to campaign again.
   */
  run(): Promise<void> {
    if (this.running) throw new Error('LeaderElector.run() was already called');
    this.running = this.campaign();
    return this.running;
  }

  /**
   * Stops campaigning or leading. A leader releases the lease unless `release` is false (or
   * releaseOnCancel was false); `release: false` also models a crash in tests.
   */
  async stop(options: { release?: boolean } = {}): Promise<void> {
    if (options.release !== undefined) this.release = options.release;
    this.stopController.abort();
    await this.running;
  }

  private get stopped(): boolean {
    return this.stopController.signal.aborted;
  }

  private async campaign(): Promise<void> {
    const signal = this.stopController.signal;
    while (!this.stopped) {
      if (await this.tryAcquireOrRenew(this.retryPeriodMs * JITTER)) break;
      await sleep(this.retryPeriodMs * (1 + Math.random() * (JITTER - 1)), signal);
    }
    if (this.stopped) return;

    const leadership = new AbortController();
    this.leading = true;
    this.metrics?.leader.set({ name: this.options.name }, 1);
    this.metrics?.transitions.inc({ name: this.options.name });
    this.log.info('started leading');
    try {
      this.options.onStartedLeading?.(leadership.signal);
    } catch (err) {
      this.log.error('onStartedLeading threw', { error: err });
    }

    let lastRenewal = performance.now();
    while (!this.stopped) {
      await sleep(this.retryPeriodMs, signal);
      if (this.stopped) break;
      // Each attempt may use only what is left of the deadline: a hung request must not carry
      // this process past the point where others consider the lease expired.
      const left = this.renewDeadlineMs - (performance.now() - lastRenewal);
      if (left > 0 && (await this.tryAcquireOrRenew(left))) {
        lastRenewal = performance.now();
        continue;
      }
      if (this.stopped) break;
      if (performance.now() - lastRenewal >= this.renewDeadlineMs) {
        this.log.error('failed to renew the lease before the deadline; stopped leading', {
          renewDeadlineMs: this.renewDeadlineMs,
        });
        break;
      }
    }

    this.leading = false;
    leadership.abort();
    this.metrics?.leader.set({ name: this.options.name }, 0);
    this.metrics?.transitions.inc({ name: this.options.name });
    try {
      this.options.onStoppedLeading?.();
    } catch (err) {
      this.log.error('onStoppedLeading threw', { error: err });
    }
    if (this.stopped && this.release) await this.releaseLease();
  }

  /**
   * Whether this candidate may write now: it leads, and its last successful renewal began less
   * than the renew deadline ago (by the monotonic clock, which keeps running while the process is
   * stopped or starved). A process frozen past that point — SIGSTOP, a long GC pause, a VM
   * migration — resumes refusing writes at once, before its elector even notices the loss.
   */
  holdsLease(): boolean {
    return this.leading && performance.now() - this.renewedAt < this.renewDeadlineMs;
  }

  /** One attempt to take or keep the lease; true when this candidate holds it afterwards. */
  private async tryAcquireOrRenew(timeoutMs: number): Promise<boolean> {
    const startedAt = performance.now();
    const path = resourcePath(LEASES, this.options.namespace, this.options.name);
    const now = Date.now();
    const won = () => {
      // Counted from when the attempt began: the lease may have been written as early as that.
      this.renewedAt = startedAt;
      return true;
    };
    const signal = AbortSignal.any([
      this.stopController.signal,
      AbortSignal.timeout(Math.max(1, Math.ceil(timeoutMs))),
    ]);
    try {
      // Fast path, as client-go: the leader renews from the lease it last wrote, without a GET;
      // only while that lease names it: one read showing another holder must never be overwritten.
      if (this.leading && this.lease?.spec?.holderIdentity === this.identity) {
        try {
          const renewed = await this.put(path, this.renewed(this.lease, now), signal);
          this.observe(renewed);
          return won();
        } catch (err) {
          if (signal.aborted) return false;
          this.log.debug('fast renewal failed; reading the lease', { error: err });
        }
      }
      let current: Lease;
      try {
        current = await this.client.request<Lease>('GET', path, { signal });
      } catch (err) {
        if (!isNotFound(err)) throw err;
        const created = await this.client.request<Lease>(
          'POST',
          resourcePath(LEASES, this.options.namespace),
          {
            body: {
              apiVersion: LEASES.apiVersion,
              kind: 'Lease',
              metadata: { name: this.options.name, namespace: this.options.namespace },
              spec: this.spec(now, now, 0),
            },
            signal,
            unguarded: true,
          },
        );
        this.observe(created);
        return won();
      }
      this.observe(current);
      const holder = current.spec?.holderIdentity ?? '';
      const expired = performance.now() > this.observedAt + (current.spec?.leaseDurationSeconds ?? 0) * 1000;
      if (holder && holder !== this.identity && !expired) return false;
      const updated = await this.put(path, this.renewed(current, now), signal);
      this.observe(updated);
      return won();
    } catch (err) {
      if (isConflict(err)) this.log.debug('lost a race for the lease (409)');
      else if (!this.stopped) this.log.warn('lease request failed', { error: err });
      return false;
    }
  }

  /** The lease with this candidate as holder: a renewal keeps acquireTime and transitions. */
  private renewed(lease: Lease, now: number): Lease {
    const spec = lease.spec ?? {};
    const mine = spec.holderIdentity === this.identity;
    return {
      ...lease,
      spec: mine
        ? {
            ...this.spec(now, now, spec.leaseTransitions ?? 0),
            acquireTime: spec.acquireTime ?? microTime(now),
          }
        : this.spec(now, now, (spec.leaseTransitions ?? 0) + 1),
    };
  }

  private spec(acquiredAt: number, renewedAt: number, transitions: number): LeaseSpec {
    return {
      holderIdentity: this.identity,
      leaseDurationSeconds: this.leaseDurationMs / 1000,
      acquireTime: microTime(acquiredAt),
      renewTime: microTime(renewedAt),
      leaseTransitions: transitions,
    };
  }

  private put(path: string, lease: Lease, signal: AbortSignal): Promise<Lease> {
    // PUT with metadata.resourceVersion: the apiserver rejects it (409) if anyone wrote since.
    // Unguarded: the write guard (holdsLease) is what these requests establish.
    return this.client.request<Lease>('PUT', path, { body: lease, signal, unguarded: true });
  }

  /** Records the lease; the expiry clock restarts only when the record itself changed. */
  private observe(lease: Lease): void {
    this.lease = lease;
    const spec = JSON.stringify(lease.spec ?? {});
    if (spec !== this.observedSpec) {
      this.observedSpec = spec;
      this.observedAt = performance.now();
    }
    const holder = lease.spec?.holderIdentity ?? '';
    if (holder !== this.observedHolder) {
      this.observedHolder = holder;
      if (holder) {
        this.log.info('new leader observed', { leader: holder });
        try {
          this.options.onNewLeader?.(holder);
        } catch (err) {
          this.log.error('onNewLeader threw', { error: err });
        }
      }
    }
  }

  /** Hands the lease back: empty holder and a 1 s duration, so a successor need not wait. */
  private async releaseLease(): Promise<void> {
    const lease = this.lease;
    if (!lease || lease.spec?.holderIdentity !== this.identity) return;
    const now = Date.now();
    try {
      const released = await this.client.request<Lease>(
        'PUT',
        resourcePath(LEASES, this.options.namespace, this.options.name),
        {
          body: {
            ...lease,
            spec: {
              holderIdentity: '',
              leaseDurationSeconds: 1,
              acquireTime: microTime(now),
              renewTime: microTime(now),
              leaseTransitions: lease.spec?.leaseTransitions ?? 0,
            },
          },
          timeoutMs: this.renewDeadlineMs,
          unguarded: true,
        },
      );
      this.observe(released);
      this.log.info('released the lease');
    } catch (err) {
      // Someone else already holds it (409) or the API is unreachable: it will expire anyway.
      this.log.warn('could not release the lease', { error: err });
    }
  }
}
