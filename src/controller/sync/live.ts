// The live state of managed objects, from watches rather than GETs: one informer per resource
// type, selecting only objects that carry an application's instance label, started the first time
// an application needs that type. Reconciles read it for free, and its events tell which
// application to look at when someone edits a managed object (self-heal).
import type { KubeClient } from '../../core/kube/client.ts';
import { Informer } from '../runtime/informer.ts';
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
  /**
   * The (shared, started) informer for a resource type, selecting managed objects by the
   * instance label; the Manager's informer() in the controller.
   */
  informer: (mapping: ResourceMapping) => Informer<KubeResource>;
  /** Called for every add/update/delete of a managed object after the initial list. */
  onChange?: (obj: KubeResource) => void;
  /** How long a first list may take before a reconcile gives up (default 30 s). */
  syncTimeoutMs?: number;
}

export class LiveObjects {
  private readonly options: LiveObjectsOptions;
  private readonly subscribed = new Set<Informer<KubeResource>>();

  constructor(options: LiveObjectsOptions) {
    this.options = options;
  }

  /** The live object (as last seen by the watch), or undefined when it does not exist or is not managed. */
  async get(mapping: ResourceMapping, namespace: string, name: string): Promise<KubeResource | undefined> {
    const informer = this.informerFor(mapping);
    // Synced (almost always): no timer. A timeout signal per call would live its 30 s, one per
    // object a sync looks at.
    if (informer.hasSynced()) return informer.get(mapping.namespaced ? namespace : '', name);
    // A kind whose list keeps failing (RBAC, a broken conversion webhook) must not hold a worker forever.
    await informer
      .waitForSync(AbortSignal.timeout(this.options.syncTimeoutMs ?? 30_000))
      .catch((err: unknown) => {
        throw new Error(
          `the watch of ${mapping.resource} (${mapping.apiVersion}) has not synced: ${(err as Error).message}`,
          { cause: err },
        );
      });
    return informer.get(mapping.namespaced ? namespace : '', name);
  }

  private informerFor(mapping: ResourceMapping): Informer<KubeResource> {
    const informer = this.options.informer(mapping);
    const onChange = this.options.onChange;
    if (onChange && !this.subscribed.has(informer)) {
      this.subscribed.add(informer);
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
    return informer;
  }
}

/**
 * Label-selected informers started on first use, outside a Manager: for tests and tools, and for
 * the watches on another cluster (the Manager's informers all use its own client).
 */
export function managedInformers(
  client: KubeClient,
  namespace?: string,
): {
  informer: (mapping: ResourceMapping) => Informer<KubeResource>;
  stop: () => Promise<void>;
} {
  const informers = new Map<string, Informer<KubeResource>>();
  let stopped = false;
  return {
    informer: (mapping) => {
      // A reconcile still holding a replaced cluster's connection must not start a watch no one stops.
      if (stopped) throw new Error('the watches of this cluster were stopped (its connection was replaced)');
      const key = `${mapping.apiVersion}/${mapping.resource}`;
      let informer = informers.get(key);
      if (!informer) {
        informer = new Informer<KubeResource>(client, {
          resource: mapping,
          labelSelector: INSTANCE_LABEL,
          ...(namespace ? { namespace } : {}),
        });
        informer.start();
        informers.set(key, informer);
      }
      return informer;
    },
    stop: async () => {
      stopped = true;
      await Promise.all([...informers.values()].map((i) => i.stop()));
    },
  };
}
