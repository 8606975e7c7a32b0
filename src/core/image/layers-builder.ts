// The daemonless builder: files layered onto a base image (or scratch) straight into a registry,
// as `crane append`, ko and jib do. The base's manifest (or each platform's, under an index) is
// read, our layers and a new config are added, and the result is pushed by digest before any tag
// points at it, so a failed build never leaves a tag on a partial image.
import { MEDIA_TYPES, RegistryClient, sha256Digest, type BlobPushResult, type Manifest } from './registry.ts';
import { buildLayer, type Layer, type LayerSpec } from './layer.ts';
import {
  formatReference,
  imageName,
  parseImageName,
  parseReference,
  type ImageReference,
} from './reference.ts';
import type { CredentialSource } from './credentials.ts';
import { formatPlatform, samePlatform, type Platform } from './platform.ts';

export interface ImageConfigOverrides {
  entrypoint?: string[];
  cmd?: string[];
  /** KEY=VALUE; replaces the base's value of the same key. */
  env?: string[];
  workdir?: string;
  user?: string;
  /** `8080`, `8080/tcp`, `53/udp`. */
  ports?: string[];
  labels?: Record<string, string>;
}

export interface LayersBuildOptions {
  /** `scratch`, or a reference to pull the base from. */
  base: string;
  layers: LayerSpec[];
  /** The images to push to (`registry/repo`, no tag); each gets every tag. */
  images: string[];
  tags: string[];
  /** Platforms to build from a base index (default every platform it has); scratch: default linux/amd64. */
  platforms?: Platform[];
  config?: ImageConfigOverrides;
  /** Manifest (or index) annotations, e.g. org.opencontainers.image.*. */
  annotations?: Record<string, string>;
  /** SOURCE_DATE_EPOCH: every file's mtime and the config's `created`. */
  sourceDateEpoch: number;
  /** Where compressed layers are kept between builds (see layer.ts). */
  layerCacheDir?: string;
  credentials?: CredentialSource;
  /** Registries to reach over plain HTTP (loopback ones always are). */
  insecureRegistries?: string[];
  push?: boolean;
  log?: (line: string) => void;
  /** A client per registry; tests and the benchmark pass one to count requests. */
  clientFor?: (registry: string) => RegistryClient;
}

export interface PushStats {
  /** What happened to each blob, by digest (for the last image pushed to). */
  blobs: Record<string, BlobPushResult>;
  uploaded: number;
  skipped: number;
  mounted: number;
  bytesUploaded: number;
}

export interface LayersBuildResult {
  /** The digest of what the tags point at: the index when there is one, else the manifest. */
  digest: string;
  mediaType: string;
  /** The config digest (docker's image id) of a single-platform image. */
  imageId?: string;
  /** Each platform's manifest. */
  manifests: { platform: Platform; digest: string; configDigest: string }[];
  /** `name@digest` for each image. */
  images: string[];
  tags: string[];
  layers: { digest: string; size: number; description: string }[];
  stats: PushStats;
}

interface ImageConfig {
  architecture?: string;
  os?: string;
  variant?: string;
  created?: string;
  config?: {
    Entrypoint?: string[] | null;
    Cmd?: string[] | null;
    Env?: string[] | null;
    WorkingDir?: string;
    User?: string;
    ExposedPorts?: Record<string, object>;
    Labels?: Record<string, string> | null;
    [key: string]: unknown;
  };
  rootfs?: { type: 'layers'; diff_ids: string[] };
  history?: { created?: string; created_by?: string; comment?: string; empty_layer?: boolean }[];
  [key: string]: unknown;
}

interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  platform?: Platform & { 'os.version'?: string; 'os.features'?: string[] };
  annotations?: Record<string, string>;
}

interface ImageManifest {
  schemaVersion: 2;
  mediaType: string;
  config: Descriptor;
  layers: Descriptor[];
  annotations?: Record<string, string>;
}

interface ImageIndex {
  schemaVersion: 2;
  mediaType: string;
  manifests: Descriptor[];
  annotations?: Record<string, string>;
}

/** A platform's base: manifest, config, and where its blobs can be read. */
interface BasePlatform {
  platform: Platform;
  /** The base manifest's digest (none for scratch). */
  digest?: string;
  manifest: ImageManifest;
  config: ImageConfig;
}

const json = (value: unknown) => Buffer.from(JSON.stringify(value));

function isIndex(mediaType: string) {
  return mediaType === MEDIA_TYPES.ociIndex || mediaType === MEDIA_TYPES.dockerList;
}

/** A registry client per registry, reused within one build. */
export function clientCache(options: Pick<LayersBuildOptions, 'credentials' | 'insecureRegistries'>) {
  const clients = new Map<string, RegistryClient>();
  return (registry: string) => {
    let client = clients.get(registry);
    if (!client) {
      client = new RegistryClient({
        registry,
        ...(options.credentials ? { credentials: options.credentials } : {}),
        ...(options.insecureRegistries?.includes(registry) ? { insecure: true } : {}),
      });
      clients.set(registry, client);
    }
    return client;
  };
}

async function readBase(
  base: ImageReference,
  client: RegistryClient,
  wanted: Platform[] | undefined,
): Promise<BasePlatform[]> {
  const top = await client.getManifest(base.repository, base.digest ?? base.tag ?? 'latest');
  const platformManifest = async (manifest: Manifest, platform?: Platform): Promise<BasePlatform> => {
    const parsed = JSON.parse(manifest.body.toString('utf8')) as ImageManifest;
    if (!parsed.config || !Array.isArray(parsed.layers)) {
      throw new Error(`base ${formatReference(base)}: ${manifest.mediaType} is not an image manifest`);
    }
    const config = JSON.parse(
      (await client.getBlob(base.repository, parsed.config.digest)).toString('utf8'),
    ) as ImageConfig;
    return {
      platform: platform ?? {
        os: config.os ?? 'linux',
        architecture: config.architecture ?? 'amd64',
        ...(config.variant ? { variant: config.variant } : {}),
      },
      digest: manifest.digest,
      manifest: parsed,
      config,
    };
  };
  if (!isIndex(top.mediaType)) {
    const single = await platformManifest(top);
    if (wanted && !wanted.some((p) => samePlatform(p, single.platform))) {
      throw new Error(
        `base ${formatReference(base)} is ${formatPlatform(single.platform)} only; asked for ${wanted.map(formatPlatform).join(', ')}`,
      );
    }
    return [single];
  }
  const index = JSON.parse(top.body.toString('utf8')) as ImageIndex;
  // Attestation manifests (BuildKit's provenance and SBOMs) are listed as unknown/unknown.
  const platforms = index.manifests.filter(
    (m) => m.platform && m.platform.os !== 'unknown' && m.platform.architecture !== 'unknown',
  );
  const chosen = wanted
    ? wanted.map((p) => {
        const found = platforms.find((m) => samePlatform(m.platform!, p));
        if (!found) {
          throw new Error(
            `base ${formatReference(base)} has no ${formatPlatform(p)} image (it has ${platforms.map((m) => formatPlatform(m.platform!)).join(', ')})`,
          );
        }
        return found;
      })
    : platforms;
  return Promise.all(
    chosen.map(async (d) => {
      const { os, architecture, variant } = d.platform!;
      return platformManifest(await client.getManifest(base.repository, d.digest), {
        os,
        architecture,
        ...(variant ? { variant } : {}),
      });
    }),
  );
}

function scratchPlatform(platform: Platform): BasePlatform {
  return {
    platform,
    manifest: {
      schemaVersion: 2,
      mediaType: MEDIA_TYPES.ociManifest,
      config: { mediaType: MEDIA_TYPES.ociConfig, digest: '', size: 0 },
      layers: [],
    },
    config: {
      architecture: platform.architecture,
      os: platform.os,
      ...(platform.variant ? { variant: platform.variant } : {}),
      config: {},
      rootfs: { type: 'layers', diff_ids: [] },
      history: [],
    },
  };
}

export function applyConfig(
  base: ImageConfig,
  overrides: ImageConfigOverrides,
  layers: Layer[],
  created: string,
): ImageConfig {
  const config = { ...(base.config ?? {}) };
  if (overrides.entrypoint) {
    config.Entrypoint = overrides.entrypoint;
    // docker's rule: a new ENTRYPOINT resets the base's CMD unless one is given too.
    if (!overrides.cmd) config.Cmd = null;
  }
  if (overrides.cmd) config.Cmd = overrides.cmd;
  if (overrides.env?.length) {
    const env = [...(config.Env ?? [])];
    for (const entry of overrides.env) {
      const key = entry.split('=')[0]!;
      if (!key || !entry.includes('=')) throw new Error(`env "${entry}" is not KEY=VALUE`);
      const at = env.findIndex((e) => e.split('=')[0] === key);
      if (at >= 0) env[at] = entry;
      else env.push(entry);
    }
    config.Env = env;
  }
  if (overrides.workdir !== undefined) config.WorkingDir = overrides.workdir;
  if (overrides.user !== undefined) config.User = overrides.user;
  if (overrides.ports?.length) {
    const ports = { ...(config.ExposedPorts ?? {}) };
    for (const p of overrides.ports) {
      const m = /^(\d{1,5})(?:\/(tcp|udp|sctp))?$/.exec(p.trim());
      if (!m || Number(m[1]) > 65535) throw new Error(`port "${p}" is not PORT[/tcp|udp|sctp]`);
      ports[`${m[1]}/${m[2] ?? 'tcp'}`] = {};
    }
    config.ExposedPorts = ports;
  }
  if (overrides.labels && Object.keys(overrides.labels).length) {
    config.Labels = { ...(config.Labels ?? {}), ...overrides.labels };
  }
  return {
    ...base,
    created,
    config,
    rootfs: { type: 'layers', diff_ids: [...(base.rootfs?.diff_ids ?? []), ...layers.map((l) => l.diffId)] },
    history: [
      ...(base.history ?? []),
      ...layers.map((l) => ({
        created,
        // Only what is in the image: a build machine's paths would change the digest.
        created_by: `kube-actions build: files at ${l.destination}`,
        comment: 'kube-actions',
      })),
    ],
  };
}

export async function buildLayersImage(options: LayersBuildOptions): Promise<LayersBuildResult> {
  const log = options.log ?? (() => {});
  if (!options.images.length) throw new Error('no image to push to: give at least one image name');
  if (!options.layers.length && options.base === 'scratch')
    throw new Error('nothing to build: scratch with no layers');
  const clientFor = options.clientFor ?? clientCache(options);
  const created = new Date(options.sourceDateEpoch * 1000).toISOString();
  const targets = options.images.map(parseImageName);

  // The layers compress (on the thread pool, every core) while the base is read and the target
  // registries are asked how they authenticate: these overlap, nothing is written before all end.
  const baseRef = options.base === 'scratch' ? undefined : parseReference(options.base);
  const [layers, bases] = await Promise.all([
    Promise.all(
      options.layers.map((spec) =>
        buildLayer(spec, {
          mtime: options.sourceDateEpoch,
          ...(options.layerCacheDir ? { cacheDir: options.layerCacheDir } : {}),
        }),
      ),
    ),
    baseRef
      ? readBase(baseRef, clientFor(baseRef.registry), options.platforms)
      : (options.platforms?.length ? options.platforms : [{ os: 'linux', architecture: 'amd64' }]).map(
          scratchPlatform,
        ),
    ...(options.push === false ? [] : targets.map((t) => clientFor(t.registry).prepare())),
  ]);
  for (const l of layers) log(`layer ${l.digest.slice(7, 19)} ${l.size} bytes  ${l.description}`);

  // An index exactly when there is more than one platform, as ko does.
  const baseIsIndex = bases.length > 1;

  for (const l of layers) {
    if (l.platform && !bases.some((b) => samePlatform(b.platform, l.platform!))) {
      throw new Error(
        `layer ${l.description} is for ${formatPlatform(l.platform)}, which is not being built`,
      );
    }
  }

  // The manifests and configs, per platform; a platform's own layers (a binary, say) only in its image.
  const built = bases.map((base) => {
    const docker = base.manifest.mediaType === MEDIA_TYPES.dockerManifest;
    const mine = layers.filter((l) => !l.platform || samePlatform(l.platform, base.platform));
    const config = json(applyConfig(base.config, options.config ?? {}, mine, created));
    const manifest: ImageManifest = {
      schemaVersion: 2,
      mediaType: docker ? MEDIA_TYPES.dockerManifest : MEDIA_TYPES.ociManifest,
      config: {
        mediaType: docker ? MEDIA_TYPES.dockerConfig : MEDIA_TYPES.ociConfig,
        digest: sha256Digest(config),
        size: config.length,
      },
      layers: [
        ...base.manifest.layers,
        ...mine.map((l) => ({
          mediaType: docker ? MEDIA_TYPES.dockerLayerGzip : MEDIA_TYPES.ociLayerGzip,
          digest: l.digest,
          size: l.size,
        })),
      ],
    };
    // Docker's schema 2 has no annotations; OCI manifests carry them, with the base's identity.
    if (!docker) {
      const annotations = {
        ...(baseRef && base.digest
          ? {
              'org.opencontainers.image.base.name': formatReference({
                registry: baseRef.registry,
                repository: baseRef.repository,
                ...(baseRef.tag ? { tag: baseRef.tag } : {}),
              }),
              'org.opencontainers.image.base.digest': base.digest,
            }
          : {}),
        ...options.annotations,
      };
      if (Object.keys(annotations).length) manifest.annotations = annotations;
    }
    return { base, config, manifest, body: json(manifest) };
  });

  const stats: PushStats = { blobs: {}, uploaded: 0, skipped: 0, mounted: 0, bytesUploaded: 0 };
  const count = (digest: string, result: BlobPushResult, size: number) => {
    stats.blobs[digest] = result;
    if (result === 'uploaded') {
      stats.uploaded++;
      stats.bytesUploaded += size;
    } else if (result === 'exists') stats.skipped++;
    else stats.mounted++;
  };

  let index: { body: Buffer; mediaType: string } | undefined;
  if (baseIsIndex) {
    const oci = !built.some((b) => b.manifest.mediaType === MEDIA_TYPES.dockerManifest);
    const value: ImageIndex = {
      schemaVersion: 2,
      mediaType: oci ? MEDIA_TYPES.ociIndex : MEDIA_TYPES.dockerList,
      manifests: built.map((b) => ({
        mediaType: b.manifest.mediaType,
        digest: sha256Digest(b.body),
        size: b.body.length,
        platform: b.base.platform,
      })),
      ...(oci && options.annotations && Object.keys(options.annotations).length
        ? { annotations: options.annotations }
        : {}),
    };
    index = { body: json(value), mediaType: value.mediaType };
  }
  const top = index ?? { body: built[0]!.body, mediaType: built[0]!.manifest.mediaType };
  const digest = sha256Digest(top.body);
  const result: LayersBuildResult = {
    digest,
    mediaType: top.mediaType,
    ...(built.length === 1 && !index ? { imageId: built[0]!.manifest.config.digest } : {}),
    manifests: built.map((b) => ({
      platform: b.base.platform,
      digest: sha256Digest(b.body),
      configDigest: b.manifest.config.digest,
    })),
    images: targets.map((t) => `${imageName(t)}@${digest}`),
    tags: targets.flatMap((t) => options.tags.map((tag) => formatReference({ ...t, tag }))),
    layers: layers.map((l) => ({ digest: l.digest, size: l.size, description: l.description })),
    stats,
  };
  if (options.push === false) return result;

  for (const target of targets) {
    const client = clientFor(target.registry);
    const sameRegistry = baseRef?.registry === target.registry;
    const baseClient = baseRef ? clientFor(baseRef.registry) : undefined;
    // Each distinct blob once per target repository.
    const blobs = new Map<string, { size: number; data: () => Promise<Uint8Array>; fromBase: boolean }>();
    for (const b of built) {
      for (const d of b.base.manifest.layers) {
        blobs.set(d.digest, {
          size: d.size,
          data: () => baseClient!.getBlob(baseRef!.repository, d.digest),
          fromBase: true,
        });
      }
      blobs.set(b.manifest.config.digest, {
        size: b.config.length,
        data: () => Promise.resolve(b.config),
        fromBase: false,
      });
    }
    for (const l of layers)
      blobs.set(l.digest, { size: l.size, data: () => Promise.resolve(l.data), fromBase: false });
    // A few blobs at a time: registries and links are happiest with bounded concurrency.
    const queue = [...blobs.entries()];
    await Promise.all(
      Array.from({ length: Math.min(4, queue.length) }, async () => {
        for (let next = queue.shift(); next; next = queue.shift()) {
          const [blobDigest, blob] = next;
          const mountFrom = blob.fromBase && sameRegistry ? baseRef.repository : undefined;
          const pushed = await client.pushBlob(
            target.repository,
            { digest: blobDigest, data: blob.data },
            mountFrom,
          );
          count(blobDigest, pushed, blob.size);
        }
      }),
    );
    // By digest first, then the index, then the tags: no tag ever names an incomplete image.
    for (const b of built)
      await client.putManifest(target.repository, sha256Digest(b.body), b.body, b.manifest.mediaType);
    if (index) await client.putManifest(target.repository, digest, index.body, index.mediaType);
    for (const tag of options.tags) {
      await client.putManifest(target.repository, tag, top.body, top.mediaType);
    }
    log(`pushed ${imageName(target)}@${digest}${options.tags.length ? ` (${options.tags.join(', ')})` : ''}`);
  }
  return result;
}
