// Kubernetes Events (events.k8s.io/v1) about the objects a controller manages, so `kubectl
// describe` and `kubectl events` tell the story. Recording never fails a reconcile, and the same
// event for the same object is sent at most once per `dedupeMs` (client-go aggregates likewise),
// so a controller retrying in a loop does not flood etcd.
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
  client: KubeClient;
  /** e.g. kube-actions.dev/application-controller */
  reportingController: string;
  /** This replica, e.g. its leader-election identity. */
  reportingInstance: string;
  logger?: Logger;
  dedupeMs?: number;
  now?: () => Date;
}

const EVENTS = { apiVersion: 'events.k8s.io/v1', resource: 'events', namespaced: true };

/** events.k8s.io MicroTime: RFC 3339 with microseconds. */
function microTime(d: Date): string {
  return d.toISOString().replace(/\.(\d{3})Z$/, '.$1000Z');
}

export class EventRecorder {
  private readonly o: EventRecorderOptions;
  private readonly recent = new Map<string, number>();

  constructor(options: EventRecorderOptions) {
    this.o = options;
  }

  /** Records an event; resolves once sent (or skipped), never rejects. */
  async record(
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
    if (last !== undefined && now.getTime() - last < (this.o.dedupeMs ?? 300_000)) return;
    this.recent.set(key, now.getTime());
    if (this.recent.size > 10_000) this.recent.delete(this.recent.keys().next().value!);
    const namespace = meta.namespace || 'default';
    try {
      await this.o.client.request('POST', resourcePath(EVENTS, namespace), {
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
    } catch (err) {
      (this.o.logger ?? silentLogger).warn('could not record event', {
        reason,
        error: (err as Error).message,
      });
    }
  }
}
