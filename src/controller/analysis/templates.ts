// Creating AnalysisRuns from (Cluster)AnalysisTemplates, as the Rollout controller does for its
// analysis steps and background, pre- and post-promotion analysis. Follows Argo Rollouts'
// NewAnalysisRunFromTemplates: metrics of all templates are concatenated (a duplicate name is an
// error), template args are merged (the same arg with two different values is an error), the
// caller's args fill them in, and every arg must end up with a value or a secretKeyRef.
import { isConflict, isNotFound, PatchType, type KubeClient } from '../../core/kube/client.ts';
import type { OwnerReference } from '../../core/kube/objects.ts';
import {
  ANALYSIS_RUN,
  ANALYSIS_TEMPLATE,
  API_VERSION,
  CLUSTER_ANALYSIS_TEMPLATE,
  phaseCompleted,
  type AnalysisRun,
  type AnalysisTemplate,
  type AnalysisTemplateRef,
  type AnalysisTemplateSpec,
  type Argument,
  type DryRun,
  type MeasurementRetention,
  type Metric,
} from './types.ts';

export class TemplateError extends Error {
  override name = 'TemplateError';
}

const MAX_TEMPLATE_DEPTH = 10;

const templateId = (ref: AnalysisTemplateRef) =>
  `${ref.clusterScope ? 'ClusterAnalysisTemplate' : 'AnalysisTemplate'}/${ref.templateName}`;

/** Refuses a reference that closes a cycle or nests too deep, as the run's creation would. */
function checkNesting(ref: AnalysisTemplateRef, path: string[]): string {
  const id = templateId(ref);
  if (path.includes(id)) throw new TemplateError(`template cycle: ${[...path, id].join(' -> ')}`);
  if (path.length >= MAX_TEMPLATE_DEPTH)
    throw new TemplateError(`templates nested deeper than ${MAX_TEMPLATE_DEPTH}`);
  return id;
}

function notFound(ref: AnalysisTemplateRef, namespace: string): TemplateError {
  return new TemplateError(
    ref.clusterScope
      ? `ClusterAnalysisTemplate "${ref.templateName}" not found`
      : `AnalysisTemplate "${ref.templateName}" not found in namespace "${namespace}"`,
  );
}

/** Reads the templates (and the templates they include) in order. */
export async function fetchTemplates(
  client: KubeClient,
  namespace: string,
  refs: AnalysisTemplateRef[],
): Promise<AnalysisTemplate[]> {
  const out: AnalysisTemplate[] = [];
  const visit = async (ref: AnalysisTemplateRef, path: string[]): Promise<void> => {
    const id = checkNesting(ref, path);
    let template: AnalysisTemplate;
    try {
      template = ref.clusterScope
        ? await client.get<AnalysisTemplate>(CLUSTER_ANALYSIS_TEMPLATE, '', ref.templateName)
        : await client.get<AnalysisTemplate>(ANALYSIS_TEMPLATE, namespace, ref.templateName);
    } catch (err) {
      if (isNotFound(err)) throw notFound(ref, namespace);
      throw err;
    }
    out.push(template);
    for (const inner of template.spec?.templates ?? []) await visit(inner, [...path, id]);
  };
  for (const ref of refs) await visit(ref, []);
  return out;
}

/**
 * fetchTemplates from a cache (`lookup`): the same templates in the same order, and the same
 * TemplateErrors, so a caller can tell before creating a run that its creation would fail.
 */
export function templateTree(
  namespace: string,
  refs: AnalysisTemplateRef[],
  lookup: (ref: AnalysisTemplateRef) => AnalysisTemplate | undefined,
): AnalysisTemplate[] {
  const out: AnalysisTemplate[] = [];
  const visit = (ref: AnalysisTemplateRef, path: string[]): void => {
    const id = checkNesting(ref, path);
    const template = lookup(ref);
    if (!template) throw notFound(ref, namespace);
    out.push(template);
    for (const inner of template.spec?.templates ?? []) visit(inner, [...path, id]);
  };
  for (const ref of refs) visit(ref, []);
  return out;
}

function flattenArgs(specs: AnalysisTemplateSpec[]): Argument[] {
  const combined: Argument[] = [];
  for (const spec of specs) {
    for (const arg of spec.args ?? []) {
      const i = combined.findIndex((a) => a.name === arg.name);
      if (i < 0) {
        combined.push(structuredClone(arg));
        continue;
      }
      const prev = combined[i]!;
      if (prev.value !== undefined && arg.value !== undefined && prev.value !== arg.value) {
        throw new TemplateError(
          `Argument \`${arg.name}\` specified multiple times with different values: '${prev.value}', '${arg.value}'`,
        );
      }
      if (prev.value === undefined) combined[i] = structuredClone(arg);
    }
  }
  return combined;
}

function uniqueRules<T extends { metricName: string }>(rules: T[], what: string): T[] {
  const seen = new Set<string>();
  for (const r of rules) {
    if (seen.has(r.metricName))
      throw new TemplateError(`two ${what} metric rules have the same name '${r.metricName}'`);
    seen.add(r.metricName);
  }
  return rules;
}

/** A Kubernetes fieldPath (`metadata.labels['app']`, `spec.replicas`, `metadata.name`) of an object, as a string. */
export function resolveFieldPath(obj: unknown, fieldPath: string): string {
  const parts: string[] = [];
  const re = /\.?([^.[\]]+)|\[['"]?([^'"\]]+)['"]?\]/gy;
  let m: RegExpExecArray | null;
  let end = 0;
  while ((m = re.exec(fieldPath))) {
    parts.push(m[1] ?? m[2]!);
    end = re.lastIndex;
  }
  if (end !== fieldPath.length || parts.length === 0)
    throw new TemplateError(`invalid fieldPath ${JSON.stringify(fieldPath)}`);
  let cur: unknown = obj;
  for (const p of parts) {
    if (Array.isArray(cur) && /^\d+$/.test(p)) cur = cur[Number(p)];
    else if (cur && typeof cur === 'object' && !Array.isArray(cur) && Object.hasOwn(cur, p))
      cur = (cur as Record<string, unknown>)[p];
    else cur = undefined;
    if (cur === undefined) break;
  }
  // Kubernetes' downward API gives "" for a missing label or annotation; other paths must exist.
  if (cur === undefined || cur === null) {
    if (/^metadata\.(labels|annotations)\b/.test(fieldPath)) return '';
    throw new TemplateError(`fieldPath ${JSON.stringify(fieldPath)} not found`);
  }
  if (typeof cur === 'string' || typeof cur === 'number' || typeof cur === 'boolean') return String(cur);
  throw new TemplateError(`fieldPath ${JSON.stringify(fieldPath)} must end in a primitive value`);
}

export interface AnalysisRunSpecOptions {
  /** The caller's args, filling in the templates' (args the templates do not declare are ignored). */
  args?: Argument[];
  dryRun?: DryRun[];
  measurementRetention?: MeasurementRetention[];
  /** The object `valueFrom.fieldRef` args are read from (the Rollout). */
  fieldRefSource?: unknown;
}

/** The spec of a run from its templates (pure: Argo's FlattenTemplates + MergeArgs). */
export function analysisRunSpec(
  templates: Array<Pick<AnalysisTemplate, 'spec'>>,
  options: AnalysisRunSpecOptions = {},
): AnalysisRun['spec'] {
  const specs = templates.map((t) => t.spec ?? {});
  const metrics: Metric[] = specs.flatMap((s) => structuredClone(s.metrics ?? []));
  const names = new Set<string>();
  for (const m of metrics) {
    if (names.has(m.name)) throw new TemplateError(`two metrics have the same name '${m.name}'`);
    names.add(m.name);
  }
  if (metrics.length === 0) throw new TemplateError('the templates have no metrics');
  const args = flattenArgs(specs);
  for (const incoming of options.args ?? []) {
    const target = args.find((a) => a.name === incoming.name);
    if (!target) continue;
    if (incoming.value !== undefined) {
      target.value = incoming.value;
      delete target.valueFrom;
    } else if (incoming.valueFrom) {
      target.valueFrom = structuredClone(incoming.valueFrom);
      delete target.value;
    }
  }
  for (const arg of args) {
    const fieldPath = arg.valueFrom?.fieldRef?.fieldPath;
    if (fieldPath !== undefined && arg.value === undefined) {
      if (options.fieldRefSource === undefined) {
        throw new TemplateError(`args.${arg.name}: valueFrom.fieldRef needs the object to read it from`);
      }
      arg.value = resolveFieldPath(options.fieldRefSource, fieldPath);
      delete arg.valueFrom;
    }
    if (arg.value === undefined && !arg.valueFrom?.secretKeyRef)
      throw new TemplateError(`args.${arg.name} was not resolved`);
  }
  const dryRun = uniqueRules([...(options.dryRun ?? []), ...specs.flatMap((s) => s.dryRun ?? [])], 'Dry-Run');
  const retention = uniqueRules(
    [...(options.measurementRetention ?? []), ...specs.flatMap((s) => s.measurementRetention ?? [])],
    'Measurement Retention',
  );
  return {
    metrics,
    ...(args.length ? { args } : {}),
    ...(dryRun.length ? { dryRun } : {}),
    ...(retention.length ? { measurementRetention: retention } : {}),
  };
}

export interface CreateAnalysisRunOptions extends AnalysisRunSpecOptions {
  namespace: string;
  /** The run's name; with a collision (an unrelated run of that name) ".1", ".2"... are appended. */
  name: string;
  /** The owner (the Rollout), as the run's controller reference. */
  owner?: OwnerReference;
  templates: AnalysisTemplateRef[];
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  /**
   * Use exactly `name` (the caller chose a free one and recorded it): an existing run of that
   * name is returned only if it is the same run, else the create fails, never renames.
   */
  exactName?: boolean;
}

/**
 * Builds a run from templates and creates it. If a run of that name already exists, has the same
 * owner and spec, and has not completed, it is returned instead (a retried create, or a stale
 * cache); otherwise the name gets a collision counter, as in Argo Rollouts. Throws TemplateError
 * for missing templates, duplicate metrics and unresolved args.
 */
export async function createAnalysisRun(
  client: KubeClient,
  options: CreateAnalysisRunOptions,
): Promise<AnalysisRun> {
  const templates = await fetchTemplates(client, options.namespace, options.templates);
  const spec = analysisRunSpec(templates, options);
  const run: AnalysisRun = {
    apiVersion: API_VERSION,
    kind: 'AnalysisRun',
    metadata: {
      name: options.name,
      namespace: options.namespace,
      ...(options.labels ? { labels: options.labels } : {}),
      ...(options.annotations ? { annotations: options.annotations } : {}),
      ...(options.owner
        ? { ownerReferences: [{ controller: true, blockOwnerDeletion: true, ...options.owner }] }
        : {}),
    },
    spec,
  };
  for (let collision = 0; ; collision++) {
    run.metadata.name = collision === 0 ? options.name : `${options.name}.${collision}`;
    try {
      return await client.create(ANALYSIS_RUN, run);
    } catch (err) {
      if (!isConflict(err)) throw err;
    }
    const existing = await client.get<AnalysisRun>(ANALYSIS_RUN, options.namespace, run.metadata.name);
    const sameOwner =
      (existing.metadata.ownerReferences?.find((r) => r.controller)?.uid ?? undefined) === options.owner?.uid;
    if (sameOwner && !phaseCompleted(existing.status?.phase) && sameSpec(existing.spec, spec))
      return existing;
    if (options.exactName) {
      throw new TemplateError(`analysis run ${options.name} already exists and is not the one to start`);
    }
    if (collision > 100) throw new Error(`could not find a free name for analysis run ${options.name}`);
  }
}

function sameSpec(a: AnalysisRun['spec'], b: AnalysisRun['spec']): boolean {
  const pick = (s: AnalysisRun['spec']) =>
    JSON.stringify([s.metrics, s.dryRun ?? [], s.measurementRetention ?? [], s.args ?? []]);
  return pick(a) === pick(b);
}

/** Asks a run to stop (spec.terminate): it ends Successful unless a metric already failed. */
export async function terminateAnalysisRun(
  client: KubeClient,
  namespace: string,
  name: string,
): Promise<void> {
  try {
    await client.patch(ANALYSIS_RUN, namespace, name, { spec: { terminate: true } }, PatchType.merge);
  } catch (err) {
    if (!isNotFound(err)) throw err;
  }
}

/** Reads a run; undefined if there is none. */
export async function getAnalysisRun(
  client: KubeClient,
  namespace: string,
  name: string,
): Promise<AnalysisRun | undefined> {
  try {
    return await client.get<AnalysisRun>(ANALYSIS_RUN, namespace, name);
  } catch (err) {
    if (isNotFound(err)) return undefined;
    throw err;
  }
}
