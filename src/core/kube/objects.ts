// Object shapes, keys and REST paths shared by the informer, the controller and the client.
// Objects are kept as the apiserver's JSON (timestamps are strings, unlike client-node's typed
// models), so one code path serves built-in kinds and custom resources alike.

export interface OwnerReference {
  apiVersion: string;
  kind: string;
  name: string;
  uid: string;
  controller?: boolean;
  blockOwnerDeletion?: boolean;
}

export interface ObjectMeta {
  name?: string;
  namespace?: string;
  uid?: string;
  resourceVersion?: string;
  generation?: number;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  ownerReferences?: OwnerReference[];
  finalizers?: string[];
  creationTimestamp?: unknown;
  deletionTimestamp?: unknown;
}

/** Any Kubernetes object. client-node's models (V1ConfigMap, ...) are assignable to it. */
export interface KubeObject {
  apiVersion?: string;
  kind?: string;
  metadata?: ObjectMeta;
}

/** One resource of the API: `{ apiVersion: 'apps/v1', resource: 'deployments' }`. */
export interface ResourceRef {
  /** "v1" for the core group, otherwise "group/version". */
  apiVersion: string;
  /** The plural resource name used in URLs, e.g. "configmaps". */
  resource: string;
  /** False for cluster-scoped resources (nodes, namespaces, CRDs); default true. */
  namespaced?: boolean;
}

/** What a reconciler is asked to reconcile: one object, by name. */
export interface Request {
  /** Empty for cluster-scoped objects. */
  namespace: string;
  name: string;
}

/** "namespace/name", or "name" for cluster-scoped objects (client-go's MetaNamespaceKeyFunc). */
export function requestKey(request: Request): string {
  return request.namespace ? `${request.namespace}/${request.name}` : request.name;
}

export function parseKey(key: string): Request {
  const slash = key.indexOf('/');
  return slash < 0
    ? { namespace: '', name: key }
    : { namespace: key.slice(0, slash), name: key.slice(slash + 1) };
}

export function objectKey(obj: KubeObject): string {
  const name = obj.metadata?.name;
  if (!name) throw new Error('object has no metadata.name');
  return requestKey({ namespace: obj.metadata?.namespace ?? '', name });
}

/** The API group of an apiVersion: "" for "v1", "apps" for "apps/v1". */
export function groupOf(apiVersion: string): string {
  const slash = apiVersion.indexOf('/');
  return slash < 0 ? '' : apiVersion.slice(0, slash);
}

/**
 * The URL path of a collection (no name) or an object. `namespace` is ignored for cluster-scoped
 * resources; for namespaced ones an empty namespace means "all namespaces".
 */
export function resourcePath(ref: ResourceRef, namespace = '', name?: string, subresource?: string): string {
  const parts = [ref.apiVersion.includes('/') ? '/apis' : '/api', ref.apiVersion];
  if ((ref.namespaced ?? true) && namespace) parts.push('namespaces', encodeURIComponent(namespace));
  parts.push(ref.resource);
  if (name !== undefined) parts.push(encodeURIComponent(name));
  if (subresource !== undefined) parts.push(subresource);
  return parts.join('/');
}
