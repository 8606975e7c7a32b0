// The Manager runs a controller process: one API client, shared informers (one per resource,
// namespace and selector, however many controllers watch it), the controllers, leader election,
// and an HTTP endpoint for probes and metrics. Informers run on every replica so a standby has a
// warm cache; controllers run only on the leader, so only one replica writes.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type * as k8s from '../../core/kube/client-node.ts';
import { KubeClient } from '../../core/kube/client.ts';
import { Controller, type ControllerOptions } from './controller.ts';
import { EventRecorder } from './events.ts';
import { Informer, type InformerOptions } from './informer.ts';
import { defaultIdentity, LeaderElector, type LeaderElectionOptions } from './leader-election.ts';
import { Logger } from './log.ts';
import { Registry } from '../../core/metrics.ts';
import { resourcePath, type KubeObject, type ResourceRef } from '../../core/kube/objects.ts';

export type ManagerLeaderElection = Omit<
  LeaderElectionOptions,
  'client' | 'onStartedLeading' | 'onStoppedLeading' | 'logger' | 'metrics'
>;

export type InformerDefaults = Pick<
  InformerOptions,
  'resyncPeriodMs' | 'watchdogMs' | 'pageSize' | 'watchTimeoutSeconds' | 'backoff'
>;

export interface ManagerOptions {
  kubeConfig: k8s.KubeConfig;
  /** JSON logs; default info level to stderr. */
  logger?: Logger;
  metrics?: Registry;
  /** Run controllers only while holding this lease; omitted: run them at once. */
  leaderElection?: ManagerLeaderElection;
  /** Serve /healthz, /readyz and /metrics; port 0 picks a free port. Omitted: no server. */
  server?: { port: number; host?: string };
  /** Applied to every informer the manager creates. */
  informerDefaults?: InformerDefaults;
}

export interface InformerSelection {
  /** Omitted or empty: all namespaces. */
  namespace?: string;
  labelSelector?: string;
  fieldSelector?: string;
  /** Metadata only (see InformerOptions.metadataOnly). */
  metadataOnly?: boolean;
  /** Cache without metadata.managedFields (see InformerOptions.dropManagedFields). */
  dropManagedFields?: boolean;
}

/** Why the manager stopped: stop() was called, or it lost its lease (the process should exit). */
export type StopReason = 'stopped' | 'leadership-lost';

export class Manager {
  readonly client: KubeClient;
  readonly metrics: Registry;
  readonly logger: Logger;
  /** Resolves when the manager has stopped, with the reason. */
  readonly done: Promise<StopReason>;
  private resolveDone!: (reason: StopReason) => void;
  private readonly options: ManagerOptions;
  private readonly informers = new Map<string, Informer<KubeObject>>();
  private readonly controllers: Controller[] = [];
  private readonly cleanups: (() => Promise<void>)[] = [];
  private readonly elector?: LeaderElector;
  private server?: Server;
  private state: 'new' | 'running' | 'stopping' | 'stopped' = 'new';
  private leading = false;
  private stopping?: Promise<void>;

  constructor(options: ManagerOptions) {
    this.options = options;
    this.logger = options.logger ?? new Logger();
    this.metrics = options.metrics ?? new Registry();
    // The identity goes into the User-Agent: the apiserver's audit log then tells replicas apart
    // (who wrote while holding the Lease, and who did not).
    const identity = options.leaderElection
      ? (options.leaderElection.identity ?? defaultIdentity())
      : undefined;
    this.client = new KubeClient(options.kubeConfig, {
      metrics: this.metrics,
      ...(identity ? { userAgent: `kube-actions-controller/${identity}` } : {}),
    });
    this.done = new Promise((resolve) => (this.resolveDone = resolve));
    if (options.leaderElection) {
      this.elector = new LeaderElector({
        ...options.leaderElection,
        identity: identity!,
        client: this.client,
        logger: this.logger,
        metrics: this.metrics,
        onStartedLeading: () => {
          this.leading = true;
          this.startControllers(this.controllers);
        },
        onStoppedLeading: () => {
          this.leading = false;
          // Leadership ends on stop() too; only an unexpected loss stops the manager from here.
          if (this.state === 'running') {
            // Before anything else: a reconcile still in flight must not write after this
            // moment, when another replica may already lead (its writes would be undone).
            this.client.fenceWrites('this replica lost its leader lease; it writes nothing more');
            this.logger.error('lost the leader lease; stopping');
            void this.shutdown('leadership-lost');
          }
        },
      });
      // Controllers write only while the lease is good at the moment of each write.
      const elector = this.elector;
      this.client.setWriteGuard(() => elector.holdsLease());
    }
  }

  /** This replica's leader-election identity, if it campaigns. */
  get identity(): string | undefined {
    return this.elector?.identity;
  }

  /**
   * An EventRecorder for one of this manager's controllers (`reportingController`, e.g.
   * kube-actions.dev/application-controller), reporting as this replica. Events still queued
   * when the manager stops are sent first (for at most 2 s).
   */
  eventRecorder(reportingController: string): EventRecorder {
    const events = new EventRecorder({
      client: this.client,
      reportingController,
      reportingInstance: this.identity ?? 'kube-actions-controller',
      logger: this.logger,
    });
    this.onStop(() => events.flush(2000));
    return events;
  }

  /**
   * The shared informer for a resource and selection: every caller asking for the same one gets
   * the same instance, so one cache and one watch serve all controllers.
   */
  informer<T extends KubeObject = KubeObject>(
    resource: ResourceRef,
    selection: InformerSelection = {},
  ): Informer<T> {
    const namespace = resource.namespaced === false ? '' : (selection.namespace ?? '');
    const key = JSON.stringify([
      resourcePath(resource, namespace),
      selection.labelSelector ?? '',
      selection.fieldSelector ?? '',
      selection.metadataOnly === true,
      selection.dropManagedFields === true,
    ]);
    let informer = this.informers.get(key);
    if (!informer) {
      informer = new Informer<KubeObject>(this.client, {
        ...this.options.informerDefaults,
        resource,
        namespace,
        labelSelector: selection.labelSelector,
        fieldSelector: selection.fieldSelector,
        metadataOnly: selection.metadataOnly,
        dropManagedFields: selection.dropManagedFields,
        logger: this.logger,
        metrics: this.metrics,
      });
      this.informers.set(key, informer);
      if (this.state === 'running') informer.start();
    }
    return informer as unknown as Informer<T>;
  }

  /** Creates a controller with the manager's metrics and logger and adds it. */
  controller(options: Omit<ControllerOptions, 'metrics' | 'logger'>): Controller {
    const controller = new Controller({ ...options, metrics: this.metrics, logger: this.logger });
    this.add(controller);
    return controller;
  }

  add(controller: Controller): void {
    if (this.state === 'stopping' || this.state === 'stopped') throw new Error('the manager is stopped');
    this.controllers.push(controller);
    if (this.state === 'running' && (this.leading || !this.elector)) this.startControllers([controller]);
  }

  isLeader(): boolean {
    return this.elector ? this.leading : this.state === 'running';
  }

  /** Ready once every informer has its first complete list. */
  readiness(): { ready: boolean; unsynced: string[] } {
    const unsynced = [...this.informers.values()].filter((i) => !i.hasSynced()).map((i) => i.name);
    return { ready: this.state === 'running' && unsynced.length === 0, unsynced };
  }

  /** Where the probe/metrics server listens, once started. */
  address(): AddressInfo | undefined {
    const address = this.server?.address();
    return address && typeof address === 'object' ? address : undefined;
  }

  /**
   * Starts the server, the informers, and either the election or (without one) the controllers.
   * Resolves once all are started; `done` resolves when the manager stops.
   */
  async start(): Promise<void> {
    if (this.state !== 'new') throw new Error('the manager was already started');
    // Listen first: a port in use fails start() before anything else runs.
    if (this.options.server) await this.listen(this.options.server);
    this.state = 'running';
    for (const informer of this.informers.values()) informer.start();
    if (this.elector) {
      void this.elector.run();
    } else {
      this.startControllers(this.controllers);
    }
    this.logger.info('manager started', {
      informers: this.informers.size,
      controllers: this.controllers.length,
      leaderElection: this.elector ? this.elector.identity : false,
      port: this.address()?.port,
    });
  }

  /** Runs `cleanup` at stop, once the controllers have stopped (e.g. connections to other clusters). */
  onStop(cleanup: () => Promise<void>): void {
    this.cleanups.push(cleanup);
  }

  /** Stops controllers (waiting for reconciles in flight), releases the lease, stops the rest. */
  stop(): Promise<void> {
    return this.shutdown('stopped');
  }

  private shutdown(reason: StopReason): Promise<void> {
    this.stopping ??= (async () => {
      this.state = 'stopping';
      await Promise.all(this.controllers.map((c) => c.stop()));
      await Promise.all(this.cleanups.map((c) => c()));
      await this.elector?.stop();
      await Promise.all([...this.informers.values()].map((i) => i.stop()));
      if (this.server) {
        const closed = new Promise<void>((resolve) => this.server!.close(() => resolve()));
        // close() alone waits for keep-alive connections (a scraper's) to go idle.
        this.server.closeAllConnections();
        await closed;
      }
      await this.client.close();
      this.state = 'stopped';
      this.logger.info('manager stopped', { reason });
      this.resolveDone(reason);
    })();
    return this.stopping;
  }

  private startControllers(controllers: Controller[]): void {
    for (const controller of controllers) {
      controller.start().catch((err: unknown) => {
        this.logger.error('controller failed to start', { controller: controller.name, error: err });
      });
    }
  }

  private async listen(options: { port: number; host?: string }): Promise<void> {
    const server = createServer((req, res) => {
      const path = (req.url ?? '/').split('?')[0];
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        res.writeHead(405).end();
        return;
      }
      if (path === '/healthz' || path === '/livez') {
        const alive = this.state === 'running';
        res
          .writeHead(alive ? 200 : 503, { 'content-type': 'text/plain' })
          .end(alive ? 'ok\n' : `${this.state}\n`);
      } else if (path === '/readyz') {
        const { ready, unsynced } = this.readiness();
        res
          .writeHead(ready ? 200 : 503, { 'content-type': 'text/plain' })
          .end(
            ready
              ? 'ok\n'
              : `not ready: ${unsynced.length ? `unsynced ${unsynced.join(', ')}` : this.state}\n`,
          );
      } else if (path === '/metrics') {
        void this.metrics.render().then(
          (text) => res.writeHead(200, { 'content-type': Registry.contentType }).end(text),
          () => res.writeHead(500).end(),
        );
      } else {
        res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
      }
    });
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(options.port, options.host ?? '0.0.0.0', () => {
        server.off('error', reject);
        resolve();
      });
    });
  }
}
