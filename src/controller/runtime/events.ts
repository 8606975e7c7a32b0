// Kubernetes Events (events.k8s.io/v1) about the objects a controller manages, so `kubectl
// describe` and `kubectl events` tell the story. Recording never fails a reconcile, and the same
// event for the same object is sent at most once per `dedupeMs` (client-go aggregates likewise),
// so a controller retrying in a loop does not flood etcd. Like client-go's broadcaster, recording
// only queues the event: a few senders write them in the background, so a reconcile never waits
// for an Event (two per sync were two round trips on every sync's path), and a full queue drops
// new events with a warning rather than holding memory or workers.
import type { KubeClient } from '../../core/kube/client.ts';
import type { Logger } from './log.ts';
import { silentLogger } from './log.ts';
import { resourcePath } from '../../core/kube/objects.ts';

export interface EventTarget {
  apiVersion?: string;
  kind?: string;
  metadata?: { name?: string; namespace?: string; uid?: string; resourceVersion?: string };
}

export interface EventRecorderOptions {
  client: Pick<KubeClient, 'request'>;
  /** e.g. kube-actions.dev/application-controller */
  reportingController: string;
  /** This replica, e.g. its leader-election identity. */
  reportingInstance: string;
  logger?: Logger;
  dedupeMs?: number;
  now?: () => Date;
  /** Events waiting to be sent at most (client-go's maxQueuedEvents); default 1000. */
  maxQueued?: number;
  /** Events sent at once; default 4. */
  senders?: number;
}

const EVENTS = { apiVersion: 'events.k8s.io/v1', resource: 'events', namespaced: true };

/** events.k8s.io MicroTime: RFC 3339 with microseconds. */
function microTime(d: Date): string {
  return d.toISOString().replace(/\.(\d{3})Z$/, '.$1000Z');
}

interface QueuedEvent {
  namespace: string;
  body: Record<string, unknown>;
  reason: string;
}

export class EventRecorder {
  private readonly o: EventRecorderOptions;
  private readonly recent = new Map<string, number>();
  private readonly queue: QueuedEvent[] = [];
  private sending = 0;
  private idle: (() => void)[] = [];
  /** Events dropped because the queue was full (reported once per burst). */
  dropped = 0;

  constructor(options: EventRecorderOptions) {
    this.o = options;
  }

  /**
   * Queues an event (unless the same one was recorded within `dedupeMs`) and returns at once;
   * it is sent in the background, and a failure to send is logged, never thrown.
   */
  record(
    target: EventTarget,
    type: 'Normal' | 'Warning',
    reason: string,
    message: string,
    action = reason,
  ): Promise<void> {
    const meta = target.metadata ?? {};
    const now = this.o.now?.() ?? new Date();
    const key = `${meta.uid ?? `${meta.namespace}/${meta.name}`}|${type}|${reason}|${message}`;
    const last = this.recent.get(key);
    if (last !== undefined && now.getTime() - last < (this.o.dedupeMs ?? 300_000)) return Promise.resolve();
    this.recent.set(key, now.getTime());
    if (this.recent.size > 10_000) this.recent.delete(this.recent.keys().next().value!);
    if (this.queue.length >= (this.o.maxQueued ?? 1000)) {
      if (this.dropped++ === 0) {
        (this.o.logger ?? silentLogger).warn('event queue full; dropping events', { reason });
      }
      return Promise.resolve();
    }
    const namespace = meta.namespace || 'default';
    this.queue.push({
      namespace,
      reason,
      body: {
        apiVersion: 'events.k8s.io/v1',
        kind: 'Event',
        // client-go's naming: the object's name and the time in hex (generateName may not end in a dot).
        metadata: {
          name: `${meta.name ?? 'object'}.${(now.getTime() * 1e6 + Math.floor(Math.random() * 1e6)).toString(16)}`,
          namespace,
        },
        eventTime: microTime(now),
        reportingController: this.o.reportingController,
        reportingInstance: this.o.reportingInstance.slice(0, 128),
        action: action.slice(0, 128),
        reason: reason.slice(0, 128),
        type,
        // The API limits notes to 1 kB.
        note: message.length > 1024 ? `${message.slice(0, 1021)}...` : message,
        regarding: {
          apiVersion: target.apiVersion,
          kind: target.kind,
          name: meta.name,
          namespace: meta.namespace,
          uid: meta.uid,
          resourceVersion: meta.resourceVersion,
        },
      },
    });
    this.pump();
    return Promise.resolve();
  }

  /** Resolves once every queued event has been sent (or failed), or after `timeoutMs`. */
  flush(timeoutMs = 5000): Promise<void> {
    if (this.queue.length === 0 && this.sending === 0) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, timeoutMs);
      timer.unref?.();
      this.idle.push(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  private pump(): void {
    while (this.sending < (this.o.senders ?? 4) && this.queue.length > 0) {
      const event = this.queue.shift()!;
      this.sending++;
      void this.send(event).finally(() => {
        this.sending--;
        this.pump();
        if (this.queue.length === 0 && this.sending === 0) {
          this.dropped = 0;
          for (const wake of this.idle.splice(0)) wake();
        }
      });
    }
  }

  private async send(event: QueuedEvent): Promise<void> {
    try {
      await this.o.client.request('POST', resourcePath(EVENTS, event.namespace), { body: event.body });
    } catch (err) {
      (this.o.logger ?? silentLogger).warn('could not record event', {
        reason: event.reason,
        error: (err as Error).message,
      });
    }
  }
}
