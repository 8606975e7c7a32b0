// Which REST resource serves a kind: the apiserver's discovery documents, cached per group version
// and fetched again when a kind is missing (a CRD applied a moment ago makes new kinds appear).
import type { KubeClient } from './client.ts';
import { statusCode } from './client.ts';
import type { ResourceRef } from './objects.ts';

interface APIResource {
  name: string;
  kind: string;
  namespaced: boolean;
  verbs?: string[];
}

export interface ResourceMapping extends ResourceRef {
  kind: string;
  namespaced: boolean;
}

export class UnknownKindError extends Error {
  override name = 'UnknownKindError';
}

export class RESTMapper {
  private readonly client: KubeClient;
  private readonly groupVersions = new Map<string, Promise<APIResource[] | undefined>>();

  constructor(client: KubeClient) {
    this.client = client;
  }

  /** The resource for `kind` in `apiVersion`; throws UnknownKindError when the server has none. */
  async mapping(apiVersion: string, kind: string): Promise<ResourceMapping> {
    let found = await this.find(apiVersion, kind, false);
    if (!found) found = await this.find(apiVersion, kind, true);
    if (!found) {
      throw new UnknownKindError(
        `the server has no kind ${kind} in ${apiVersion}${apiVersion.includes('/') ? ' (is its CustomResourceDefinition installed?)' : ''}`,
      );
    }
    return found;
  }

  /** Whether `kind` is namespaced, or undefined when the server does not know it. */
  async isNamespaced(apiVersion: string, kind: string): Promise<boolean | undefined> {
    try {
      return (await this.mapping(apiVersion, kind)).namespaced;
    } catch (err) {
      if (err instanceof UnknownKindError) return undefined;
      throw err;
    }
  }

  /** Forgets everything: after CRDs change. */
  reset(): void {
    this.groupVersions.clear();
  }

  private async find(apiVersion: string, kind: string, fresh: boolean): Promise<ResourceMapping | undefined> {
    if (fresh) this.groupVersions.delete(apiVersion);
    let pending = this.groupVersions.get(apiVersion);
    if (!pending) {
      pending = this.fetch(apiVersion);
      this.groupVersions.set(apiVersion, pending);
      // A failed lookup is not remembered: the next call asks again.
      pending.catch(() => this.groupVersions.delete(apiVersion));
    }
    const resources = await pending;
    // Subresources ("deployments/status") share the kind; the top-level resource has no slash.
    const resource = resources?.find((r) => r.kind === kind && !r.name.includes('/'));
    return resource
      ? { apiVersion, resource: resource.name, namespaced: resource.namespaced, kind }
      : undefined;
  }

  private async fetch(apiVersion: string): Promise<APIResource[] | undefined> {
    const path = apiVersion.includes('/') ? `/apis/${apiVersion}` : `/api/${apiVersion}`;
    try {
      const list = await this.client.request<{ resources: APIResource[] }>('GET', path);
      return list.resources;
    } catch (err) {
      if (statusCode(err) === 404) return undefined;
      throw err;
    }
  }
}
