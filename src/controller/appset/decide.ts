// What an ApplicationSet's reconcile should do, decided from gathered state alone (pure):
// - renderApplications: each generator's parameter sets through the template (the generator's
//   own `template` merged over the set's), checked: a valid name, the set's namespace, no
//   duplicates (the first is kept, as Argo CD);
// - planApplications: which Applications to create, update and delete under the
//   `applicationsSync` policy, never touching one another controller owns;
// - applicationSetStatus: Argo CD's three conditions and the generated Applications' states.
// Safe where Argo CD is not: an error anywhere (a generator, a template, a name) deletes nothing
// that round, so a broken commit in the generator's repository never prunes the fleet.
// https://argo-cd.readthedocs.io/en/stable/operator-manual/applicationset/Controlling-Resource-Modification/
import type { OwnerReference } from '../../core/kube/objects.ts';
import { GROUP, type Application } from '../sync/types.ts';
import { generatorKind } from './generators.ts';
import {
  renderFast,
  renderGo,
  renderStrings,
  TemplateError,
  type GoTemplateOptions,
  type Params,
} from './template.ts';
import type {
  ApplicationSet,
  ApplicationSetCondition,
  ApplicationSetResourceStatus,
  ApplicationSetTemplate,
  ApplicationsSyncPolicy,
  Generator,
} from './types.ts';
import { compareStrings } from '../../core/order.ts';

/** Argo CD's default on generated Applications: deleting one deletes what it deployed. */
export const DEFAULT_APPLICATION_FINALIZER = 'resources-finalizer.argocd.argoproj.io';
/** Ours, kept on a set whose policy forbids deleting: its deletion orphans the Applications instead. */
export const ORPHAN_FINALIZER = `${GROUP}/applicationset-orphan-applications`;
/** Annotations and finalizers of live Applications a regeneration keeps (Argo CD preserves these). */
const PRESERVED_ANNOTATIONS = ['notified.notifications.argoproj.io', 'argocd.argoproj.io/refresh'];
const PRESERVED_FINALIZER_PREFIXES = [
  'pre-delete-finalizer.argocd.argoproj.io',
  'post-delete-finalizer.argocd.argoproj.io',
];
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

export function syncPolicy(appset: ApplicationSet): ApplicationsSyncPolicy {
  return appset.spec.syncPolicy?.applicationsSync ?? 'sync';
}
export const allowsUpdate = (p: ApplicationsSyncPolicy): boolean => p === 'sync' || p === 'create-update';
export const allowsDelete = (p: ApplicationsSyncPolicy): boolean => p === 'sync' || p === 'create-delete';

/**
 * Fields of Argo CD's ApplicationSet that change what is generated or when it syncs, which this
 * controller does not implement: a set using one is refused whole rather than half-applied.
 */
export function unsupportedFields(appset: ApplicationSet): string[] {
  const out: string[] = [];
  for (const field of ['strategy', 'templatePatch', 'ignoreApplicationDifferences'])
    if (appset.spec[field] !== undefined && appset.spec[field] !== null) out.push(`spec.${field}`);
  (appset.spec.generators ?? []).forEach((g, i) => {
    if (g.selector !== undefined) out.push(`spec.generators[${i}].selector`);
  });
  return out;
}

export function goTemplateOptions(appset: ApplicationSet): GoTemplateOptions {
  return (appset.spec.goTemplateOptions ?? []).includes('missingkey=error') ? { missingKey: 'error' } : {};
}

/** The generator's own template merged over the set's (the generator's fields win), as Argo CD. */
export function effectiveTemplate(appset: ApplicationSet, generator: Generator): ApplicationSetTemplate {
  const own = generator[generatorKind(generator)]?.template;
  return deepMerge(appset.spec.template ?? {}, own ?? {}) as ApplicationSetTemplate;
}

function deepMerge(base: unknown, over: unknown): unknown {
  if (over === undefined || over === null || over === '') return base;
  if (isObject(base) && isObject(over)) {
    const out: Record<string, unknown> = { ...base };
    for (const [k, v] of Object.entries(over)) out[k] = deepMerge(base[k], v);
    return out;
  }
  return over;
}
const isObject = (v: unknown): v is Record<string, unknown> =>
  !!v && typeof v === 'object' && !Array.isArray(v);

export interface Rendered {
  applications: Application[];
  /** Why some parameter sets produced no Application (each named). */
  errors: string[];
}

export function renderApplications(
  appset: ApplicationSet,
  generated: readonly { generator: Generator; params: Params[] }[],
): Rendered {
  const goTemplate = appset.spec.goTemplate === true;
  const options = goTemplateOptions(appset);
  const applications: Application[] = [];
  const errors: string[] = [];
  const seen = new Set<string>();
  for (const { generator, params } of generated) {
    const template = effectiveTemplate(appset, generator);
    for (const p of params) {
      let rendered: ApplicationSetTemplate;
      try {
        rendered = renderStrings(template, (s) =>
          goTemplate ? renderGo(s, p, options) : renderFast(s, p as Record<string, string>),
        ) as ApplicationSetTemplate;
      } catch (err) {
        if (!(err instanceof TemplateError)) throw err;
        errors.push(`the template: ${err.message}`);
        continue;
      }
      const name = rendered.metadata?.name ?? '';
      if (!DNS_SUBDOMAIN.test(name) || name.length > 253) {
        errors.push(`application name ${JSON.stringify(name)} is not a valid resource name`);
        continue;
      }
      const namespace = rendered.metadata?.namespace || appset.metadata.namespace;
      if (namespace !== appset.metadata.namespace) {
        // Generating into another namespace would let whoever edits the set reach past its own.
        errors.push(
          `application ${name}: namespace ${namespace} is not the ApplicationSet's (${appset.metadata.namespace})`,
        );
        continue;
      }
      if (seen.has(name)) {
        errors.push(
          `ApplicationSet ${appset.metadata.name} contains applications with duplicate name: ${name}`,
        );
        continue;
      }
      seen.add(name);
      const finalizers = rendered.metadata?.finalizers?.length
        ? rendered.metadata.finalizers
        : appset.spec.syncPolicy?.preserveResourcesOnDeletion
          ? []
          : [DEFAULT_APPLICATION_FINALIZER];
      applications.push({
        apiVersion: `${GROUP}/v1alpha1`,
        kind: 'Application',
        metadata: {
          name,
          namespace,
          ...(rendered.metadata?.labels ? { labels: rendered.metadata.labels } : {}),
          ...(rendered.metadata?.annotations ? { annotations: rendered.metadata.annotations } : {}),
          ...(finalizers.length ? { finalizers } : {}),
          ownerReferences: [ownerReference(appset)],
        },
        spec: (rendered.spec ?? {}) as Application['spec'],
      });
    }
  }
  return { applications, errors };
}

export function ownerReference(appset: ApplicationSet): OwnerReference {
  return {
    apiVersion: `${GROUP}/v1alpha1`,
    kind: 'ApplicationSet',
    name: appset.metadata.name,
    uid: appset.metadata.uid ?? '',
    controller: true,
    blockOwnerDeletion: true,
  };
}

/** The controller ownerReference of `app`, if any. */
export function controllerOf(app: Application): OwnerReference | undefined {
  return app.metadata.ownerReferences?.find((r) => r.controller === true);
}

export function isOwnedBy(app: Application, appset: ApplicationSet): boolean {
  return controllerOf(app)?.uid === appset.metadata.uid;
}

export interface Plan {
  create: Application[];
  /** Live Applications with the generated fields written over them. */
  update: Application[];
  delete: Application[];
  errors: string[];
}

/**
 * `live`: the Applications of the set's namespace. One another controller owns is never
 * touched; one nobody owns is adopted (as Argo CD's SetControllerReference does) when the policy
 * allows updates.
 */
export function planApplications(
  appset: ApplicationSet,
  desired: readonly Application[],
  live: readonly Application[],
  renderErrors: readonly string[] = [],
): Plan {
  const policy = syncPolicy(appset);
  const byName = new Map(live.map((a) => [a.metadata.name, a]));
  const plan: Plan = { create: [], update: [], delete: [], errors: [...renderErrors] };
  for (const want of desired) {
    const have = byName.get(want.metadata.name);
    if (!have) {
      plan.create.push(want);
      continue;
    }
    const owner = controllerOf(have);
    if (owner && owner.uid !== appset.metadata.uid) {
      plan.errors.push(
        `application ${want.metadata.name} already exists and is controlled by ${owner.kind} ${owner.name}`,
      );
      continue;
    }
    if (have.metadata.deletionTimestamp) continue; // it goes; recreated once gone
    if (!allowsUpdate(policy)) continue;
    const merged = mergeInto(have, want);
    if (!sameGenerated(have, merged)) plan.update.push(merged);
  }
  // Nothing is deleted in a round that had an error: the missing Application may be the error.
  if (allowsDelete(policy) && plan.errors.length === 0) {
    const wanted = new Set(desired.map((a) => a.metadata.name));
    for (const have of live)
      if (isOwnedBy(have, appset) && !wanted.has(have.metadata.name) && !have.metadata.deletionTimestamp)
        plan.delete.push(have);
  }
  return plan;
}

/** The generated fields over the live Application, keeping what Argo CD keeps (and the status). */
export function mergeInto(have: Application, want: Application): Application {
  const preservedAnnotations = Object.fromEntries(
    Object.entries(have.metadata.annotations ?? {}).filter(([k]) => PRESERVED_ANNOTATIONS.includes(k)),
  );
  const annotations = { ...(want.metadata.annotations ?? {}), ...preservedAnnotations };
  const preservedFinalizers = (have.metadata.finalizers ?? []).filter((f) =>
    PRESERVED_FINALIZER_PREFIXES.some((p) => f.startsWith(p)),
  );
  const finalizers = [...new Set([...(want.metadata.finalizers ?? []), ...preservedFinalizers])];
  const others = (have.metadata.ownerReferences ?? []).filter((r) => r.controller !== true);
  const metadata = { ...have.metadata };
  delete metadata.labels;
  delete metadata.annotations;
  delete metadata.finalizers;
  return {
    ...have,
    metadata: {
      ...metadata,
      ...(want.metadata.labels ? { labels: want.metadata.labels } : {}),
      ...(Object.keys(annotations).length ? { annotations } : {}),
      ...(finalizers.length ? { finalizers } : {}),
      ownerReferences: [...others, ...(want.metadata.ownerReferences ?? [])],
    },
    spec: want.spec,
  };
}

function sameGenerated(a: Application, b: Application): boolean {
  const pick = (x: Application) =>
    canonical({
      spec: x.spec,
      labels: x.metadata.labels ?? {},
      annotations: x.metadata.annotations ?? {},
      finalizers: x.metadata.finalizers ?? [],
      ownerReferences: x.metadata.ownerReferences ?? [],
    });
  return pick(a) === pick(b);
}

/** JSON with object keys sorted: the apiserver does not keep the order we sent. */
export function canonical(v: unknown): string {
  return JSON.stringify(v, (_k, x: unknown) =>
    isObject(x) ? Object.fromEntries(Object.entries(x).sort(([a], [b]) => compareStrings(a, b))) : x,
  );
}

export interface StatusInput {
  /** A generator failed: no parameters. */
  generatorError?: string;
  /** Rendering, validation or plan errors (some Applications not generated or not written). */
  errors: readonly string[];
  /** Errors writing Applications. */
  writeErrors: readonly string[];
  desired: readonly Application[];
  live: readonly Application[];
}

const condition = (
  type: ApplicationSetCondition['type'],
  status: 'True' | 'False',
  reason: string,
  message: string,
): ApplicationSetCondition => ({ type, status, reason, message });

export function applicationSetStatus(
  previous: ApplicationSet['status'],
  input: StatusInput,
  now: Date,
): NonNullable<ApplicationSet['status']> {
  const problems = [input.generatorError, ...input.errors, ...input.writeErrors].filter(
    (m): m is string => !!m,
  );
  const message =
    problems.length > 3
      ? `${problems.slice(0, 3).join('; ')}; and ${problems.length - 3} more`
      : problems.join('; ');
  const reason = input.generatorError
    ? 'ApplicationGenerationFromParamsError'
    : input.errors.length
      ? 'ApplicationValidationError'
      : 'UpdateApplicationError';
  const conditions = problems.length
    ? [
        condition('ErrorOccurred', 'True', reason, message),
        input.generatorError
          ? condition('ParametersGenerated', 'False', 'ErrorOccurred', input.generatorError)
          : condition(
              'ParametersGenerated',
              'True',
              'ParametersGenerated',
              'Successfully generated parameter sets for all Applications',
            ),
        condition('ResourcesUpToDate', 'False', reason, message),
      ]
    : [
        condition(
          'ErrorOccurred',
          'False',
          'ApplicationSetUpToDate',
          'All applications have been generated successfully',
        ),
        condition(
          'ParametersGenerated',
          'True',
          'ParametersGenerated',
          'Successfully generated parameter sets for all Applications',
        ),
        condition(
          'ResourcesUpToDate',
          'True',
          'ApplicationSetUpToDate',
          'All applications have been generated successfully',
        ),
      ];
  // A condition keeps its transition time while its status stays.
  const before = new Map((previous?.conditions ?? []).map((c) => [c.type, c]));
  for (const c of conditions) {
    const old = before.get(c.type);
    c.lastTransitionTime =
      old && old.status === c.status && old.lastTransitionTime ? old.lastTransitionTime : now.toISOString();
  }
  const byName = new Map(input.live.map((a) => [a.metadata.name, a]));
  const resources: ApplicationSetResourceStatus[] = input.desired
    .map((want) => {
      const app = byName.get(want.metadata.name);
      const sync = (app?.status as { sync?: { status?: string } } | undefined)?.sync?.status;
      const health = (app?.status as { health?: { status?: string } } | undefined)?.health?.status;
      return {
        group: GROUP,
        version: 'v1alpha1',
        kind: 'Application',
        name: want.metadata.name,
        namespace: want.metadata.namespace ?? '',
        ...(sync ? { status: sync } : {}),
        ...(health ? { health: { status: health } } : {}),
      };
    })
    .sort((a, b) => compareStrings(a.name, b.name));
  return { conditions, resources };
}
