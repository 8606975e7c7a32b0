// Canary traffic with ingress-nginx (Argo Rollouts' nginx router): the user owns the stable
// Ingress; the controller owns `<rollout>-<ingress>-canary`, a copy holding only the rules that send
// traffic to the stable Service, pointed at the canary Service, with nginx's canary annotations.
import { isNotFound, PatchType, type KubeClient } from '../../core/kube/client.ts';
import { INGRESSES, MANAGED_BY, type CanaryStrategy, type Rollout } from './types.ts';

interface Backend {
  service?: { name?: string; port?: unknown };
}
interface Path {
  backend?: Backend;
  [k: string]: unknown;
}
interface Rule {
  host?: string;
  http?: { paths?: Path[] };
}
export interface Ingress {
  apiVersion?: string;
  kind?: string;
  metadata: {
    name: string;
    namespace?: string;
    annotations?: Record<string, string>;
    labels?: Record<string, string>;
    ownerReferences?: { uid: string; controller?: boolean; kind: string; name: string; apiVersion: string }[];
  };
  spec?: { ingressClassName?: string; rules?: Rule[]; tls?: unknown[] };
}

export function canaryIngressName(rollout: string, ingress: string): string {
  return `${rollout}-${ingress}-canary`.slice(0, 253);
}

/** The canary Ingress for a stable one, or an error when the stable Ingress has no rule for the stable Service. */
export function buildCanaryIngress(
  ro: Rollout,
  canary: CanaryStrategy,
  stable: Ingress,
  weight: number,
): Ingress {
  const prefix = canary.trafficRouting?.nginx?.annotationPrefix ?? 'nginx.ingress.kubernetes.io';
  const rules: Rule[] = [];
  for (const rule of stable.spec?.rules ?? []) {
    const paths = (rule.http?.paths ?? []).filter((p) => p.backend?.service?.name === canary.stableService);
    if (paths.length === 0) continue;
    rules.push({
      ...(rule.host ? { host: rule.host } : {}),
      http: {
        paths: paths.map((p) => ({
          ...p,
          backend: { service: { ...p.backend!.service, name: canary.canaryService } },
        })),
      },
    });
  }
  if (rules.length === 0) {
    throw new Error(
      `ingress ${stable.metadata.name} has no rule for the stable service ${canary.stableService}`,
    );
  }
  const annotations: Record<string, string> = {};
  // Keep the ingress class, whichever way the stable Ingress names it.
  const legacyClass = stable.metadata.annotations?.['kubernetes.io/ingress.class'];
  if (legacyClass) annotations['kubernetes.io/ingress.class'] = legacyClass;
  for (const [k, v] of Object.entries(canary.trafficRouting?.nginx?.additionalIngressAnnotations ?? {})) {
    annotations[`${prefix}/${k}`] = v;
  }
  annotations[`${prefix}/canary`] = 'true';
  annotations[`${prefix}/canary-weight`] = String(Math.round(weight));
  annotations[MANAGED_BY] = ro.metadata.name;
  return {
    apiVersion: 'networking.k8s.io/v1',
    kind: 'Ingress',
    metadata: {
      name: canaryIngressName(ro.metadata.name, stable.metadata.name),
      namespace: ro.metadata.namespace,
      annotations,
      ownerReferences: [
        {
          apiVersion: ro.apiVersion || 'kube-actions.dev/v1alpha1',
          kind: 'Rollout',
          name: ro.metadata.name,
          uid: ro.metadata.uid,
          controller: true,
        },
      ],
    },
    spec: {
      ...(stable.spec?.ingressClassName ? { ingressClassName: stable.spec.ingressClassName } : {}),
      ...(stable.spec?.tls ? { tls: stable.spec.tls } : {}),
      rules,
    },
  };
}

/** A canary Ingress to write: created when it does not exist yet, else patched. */
export interface IngressWrite {
  desired: Ingress;
  create: boolean;
}

/** The stable Ingresses a canary routes through (stableIngress and stableIngresses). */
export function stableIngressNames(canary: CanaryStrategy): string[] {
  const nginx = canary.trafficRouting?.nginx;
  if (!nginx) return [];
  return [
    ...new Set(
      [nginx.stableIngress, ...(nginx.stableIngresses ?? [])].filter((n): n is string => Boolean(n)),
    ),
  ];
}

/**
 * The writes that give every canary Ingress of the rollout `weight` percent of traffic, from the
 * observed Ingresses (stable and canary ones, by name). Pure; throws for an Ingress we must not
 * touch (controlled by something else) or a stable Ingress missing.
 */
export function planCanaryIngresses(
  ro: Rollout,
  canary: CanaryStrategy,
  observed: Record<string, Ingress | undefined>,
  weight: number,
): IngressWrite[] {
  const writes: IngressWrite[] = [];
  for (const name of stableIngressNames(canary)) {
    const stable = observed[name];
    if (!stable) throw new Error(`ingress ${ro.metadata.namespace}/${name} does not exist`);
    const desired = buildCanaryIngress(ro, canary, stable, weight);
    const current = observed[desired.metadata.name];
    if (!current) {
      writes.push({ desired, create: true });
      continue;
    }
    // Never take over an Ingress someone else owns.
    const owner = current.metadata.ownerReferences?.find((o) => o.controller);
    if (owner && owner.uid !== ro.metadata.uid) {
      throw new Error(
        `ingress ${desired.metadata.name} is controlled by ${owner.kind} ${owner.name}, not this rollout`,
      );
    }
    const same =
      JSON.stringify(current.spec) === JSON.stringify({ ...current.spec, ...desired.spec }) &&
      Object.entries(desired.metadata.annotations ?? {}).every(
        ([k, v]) => current.metadata.annotations?.[k] === v,
      );
    if (!same) writes.push({ desired, create: false });
  }
  return writes;
}

/** Applies one planned canary Ingress write; returns the object the server stored. */
export async function applyCanaryIngress(client: KubeClient, write: IngressWrite): Promise<Ingress> {
  const { desired } = write;
  const namespace = desired.metadata.namespace!;
  if (write.create) return client.create(INGRESSES, desired);
  try {
    return await client.patch<Ingress>(
      INGRESSES,
      namespace,
      desired.metadata.name,
      { metadata: { annotations: desired.metadata.annotations }, spec: desired.spec },
      PatchType.merge,
    );
  } catch (err) {
    if (!isNotFound(err)) throw err;
    // Deleted since it was gathered: make it again.
    return client.create(INGRESSES, desired);
  }
}
