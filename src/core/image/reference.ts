// Image references as docker and the distribution spec read them: [registry/]repository[:tag][@digest].
// A first component with a dot or a colon, or `localhost`, is a registry; otherwise the image is on
// Docker Hub (`nginx` -> docker.io/library/nginx), whose API host is registry-1.docker.io.

export interface ImageReference {
  /** The registry as written (`ghcr.io`, `127.0.0.1:5000`); `docker.io` for Docker Hub. */
  registry: string;
  /** The repository within the registry, lower case (`acme/web`, `library/nginx`). */
  repository: string;
  tag?: string;
  digest?: string;
}

// The distribution spec's grammar (reference/regexp.go), anchored; metadata.ts checks names with
// the same expressions.
const COMPONENT = '[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*';
export const PATH_COMPONENT = new RegExp(`^${COMPONENT}$`);
const REPOSITORY = new RegExp(`^${COMPONENT}(?:/${COMPONENT})*$`);
const TAG = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/;
const DIGEST = /^sha256:[a-f0-9]{64}$/;
export const HOST =
  /^(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*|\[[0-9a-fA-F:]+\])(?::[0-9]+)?$/;

export const DOCKER_HUB = 'docker.io';

export class InvalidReferenceError extends Error {
  constructor(reference: string, why: string) {
    super(`invalid image reference "${reference}": ${why}`);
    this.name = 'InvalidReferenceError';
  }
}

export function isValidTag(tag: string): boolean {
  return TAG.test(tag);
}

/**
 * Parses a reference. Repository names are lowered (`Acme/Web` -> `acme/web`, as docker's
 * metadata-action does) because registries refuse upper case; anything else outside the grammar
 * is an error naming the part at fault.
 */
export function parseReference(reference: string): ImageReference {
  const input = reference.trim();
  if (!input) throw new InvalidReferenceError(reference, 'empty');
  if (/\s/.test(input)) throw new InvalidReferenceError(reference, 'contains whitespace');
  let rest = input;
  let digest: string | undefined;
  const at = rest.indexOf('@');
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (!DIGEST.test(digest))
      throw new InvalidReferenceError(reference, `digest "${digest}" is not sha256:<64 hex>`);
  }
  let tag: string | undefined;
  const colon = rest.lastIndexOf(':');
  if (colon > rest.lastIndexOf('/')) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!TAG.test(tag)) {
      throw new InvalidReferenceError(
        reference,
        `tag "${tag}" must be 1-128 characters of letters, digits, "_", "." and "-", not starting with "." or "-"`,
      );
    }
  }
  let registry = DOCKER_HUB;
  const slash = rest.indexOf('/');
  const first = slash >= 0 ? rest.slice(0, slash) : '';
  if (
    first &&
    (first.includes('.') || first.includes(':') || first === 'localhost' || first.startsWith('['))
  ) {
    if (!HOST.test(first))
      throw new InvalidReferenceError(reference, `registry "${first}" is not a host[:port]`);
    registry = first;
    rest = rest.slice(slash + 1);
  }
  let repository = rest.toLowerCase();
  if (registry === DOCKER_HUB && !repository.includes('/')) repository = `library/${repository}`;
  if (!REPOSITORY.test(repository)) {
    throw new InvalidReferenceError(
      reference,
      `repository "${rest}" must be lower-case letters, digits and separators (".", "_", "__", "-") between "/"-separated parts`,
    );
  }
  if (repository.length > 255)
    throw new InvalidReferenceError(reference, 'repository is longer than 255 characters');
  return { registry, repository, ...(tag !== undefined ? { tag } : {}), ...(digest ? { digest } : {}) };
}

/** An image to push to: a name only, since its tags come from the tags input. */
export function parseImageName(name: string): ImageReference {
  const ref = parseReference(name);
  if (ref.tag !== undefined || ref.digest) {
    throw new Error(`image "${name}" must be a name without a tag or digest; tags come from the tags input`);
  }
  return ref;
}

/** `registry/repository`, the name part of a reference (Docker Hub kept explicit). */
export function imageName(ref: Pick<ImageReference, 'registry' | 'repository'>): string {
  return `${ref.registry}/${ref.repository}`;
}

export function formatReference(ref: ImageReference): string {
  return `${imageName(ref)}${ref.tag !== undefined ? `:${ref.tag}` : ''}${ref.digest ? `@${ref.digest}` : ''}`;
}

/** The host that serves a registry's API: Docker Hub's name differs from its API host. */
export function registryApiHost(registry: string): string {
  return registry === DOCKER_HUB || registry === 'index.docker.io' ? 'registry-1.docker.io' : registry;
}

/** Loopback registries speak plain HTTP by default, as docker and BuildKit allow them to. */
export function isLoopbackRegistry(registry: string): boolean {
  const host = registry.startsWith('[')
    ? registry.slice(0, registry.indexOf(']') + 1)
    : registry.split(':')[0]!;
  return host === 'localhost' || /^127\.\d+\.\d+\.\d+$/.test(host) || host === '[::1]';
}
