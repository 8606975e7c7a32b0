// The minimal shape of a Kubernetes object as the pure kube libraries (health, sync-plan) read it:
// plain JSON from the apiserver or from rendered manifests, with `spec`/`status` left untyped and read
// through the small defensive accessors below (a live object may be missing any field).

export interface KubeMetadata {
  name?: string;
  generateName?: string;
  namespace?: string;
  annotations?: Record<string, string>;
  labels?: Record<string, string>;
  generation?: number;
  resourceVersion?: string;
  uid?: string;
  deletionTimestamp?: string;
  finalizers?: string[];
  [key: string]: unknown;
}

export interface KubeResource {
  apiVersion: string;
  kind: string;
  metadata: KubeMetadata;
  spec?: unknown;
  status?: unknown;
  [key: string]: unknown;
}

/** A standard `status.conditions[]` entry (metav1.Condition and the older per-kind variants). */
export interface KubeCondition {
  type: string;
  status: string;
  reason?: string;
  message?: string;
  observedGeneration?: number;
  lastTransitionTime?: string;
}

/** The API group of an apiVersion: `apps/v1` → `apps`, `v1` → `` (core). */
export function apiGroup(apiVersion: string): string {
  const slash = apiVersion.indexOf('/');
  return slash < 0 ? '' : apiVersion.slice(0, slash);
}

export function annotation(obj: KubeResource, key: string): string | undefined {
  const value = obj.metadata.annotations?.[key];
  return typeof value === 'string' ? value : undefined;
}

/** `Kind "name"` or `Kind "name" in namespace "ns"`, for messages. */
export function describeObject(obj: KubeResource, namespace = obj.metadata.namespace): string {
  const name = obj.metadata.name ?? (obj.metadata.generateName ? `${obj.metadata.generateName}*` : '');
  return `${obj.kind} "${name}"${namespace ? ` in namespace "${namespace}"` : ''}`;
}

export function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Follows a path of keys through nested records; undefined as soon as one is missing. */
export function field(v: unknown, ...path: string[]): unknown {
  let cur = v;
  for (const key of path) {
    if (!isRecord(cur)) return undefined;
    cur = cur[key];
  }
  return cur;
}

/** A numeric field, or `fallback` (the Go zero value by default) when absent or not a number. */
export function numberField(v: unknown, path: string[], fallback = 0): number {
  const value = field(v, ...path);
  return typeof value === 'number' && Number.isFinite(value) ? value : fallback;
}

/** A numeric field, or undefined when absent (a Go pointer field such as `spec.replicas`). */
export function optionalNumber(v: unknown, path: string[]): number | undefined {
  const value = field(v, ...path);
  return typeof value === 'number' && Number.isFinite(value) ? value : undefined;
}

export function stringField(v: unknown, path: string[]): string {
  const value = field(v, ...path);
  return typeof value === 'string' ? value : '';
}

export function arrayField(v: unknown, path: string[]): unknown[] {
  const value = field(v, ...path);
  return Array.isArray(value) ? (value as unknown[]) : [];
}

/** `status.conditions`, keeping only well-formed entries. */
export function conditionsOf(obj: { status?: unknown }): KubeCondition[] {
  const out: KubeCondition[] = [];
  for (const c of arrayField(obj.status, ['conditions'])) {
    if (!isRecord(c) || typeof c.type !== 'string') continue;
    out.push({
      type: c.type,
      status: typeof c.status === 'string' ? c.status : '',
      reason: typeof c.reason === 'string' ? c.reason : undefined,
      message: typeof c.message === 'string' ? c.message : undefined,
      observedGeneration: typeof c.observedGeneration === 'number' ? c.observedGeneration : undefined,
      lastTransitionTime: typeof c.lastTransitionTime === 'string' ? c.lastTransitionTime : undefined,
    });
  }
  return out;
}

export function findCondition(obj: { status?: unknown }, type: string): KubeCondition | undefined {
  return conditionsOf(obj).find((c) => c.type === type);
}
