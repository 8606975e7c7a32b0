// Read-your-own-writes over an informer. A reconciler that has just written an object (a status,
// a finalizer) may be woken again before the watch delivers that write; reading the cache then
// would show the state before it, so a measurement would be taken twice or a sync started again.
// This remembers the resourceVersion of each object's last write by this controller: while the
// cache holds another version, the object is read from the API instead (controller-runtime leaves
// this to each reconciler; client-go's "mutation cache" does the same for its own writes).
import { isNotFound, type KubeClient } from '../../core/kube/client.ts';
import type { KubeObject, ResourceRef } from '../../core/kube/objects.ts';

/** What OwnWrites needs of an informer: its cached copy of one object. */
export interface ObjectCache<T> {
  get(namespace: string, name: string): T | undefined;
}

export interface OwnWritesOptions {
  /** Hand out a copy of the cached object, for a reconciler that edits what it is given. */
  clone?: boolean;
}

export class OwnWrites<T extends KubeObject> {
  private readonly written = new Map<string, string>();
  private readonly cache: ObjectCache<T>;
  private readonly client: Pick<KubeClient, 'get'>;
  private readonly resource: ResourceRef;
  private readonly clone: boolean;

  constructor(
    cache: ObjectCache<T>,
    client: Pick<KubeClient, 'get'>,
    resource: ResourceRef,
    options: OwnWritesOptions = {},
  ) {
    this.cache = cache;
    this.client = client;
    this.resource = resource;
    this.clone = options.clone ?? false;
  }

  /** The object as of this controller's last write at least; undefined when it does not exist. */
  async get(namespace: string, name: string): Promise<T | undefined> {
    const key = `${namespace}/${name}`;
    const cached = this.cache.get(namespace, name);
    const last = this.written.get(key);
    if (cached && (!last || cached.metadata?.resourceVersion === last)) {
      return this.clone ? structuredClone(cached) : cached;
    }
    // Not cached, or cached at another version than our write: the API knows.
    const fresh = await this.client.get<T>(this.resource, namespace, name).catch((err: unknown) => {
      if (isNotFound(err)) return undefined;
      throw err;
    });
    const version = fresh?.metadata?.resourceVersion;
    if (version) this.written.set(key, version);
    else this.written.delete(key);
    return fresh;
  }

  /** Records a write this controller made (the API's answer to it). */
  wrote(obj: KubeObject): void {
    const { namespace = '', name, resourceVersion } = obj.metadata ?? {};
    if (resourceVersion && name) this.written.set(`${namespace}/${name}`, resourceVersion);
  }
}
