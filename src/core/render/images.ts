// Image overrides in the syntax of `kustomize edit set image`, applied to every container of every
// workload kind after rendering, so they work the same for kustomize, Helm and plain YAML:
//
//   name=newName:tag   name=newName@sha256:...   name=newName   name:tag   name@sha256:...
import type { KubeObject } from './manifest.ts';

export interface ImageRef {
  /** Everything before the tag and digest: registry[:port]/path. */
  name: string;
  tag?: string;
  digest?: string;
}

export interface ImageOverride {
  /** The image name to match, without tag or digest. */
  name: string;
  newName?: string;
  newTag?: string;
  digest?: string;
}

export class ImageOverrideError extends Error {
  override name = 'ImageOverrideError';
}

const DIGEST = /^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]{32,}$/;
const TAG = /^[\w][\w.-]{0,127}$/;
const NAME = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?::\d+)?(?:\/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$/i;

/** Splits `registry:5000/path/name:tag@sha256:...`; the tag colon is the one after the last slash. */
export function parseImageRef(ref: string): ImageRef {
  let rest = ref;
  let digest: string | undefined;
  const at = rest.indexOf('@');
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
  }
  const slash = rest.lastIndexOf('/');
  const colon = rest.lastIndexOf(':');
  let tag: string | undefined;
  if (colon > slash) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
  }
  return { name: rest, ...(tag !== undefined ? { tag } : {}), ...(digest !== undefined ? { digest } : {}) };
}

export function formatImageRef(ref: ImageRef): string {
  // A digest pins the content: a tag next to it would be ignored by the runtime and only mislead.
  if (ref.digest) return `${ref.name}@${ref.digest}`;
  return ref.tag ? `${ref.name}:${ref.tag}` : ref.name;
}

export function parseImageOverride(spec: string): ImageOverride {
  const fail = (why: string) =>
    new ImageOverrideError(
      `invalid image override "${spec}": ${why} (expected name=newName:tag, name=newName@sha256:digest, name:tag or name@sha256:digest)`,
    );
  const eq = spec.indexOf('=');
  const name = eq >= 0 ? spec.slice(0, eq) : parseImageRef(spec).name;
  const target = parseImageRef(eq >= 0 ? spec.slice(eq + 1) : spec);
  if (!NAME.test(name)) throw fail(`"${name}" is not an image name`);
  if (eq >= 0 && !NAME.test(target.name)) throw fail(`"${target.name}" is not an image name`);
  if (target.tag !== undefined && !TAG.test(target.tag)) throw fail(`"${target.tag}" is not a valid tag`);
  if (target.digest !== undefined && !DIGEST.test(target.digest))
    throw fail(`"${target.digest}" is not a valid digest`);
  if (eq < 0 && target.tag === undefined && target.digest === undefined) throw fail('nothing to change');
  return {
    name,
    ...(eq >= 0 && target.name !== name ? { newName: target.name } : {}),
    ...(target.tag !== undefined ? { newTag: target.tag } : {}),
    ...(target.digest !== undefined ? { digest: target.digest } : {}),
  };
}

/** Where each kind keeps its pod spec. */
function podSpecOf(o: KubeObject): Record<string, unknown> | undefined {
  const get = (v: unknown, ...path: string[]): unknown =>
    path.reduce<unknown>(
      (acc, k) => (acc && typeof acc === 'object' ? (acc as Record<string, unknown>)[k] : undefined),
      v,
    );
  let spec: unknown;
  switch (o.kind) {
    case 'Pod':
      spec = o.spec;
      break;
    case 'CronJob':
      spec = get(o.spec, 'jobTemplate', 'spec', 'template', 'spec');
      break;
    case 'Deployment':
    case 'StatefulSet':
    case 'DaemonSet':
    case 'ReplicaSet':
    case 'ReplicationController':
    case 'Job':
    case 'Rollout':
      spec = get(o.spec, 'template', 'spec');
      break;
    default:
      return undefined;
  }
  return spec && typeof spec === 'object' ? (spec as Record<string, unknown>) : undefined;
}

export interface ImageChange {
  object: string;
  container: string;
  from: string;
  to: string;
}

type Container = Record<string, unknown> & { image?: unknown; name?: unknown };

/** Calls `fn` for every container, init container and ephemeral container of every workload. */
function forEachContainer(objects: KubeObject[], fn: (c: Container, o: KubeObject) => void): void {
  for (const o of objects) {
    const spec = podSpecOf(o);
    if (!spec) continue;
    for (const field of ['initContainers', 'containers', 'ephemeralContainers']) {
      const containers = spec[field];
      if (Array.isArray(containers)) for (const c of containers as Container[]) fn(c, o);
    }
  }
}

/** The image names (without tag or digest) used by the workloads' containers. */
export function containerImageNames(objects: KubeObject[]): Set<string> {
  const names = new Set<string>();
  forEachContainer(objects, (c) => {
    if (typeof c.image === 'string') names.add(parseImageRef(c.image).name);
  });
  return names;
}

/**
 * Applies the overrides in place to every container, init container and ephemeral container.
 * Returns what changed, so callers can report it.
 */
export function applyImageOverrides(objects: KubeObject[], overrides: ImageOverride[]): ImageChange[] {
  const changes: ImageChange[] = [];
  if (overrides.length === 0) return changes;
  const byName = new Map(overrides.map((o) => [o.name, o]));
  forEachContainer(objects, (c, o) => {
    if (typeof c.image !== 'string') return;
    const current = parseImageRef(c.image);
    const override = byName.get(current.name);
    if (!override) return;
    const next: ImageRef = { name: override.newName ?? current.name };
    if (override.digest) next.digest = override.digest;
    else if (override.newTag) next.tag = override.newTag;
    else {
      // A rename keeps what pinned the old image.
      if (current.tag) next.tag = current.tag;
      if (current.digest) next.digest = current.digest;
    }
    const image = formatImageRef(next);
    if (image !== c.image) {
      changes.push({
        object: `${o.kind}/${o.metadata.name}`,
        container: String(c.name),
        from: c.image,
        to: image,
      });
      c.image = image;
    }
  });
  return changes;
}
