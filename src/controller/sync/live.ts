// The live state of managed objects, from watches rather than GETs: one informer per resource
// type, selecting only objects that carry an application's instance label, started the first time
// an application needs that type. Reconciles read it for free, and its events tell which
// application to look at when someone edits a managed object (self-heal).
import type { KubeClient } from '../runtime/client.ts';
import { Informer } from '../runtime/informer.ts';
import type { Logger } from '../runtime/log.ts';
import type { Registry } from '../runtime/metrics.ts';
import type { ResourceMapping } from '../../core/kube/discovery.ts';
import type { KubeResource } from '../../core/kube/resource.ts';
import { INSTANCE_LABEL, TRACKING_ANNOTATION } from './source.ts';

/** Which application a managed object belongs to, from its tracking id (`<ns>_<app>:...`). */
export function owningApplication(obj: KubeResource): { namespace: string; name: string } | undefined {
  const id = obj.metadata.annotations?.[TRACKING_ANNOTATION];
  const m = id ? /^([^_:]+)_([^:]+):/.exec(id) : null;
  return m ? { namespace: m[1]!, name: m[2]! } : undefined;
}

export interface LiveObjectsOptions {
  logger?: Logger;
  metrics?: Registry;
  /** Called for every add/update/delete of a managed object (after the initial list). */
  onChange?: (obj: KubeResource) => void;
}

export class LiveObjects {
  private readonly client: KubeClient;
  private readonly options: LiveObjectsOptions;
  private readonly informers = new Map<string, Informer<KubeResource>>();
  private stopped = false;

  constructor(client: KubeClient, options: LiveObjectsOptions = {}) {
    this.client = client;
    this.options = options;
  }

  /** The live object (as last seen by the watch), or undefined when it does not exist or is not managed. */
  async get(mapping: ResourceMapping, namespace: string, name: string): Promise<KubeResource | undefined> {
    const informer = this.informerFor(mapping);
    await informer.waitForSync();
    return informer.get(mapping.namespaced ? namespace : '', name);
  }

  /** Resource types watched so far. */
  watched(): string[] {
    return [...this.informers.keys()];
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await Promise.all([...this.informers.values()].map((i) => i.stop()));
  }

  private informerFor(mapping: ResourceMapping): Informer<KubeResource> {
    const key = `${mapping.apiVersion}/${mapping.resource}`;
    let informer = this.informers.get(key);
    if (!informer) {
      if (this.stopped) throw new Error('live object cache is stopped');
      informer = new Informer<KubeResource>(this.client, {
        resource: mapping,
        labelSelector: INSTANCE_LABEL,
        name: `managed ${key}`,
        ...(this.options.logger ? { logger: this.options.logger } : {}),
        ...(this.options.metrics ? { metrics: this.options.metrics } : {}),
      });
      const onChange = this.options.onChange;
      if (onChange) {
        informer.addHandlers({
          onAdd: (obj, info) => {
            if (!info.initialList) onChange(obj);
          },
          onUpdate: (_old, obj, info) => {
            if (!info.resync) onChange(obj);
          },
          onDelete: (obj) => onChange(obj),
        });
      }
      informer.start();
      this.informers.set(key, informer);
    }
    return informer;
  }
}
