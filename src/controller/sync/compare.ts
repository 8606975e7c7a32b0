// Comparing an application's desired objects with the cluster (gitops-engine's diff step): every
// desired object is dry-run server-side and the result compared with the live object, so only
// real differences count (defaults the apiserver fills in never do). A dry-run result is reused
// while neither the desired object nor the live object's resourceVersion changed, so an idle
// resync sends no requests at all.
import {
  differs,
  digest,
  type DryRunOutcome,
  type ResolvedObject,
  type ResourceManager,
} from '../../core/kube/apply.ts';
import { overlay, type FieldPath } from '../../core/kube/ignore-differences.ts';
import type { KubeResource } from '../../core/kube/resource.ts';
import { jsonBytes, SizedLru } from '../../core/lru.ts';

export interface ObjectComparison {
  resolved: ResolvedObject;
  live: KubeResource | undefined;
  /** What applying would store; absent when the dry-run could not tell (namespace/CRD not there yet). */
  merged?: KubeResource;
  inSync: boolean;
  /** The apiserver's reason for refusing the object in a dry-run. */
  error?: string;
}

interface CachedComparison {
  desired: string;
  liveVersion: string;
  inSync: boolean;
  /**
   * Kept only for an object out of sync (the health of one about to be applied is read from it):
   * an in-sync entry needs its verdict alone, and most entries are in sync.
   */
  merged: KubeResource | undefined;
}

export class Comparer {
  private readonly resources: ResourceManager;
  /** Bounded by memory (64 MiB of dry-run results), the least recently compared going first. */
  private readonly cache = new SizedLru<string, CachedComparison>(
    64 * 1024 * 1024,
    (e) => jsonBytes(e.merged) + e.desired.length * 2 + 128,
  );
  /** Dry-runs sent (cache misses), for tests and benchmarks. */
  dryRuns = 0;

  private readonly onDryRuns: ((n: number) => void) | undefined;

  constructor(resources: ResourceManager, onDryRuns?: (n: number) => void) {
    this.resources = resources;
    this.onDryRuns = onDryRuns;
  }

  private remember(key: string, entry: CachedComparison): void {
    this.cache.set(key, entry.inSync ? { ...entry, merged: undefined } : entry);
  }

  /**
   * An object was just applied and `stored` is what the apiserver answered: at that
   * resourceVersion it is what the desired object makes it, so in sync. Without this, the look
   * after every sync would dry-run every object it applied again, a request per object.
   */
  applied(resolved: ResolvedObject, stored: KubeResource): void {
    const liveVersion = stored.metadata.resourceVersion;
    if (!liveVersion) return;
    this.remember(resolved.key, {
      desired: digest(resolved.object),
      liveVersion,
      inSync: true,
      merged: undefined,
    });
  }

  /**
   * Compares each desired object with its live counterpart. `creatable` tells which objects may be
   * missing a namespace or CRD that this same sync will create.
   */
  async compare(
    objects: readonly {
      resolved: ResolvedObject;
      live: KubeResource | undefined;
      /** Fields left out of the comparison (spec.ignoreDifferences). */
      ignore?: readonly FieldPath[];
    }[],
    creatable: (r: ResolvedObject) => boolean,
  ): Promise<ObjectComparison[]> {
    const results: (ObjectComparison | undefined)[] = [];
    const misses: number[] = [];
    for (const [i, { resolved, live }] of objects.entries()) {
      const cached = this.cache.get(resolved.key);
      if (
        live &&
        cached &&
        cached.liveVersion === live.metadata.resourceVersion &&
        cached.desired === digest(resolved.object)
      ) {
        results[i] = {
          resolved,
          live,
          inSync: cached.inSync,
          ...(cached.merged ? { merged: cached.merged } : {}),
        };
      } else {
        misses.push(i);
      }
    }
    if (misses.length) {
      this.dryRuns += misses.length;
      this.onDryRuns?.(misses.length);
      const outcomes = await this.resources.dryRun(
        misses.map((i) => objects[i]!.resolved),
        creatable,
      );
      const compared = outcomes.map(async (outcome: DryRunOutcome, j) => {
        const i = misses[j]!;
        const { resolved } = objects[i]!;
        let { live } = objects[i]!;
        if (outcome.error !== undefined) {
          results[i] = { resolved, live, inSync: false, error: outcome.error };
          this.cache.delete(resolved.key);
          return;
        }
        // A dry-run of an existing object answers with the stored object's resourceVersion. When
        // that is not the watched copy's, the watch has not shown the latest write yet (our own
        // apply a moment ago, the Deployment controller's revision annotation): compared with the
        // stale copy, the object would look OutOfSync and self-heal would sync it again at once.
        const stored = outcome.merged?.metadata.resourceVersion;
        if (stored && stored !== live?.metadata.resourceVersion) {
          live =
            (await this.resources.get(
              resolved.mapping,
              resolved.namespace,
              resolved.object.metadata.name ?? '',
            )) ?? live;
        }
        const ignore = objects[i]!.ignore ?? [];
        // An ignored field counts as the live object has it, or as absent when it has none.
        const compared =
          outcome.merged && ignore.length ? overlay(outcome.merged, live, ignore, true) : outcome.merged;
        const inSync = compared !== undefined && !differs(compared, live);
        results[i] = { resolved, live, inSync, ...(outcome.merged ? { merged: outcome.merged } : {}) };
        if (live?.metadata.resourceVersion && outcome.merged) {
          this.remember(resolved.key, {
            desired: digest(resolved.object),
            liveVersion: live.metadata.resourceVersion,
            inSync,
            merged: outcome.merged,
          });
        } else {
          this.cache.delete(resolved.key);
        }
      });
      await Promise.all(compared);
    }
    return results as ObjectComparison[];
  }
}
