// Destination clusters, as Argo CD declares them: the cluster the controller runs in
// ("in-cluster", https://kubernetes.default.svc) and one Secret per other cluster, labelled
// argocd.argoproj.io/secret-type=cluster, with `name`, `server` and `config` (a JSON of bearer
// token, basic auth or TLS client certificates, and the CA). An Application's destination names one
// by `server` or by `name`; each cluster gets its own client, discovery, dry-run cache and watches
// of managed objects, built on first use and rebuilt when its Secret changes.
// https://argo-cd.readthedocs.io/en/stable/operator-manual/declarative-setup/#clusters
import * as k8s from '../../core/kube/client-node.ts';
import { createHash } from 'node:crypto';
import { ResourceManager } from '../../core/kube/apply.ts';
import { KubeClient } from '../../core/kube/client.ts';
import { RESTMapper } from '../../core/kube/discovery.ts';
import type { KubeObject } from '../../core/kube/objects.ts';
import type { KubeResource } from '../../core/kube/resource.ts';
import { Comparer } from './compare.ts';
import { LiveObjects, managedInformers } from './live.ts';
import type { Destination } from './types.ts';

/** Argo CD's name and address of the cluster the controller runs in. */
export const IN_CLUSTER_NAME = 'in-cluster';
export const IN_CLUSTER_SERVER = 'https://kubernetes.default.svc';

/** What a reconcile needs of the cluster it deploys to. */
export interface ClusterAccess {
  name: string;
  server: string;
  client: KubeClient;
  mapper: RESTMapper;
  resources: ResourceManager;
  live: LiveObjects;
  comparer: Comparer;
}

/** A destination that names no cluster this controller knows, or a cluster Secret it cannot use. */
export class ClusterError extends Error {
  override name = 'ClusterError';
}

/** Argo CD's cluster Secret `config` (ClusterConfig), the parts a bearer token or TLS needs. */
export interface ClusterConfig {
  bearerToken?: string;
  username?: string;
  password?: string;
  tlsClientConfig?: {
    insecure?: boolean;
    serverName?: string;
    /** Base64 of PEM, as Argo CD's []byte fields are in JSON. */
    caData?: string;
    certData?: string;
    keyData?: string;
  };
}

export interface ClusterSecret {
  /** The Secret's name, for messages. */
  secret: string;
  name: string;
  server: string;
  config: ClusterConfig;
  /** Changes whenever anything that makes the connection changes. */
  digest: string;
}

type SecretObject = KubeObject & { data?: Record<string, string> };

/** Ways of authenticating Argo CD has that this controller does not, refused by name. */
const UNSUPPORTED_CONFIG = ['awsAuthConfig', 'execProviderConfig', 'proxyUrl'];

/** A cluster Secret's fields, checked; a message saying what is wrong otherwise. */
export function parseClusterSecret(secret: SecretObject): ClusterSecret | string {
  const id = `cluster Secret ${secret.metadata?.namespace ?? ''}/${secret.metadata?.name ?? ''}`;
  const field = (k: string) => Buffer.from(secret.data?.[k] ?? '', 'base64').toString('utf8');
  const server = field('server').replace(/\/+$/, '');
  if (!server) return `${id}: server is required`;
  let url: URL;
  try {
    url = new URL(server);
  } catch {
    return `${id}: server ${JSON.stringify(server)} is not a URL`;
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') return `${id}: server must be an https URL`;
  let config: ClusterConfig & Record<string, unknown> = {};
  const raw = field('config');
  if (raw) {
    try {
      config = JSON.parse(raw) as ClusterConfig & Record<string, unknown>;
    } catch (err) {
      return `${id}: config is not JSON: ${(err as Error).message}`;
    }
    if (!config || typeof config !== 'object' || Array.isArray(config))
      return `${id}: config is not a JSON object`;
  }
  const unsupported = UNSUPPORTED_CONFIG.filter((k) => config[k] !== undefined);
  if (unsupported.length) return `${id}: config.${unsupported.join(', config.')} is not supported`;
  const tls = config.tlsClientConfig ?? {};
  if (Boolean(tls.certData) !== Boolean(tls.keyData))
    return `${id}: tlsClientConfig needs both certData and keyData`;
  if (url.protocol === 'http:' && (config.bearerToken || config.password))
    return `${id}: credentials are never sent over plain http`;
  const name = field('name') || server;
  return {
    secret: id,
    name,
    server,
    config,
    digest: createHash('sha256')
      .update(JSON.stringify([name, server, config]))
      .digest('hex'),
  };
}

function sameServer(a: string, b: string): boolean {
  return a.replace(/\/+$/, '') === b.replace(/\/+$/, '');
}

/** Whether `destination` names `cluster`, by name or by server (the wake-up on a Secret's change uses it too). */
export function namesCluster(destination: Destination, cluster: ClusterSecret): boolean {
  return destination.name
    ? destination.name === cluster.name
    : sameServer(destination.server || IN_CLUSTER_SERVER, cluster.server);
}

/**
 * Which cluster a destination names (Argo CD's rules): `server` or `name`, not both; a Secret for
 * https://kubernetes.default.svc or named in-cluster takes the place of the built-in one.
 * Returns the Secret, IN_CLUSTER_NAME for the cluster the controller runs in, or throws.
 */
export function resolveDestination(
  destination: Destination,
  secrets: readonly (ClusterSecret | string)[],
): ClusterSecret | typeof IN_CLUSTER_NAME {
  const { server, name } = destination;
  if (server && name)
    throw new ClusterError(`destination can't have both name and server defined: ${name} ${server}`);
  const valid = secrets.filter((s): s is ClusterSecret => typeof s !== 'string');
  const broken = secrets.filter((s): s is string => typeof s === 'string');
  const why = broken.length ? ` (unusable cluster Secrets: ${broken.join('; ')})` : '';
  if (name) {
    const found = valid.filter((s) => namesCluster({ name }, s));
    if (found.length > 1) throw new ClusterError(`there are ${found.length} clusters with the name: ${name}`);
    if (found[0]) return found[0];
    if (name === IN_CLUSTER_NAME) return IN_CLUSTER_NAME;
    throw new ClusterError(`there are no clusters with this name: ${name}${why}`);
  }
  const wanted = server || IN_CLUSTER_SERVER;
  const found = valid.find((s) => namesCluster({ server: wanted }, s));
  if (found) return found;
  if (sameServer(wanted, IN_CLUSTER_SERVER)) return IN_CLUSTER_NAME;
  throw new ClusterError(`there are no clusters with this URL: ${wanted}${why}`);
}

/** A client-node KubeConfig for a cluster Secret's connection. */
export function clusterKubeConfig(cluster: ClusterSecret): k8s.KubeConfig {
  const tls = cluster.config.tlsClientConfig ?? {};
  const kc = new k8s.KubeConfig();
  kc.loadFromOptions({
    clusters: [
      {
        name: cluster.name,
        server: cluster.server,
        skipTLSVerify: tls.insecure === true,
        ...(tls.caData ? { caData: tls.caData } : {}),
        ...(tls.serverName ? { tlsServerName: tls.serverName } : {}),
      },
    ],
    users: [
      {
        name: cluster.name,
        ...(cluster.config.bearerToken ? { token: cluster.config.bearerToken } : {}),
        ...(cluster.config.username ? { username: cluster.config.username } : {}),
        ...(cluster.config.password ? { password: cluster.config.password } : {}),
        ...(tls.certData ? { certData: tls.certData } : {}),
        ...(tls.keyData ? { keyData: tls.keyData } : {}),
      },
    ],
    contexts: [{ name: cluster.name, cluster: cluster.name, user: cluster.name }],
    currentContext: cluster.name,
  });
  return kc;
}

export interface ClustersOptions {
  /** The cluster the controller runs in. */
  local: ClusterAccess;
  /** The cluster Secrets (from an informer in the controller's namespace). */
  secrets: () => Promise<SecretObject[]>;
  /** Writes to other clusters are allowed only while this client's are (the leader's lease). */
  writesFollow: KubeClient;
  /** A managed object changed on some cluster: its owning application should look. */
  onChange?: (obj: KubeResource) => void;
  onDryRuns?: (n: number) => void;
  /** A namespace-scoped install watches managed objects in this namespace only. */
  managedNamespace?: string;
}

interface Remote {
  digest: string;
  access: ClusterAccess;
  stop: () => Promise<void>;
}

/** The clusters applications deploy to, each connected on first use. */
export class Clusters {
  private readonly o: ClustersOptions;
  private readonly remotes = new Map<string, Remote>();
  /**
   * Parsed Secrets by the informer's object (replaced on every change), so a reconcile does not
   * decode and hash every cluster Secret again.
   */
  private readonly parsed = new WeakMap<SecretObject, ClusterSecret | string>();

  constructor(options: ClustersOptions) {
    this.o = options;
  }

  get local(): ClusterAccess {
    return this.o.local;
  }

  /** The cluster `destination` names; throws ClusterError when none or its Secret is unusable. */
  async access(destination: Destination): Promise<ClusterAccess> {
    const secrets = (await this.o.secrets()).map((secret) => {
      let parsed = this.parsed.get(secret);
      if (parsed === undefined) this.parsed.set(secret, (parsed = parseClusterSecret(secret)));
      return parsed;
    });
    const found = resolveDestination(destination, secrets);
    if (found === IN_CLUSTER_NAME) return this.o.local;
    const known = this.remotes.get(found.server);
    if (known?.digest === found.digest) return known.access;
    // New, or its Secret changed (a rotated token, a new CA): connect afresh. The map is updated
    // before anything is awaited, so concurrent reconciles share one connection and none leaks.
    const remote = this.connect(found);
    this.remotes.set(found.server, remote);
    if (known) await known.stop();
    return remote.access;
  }

  private connect(cluster: ClusterSecret): Remote {
    const client = new KubeClient(clusterKubeConfig(cluster), { userAgent: 'kube-actions-controller' });
    client.followWrites(this.o.writesFollow);
    const mapper = new RESTMapper(client);
    const resources = new ResourceManager(client, mapper);
    const informers = managedInformers(client, this.o.managedNamespace);
    const live = new LiveObjects({
      informer: informers.informer,
      ...(this.o.onChange ? { onChange: this.o.onChange } : {}),
    });
    return {
      digest: cluster.digest,
      access: {
        name: cluster.name,
        server: cluster.server,
        client,
        mapper,
        resources,
        live,
        comparer: new Comparer(resources, this.o.onDryRuns),
      },
      stop: async () => {
        await informers.stop();
        await client.close();
      },
    };
  }

  /** Stops every other cluster's watches and connections. */
  async stop(): Promise<void> {
    const remotes = [...this.remotes.values()];
    this.remotes.clear();
    await Promise.all(remotes.map((r) => r.stop()));
  }
}
