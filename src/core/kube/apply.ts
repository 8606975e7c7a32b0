// Server-side apply for a set of objects, shaped like Flux's ssa.ResourceManager: resolve every
// object's resource and namespace first, dry-run all of them (so one invalid object means nothing
// is applied), compare the dry-run result with the live object (so fields the apiserver defaults
// never look like drift), then apply and delete one object at a time in the order the caller plans.
import { createHash } from 'node:crypto';
import type { KubeClient } from './client.ts';
import { PatchType, statusCode } from './client.ts';
import { resourcePath } from './objects.ts';
import type { ResourceMapping, RESTMapper } from './discovery.ts';
import { UnknownKindError } from './discovery.ts';
import { sortKeys } from '../json.ts';
import { apiGroup, describeObject, isRecord, type KubeResource } from './resource.ts';

export const FIELD_MANAGER = 'kube-actions';

/** An object with the resource that serves it and its final namespace ('' when cluster-scoped). */
export interface ResolvedObject {
  object: KubeResource;
  mapping: ResourceMapping;
  namespace: string;
  /** `group/Kind/namespace/name`: stable identity for inventories and messages. */
  key: string;
}

export interface DryRunOutcome {
  resolved: ResolvedObject;
  /** The object as the apiserver would store it (defaults filled in), when the dry-run could tell. */
  merged?: KubeResource;
  /** Why the apiserver refused it. */
  error?: string;
}

export class ApplyError extends Error {
  override name = 'ApplyError';
  /** One line per object that failed. */
  readonly problems: string[];
  constructor(summary: string, problems: string[]) {
    super(problems.length ? `${summary}:\n${problems.map((p) => `  - ${p}`).join('\n')}` : summary);
    this.problems = problems;
  }
}

export function resourceKey(group: string, kind: string, namespace: string, name: string): string {
  return `${group}/${kind}/${namespace}/${name}`;
}

function isObjectFault(code: number | undefined): boolean {
  return code !== undefined && code >= 400 && code < 500 && code !== 429 && code !== 401;
}

function apiMessage(err: unknown): string {
  const body = (err as { body?: unknown }).body;
  if (isRecord(body) && typeof body.message === 'string') return body.message;
  return err instanceof Error ? err.message : String(err);
}

export class ResourceManager {
  private readonly client: KubeClient;
  private readonly mapper: RESTMapper;
  readonly fieldManager: string;

  constructor(client: KubeClient, mapper: RESTMapper, options: { fieldManager?: string } = {}) {
    this.client = client;
    this.mapper = mapper;
    this.fieldManager = options.fieldManager ?? FIELD_MANAGER;
  }

  /**
   * Finds every object's resource and namespace: namespaced objects without one get
   * `defaultNamespace`; a namespace on a cluster-scoped object is dropped, as kubectl does. Kinds the
   * server does not know yet are allowed when `pendingKinds` says a CRD in the same set defines them.
   */
  async resolve(
    objects: readonly KubeResource[],
    defaultNamespace: string,
    pendingKinds: ReadonlySet<string> = new Set(),
  ): Promise<ResolvedObject[]> {
    const problems: string[] = [];
    const resolved: ResolvedObject[] = [];
    for (const object of objects) {
      const name = object.metadata.name ?? '';
      let mapping: ResourceMapping;
      try {
        mapping = await this.mapper.mapping(object.apiVersion, object.kind);
      } catch (err) {
        if (!(err instanceof UnknownKindError)) throw err;
        if (!pendingKinds.has(`${apiGroup(object.apiVersion)}/${object.kind}`)) {
          problems.push(`${describeObject(object)}: ${err.message}`);
          continue;
        }
        // Served once its CRD (in this same sync) is established; assumed namespaced until then.
        mapping = { apiVersion: object.apiVersion, kind: object.kind, resource: '', namespaced: true };
      }
      // An empty namespace (Helm charts often render one) means the default, as for kubectl.
      const namespace = mapping.namespaced ? object.metadata.namespace || defaultNamespace : '';
      if (mapping.namespaced && !namespace) {
        problems.push(
          `${describeObject(object)} is namespaced but has no namespace and the application sets none`,
        );
        continue;
      }
      resolved.push({
        object,
        mapping,
        namespace,
        key: resourceKey(apiGroup(object.apiVersion), object.kind, namespace, name),
      });
    }
    if (problems.length) throw new ApplyError('cannot map objects to API resources', problems);
    return resolved;
  }

  /** The object as applied: namespace set (or removed), nothing else changed. */
  private body(r: ResolvedObject): KubeResource {
    const metadata = { ...r.object.metadata };
    if (r.namespace) metadata.namespace = r.namespace;
    else delete metadata.namespace;
    return { ...r.object, metadata };
  }

  private async applyRequest(r: ResolvedObject, dryRun: boolean): Promise<KubeResource> {
    const mapping = r.mapping.resource
      ? r.mapping
      : await this.mapper.mapping(r.object.apiVersion, r.object.kind);
    return this.client.patch<KubeResource>(
      mapping,
      r.namespace,
      r.object.metadata.name!,
      JSON.stringify(this.body(r)),
      PatchType.apply,
      // force: the application is the source of truth for the fields it sets (as Argo CD and Flux).
      { fieldManager: this.fieldManager, force: true, ...(dryRun ? { dryRun: 'All' } : {}) },
    );
  }

  /**
   * Server-side dry-run of every object, all of them, in parallel batches. An object whose
   * namespace or CRD this same sync creates cannot be checked yet: `creatable` says so and it is
   * reported without a merged result instead of as an error.
   */
  async dryRun(
    objects: readonly ResolvedObject[],
    creatable: (r: ResolvedObject) => boolean,
  ): Promise<DryRunOutcome[]> {
    const outcomes = new Array<DryRunOutcome>(objects.length);
    let next = 0;
    const worker = async () => {
      for (let i = next++; i < objects.length; i = next++) {
        const resolved = objects[i]!;
        if (!resolved.mapping.resource) {
          outcomes[i] = { resolved };
          continue;
        }
        try {
          outcomes[i] = { resolved, merged: await this.applyRequest(resolved, true) };
        } catch (err) {
          const code = statusCode(err);
          if (code === 404 && creatable(resolved)) outcomes[i] = { resolved };
          // The object's own fault (invalid, forbidden, namespace missing): report it. Anything
          // else (unreachable server, 5xx, throttling, bad credentials) fails the whole attempt.
          else if (isObjectFault(code)) outcomes[i] = { resolved, error: apiMessage(err) };
          else throw err;
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(8, objects.length) }, worker));
    return outcomes;
  }

  async apply(r: ResolvedObject): Promise<KubeResource> {
    try {
      return await this.applyRequest(r, false);
    } catch (err) {
      if (isObjectFault(statusCode(err))) {
        throw new ApplyError(`cannot apply ${describeObject(r.object, r.namespace)}`, [apiMessage(err)]);
      }
      throw err;
    }
  }

  /** The live object, or undefined when there is none. */
  async get(mapping: ResourceMapping, namespace: string, name: string): Promise<KubeResource | undefined> {
    try {
      return await this.client.request<KubeResource>('GET', resourcePath(mapping, namespace, name));
    } catch (err) {
      if (statusCode(err) === 404) return undefined;
      throw err;
    }
  }

  /**
   * Deletes an object; `uid` guards against deleting a newer object of the same name (a
   * precondition the apiserver checks). Missing is success.
   */
  async delete(
    mapping: ResourceMapping,
    namespace: string,
    name: string,
    options: { uid?: string; propagationPolicy?: 'Foreground' | 'Background' | 'Orphan' } = {},
  ): Promise<void> {
    try {
      await this.client.request('DELETE', resourcePath(mapping, namespace, name), {
        body: {
          apiVersion: 'v1',
          kind: 'DeleteOptions',
          propagationPolicy: options.propagationPolicy ?? 'Foreground',
          ...(options.uid ? { preconditions: { uid: options.uid } } : {}),
        },
      });
    } catch (err) {
      const code = statusCode(err);
      if (code === 404) return;
      if (code === 409) return; // the uid changed: someone recreated it; it is not ours to delete
      throw err;
    }
  }
}

const VOLATILE_METADATA = [
  'managedFields',
  'resourceVersion',
  'generation',
  'uid',
  'creationTimestamp',
  'selfLink',
];

/**
 * The part of an object that a sync compares: no status (owned by controllers) and none of the
 * metadata the apiserver maintains. Key order is normalised so equal objects serialise equally.
 */
export function comparable(obj: KubeResource): unknown {
  const { status: _status, metadata, ...rest } = obj;
  const meta: Record<string, unknown> = { ...metadata };
  for (const key of VOLATILE_METADATA) delete meta[key];
  const annotations = meta.annotations as Record<string, string> | undefined;
  if (annotations && 'kubectl.kubernetes.io/last-applied-configuration' in annotations) {
    const { 'kubectl.kubernetes.io/last-applied-configuration': _last, ...others } = annotations;
    meta.annotations = others;
  }
  if (meta.annotations && Object.keys(meta.annotations).length === 0) delete meta.annotations;
  return sortKeys({ ...rest, metadata: meta });
}

/** Whether applying would change the live object: the dry-run result differs from it. */
export function differs(merged: KubeResource, live: KubeResource | undefined): boolean {
  if (!live) return true;
  return JSON.stringify(comparable(merged)) !== JSON.stringify(comparable(live));
}

/** A stable digest of a desired object, to know when it changed without keeping it. */
export function digest(obj: unknown): string {
  return createHash('sha256')
    .update(JSON.stringify(sortKeys(obj)))
    .digest('hex')
    .slice(0, 32);
}
