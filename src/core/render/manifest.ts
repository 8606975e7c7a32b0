// Kubernetes manifests as the renderer sees them: parsed from multi-document YAML with the place
// each came from, validated (apiVersion, kind, metadata.name, no duplicates) with errors that name
// the file and line.
import { LineCounter, parseAllDocuments } from 'yaml';
import type { KubeResource } from '../kube/resource.ts';

/**
 * A rendered object: the type the sync plans and applies (core/kube/resource.ts), so what render
 * produces goes to the sync as it is. `metadata.name` is absent only for a hook that sets
 * `generateName` (see validateObject).
 */
export type KubeObject = KubeResource;

/** The name, or `generateName` for hooks named at creation. */
export function objectName(o: KubeObject): string {
  return o.metadata.name ?? o.metadata.generateName ?? '';
}

const HOOK_ANNOTATIONS = ['argocd.argoproj.io/hook', 'helm.sh/hook'];

export interface Manifest {
  object: KubeObject;
  /** Where it came from, for messages: a file path or the renderer ("helm template"). */
  source: string;
  /** 1-based line of the document's start within `source`. */
  line: number;
}

export interface ManifestProblem {
  source: string;
  line: number;
  message: string;
}

export class ManifestError extends Error {
  override name = 'ManifestError';
  readonly problems: ManifestProblem[];
  constructor(problems: ManifestProblem[]) {
    super(problems.map((p) => `${p.source}:${p.line}: ${p.message}`).join('\n'));
    this.problems = problems;
  }
}

/** group/kind/namespace/name: the identity of an object in a cluster. */
export function objectKey(o: KubeObject): string {
  const group = o.apiVersion.includes('/') ? o.apiVersion.split('/')[0] : '';
  return `${group}/${o.kind}/${o.metadata.namespace ?? ''}/${objectName(o)}`;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * Parses multi-document YAML. Empty documents are skipped; a `kind: List` is flattened into its
 * items (as kubectl does). Throws ManifestError listing every problem found, not just the first.
 */
export function parseManifests(text: string, source: string): Manifest[] {
  const lineCounter = new LineCounter();
  const docs = parseAllDocuments(text, { lineCounter, prettyErrors: false, uniqueKeys: true });
  const problems: ManifestProblem[] = [];
  const manifests: Manifest[] = [];
  const lineOf = (offset: number) => lineCounter.linePos(offset).line;

  for (const doc of Array.isArray(docs) ? docs : [docs]) {
    // The first line of content, not the `---` marker before it.
    const line = lineOf(doc.contents?.range[0] ?? doc.range[0]);
    if (doc.errors.length > 0) {
      for (const e of doc.errors)
        problems.push({ source, line: lineOf(e.pos[0]), message: e.message.split('\n')[0]! });
      continue;
    }
    const value: unknown = doc.toJS({ maxAliasCount: 100 });
    if (value === null || value === undefined) continue;
    const items =
      isRecord(value) && value.kind === 'List' && Array.isArray(value.items) ? value.items : [value];
    for (const item of items as unknown[]) {
      const problem = validateObject(item);
      if (problem) problems.push({ source, line, message: problem });
      else manifests.push({ object: item as KubeObject, source, line });
    }
  }
  if (problems.length > 0) throw new ManifestError(problems);
  return manifests;
}

function validateObject(value: unknown): string | undefined {
  if (!isRecord(value))
    return `a manifest must be a mapping, got ${Array.isArray(value) ? 'a list' : typeof value}`;
  const missing: string[] = [];
  if (typeof value.apiVersion !== 'string' || value.apiVersion === '') missing.push('apiVersion');
  if (typeof value.kind !== 'string' || value.kind === '') missing.push('kind');
  const metadata = value.metadata;
  if (!isRecord(metadata) || typeof metadata.name !== 'string' || metadata.name === '') {
    // generateName is a create-time feature: a declarative, pruned object needs a stable name.
    // Hooks are the exception (Argo CD allows it): they are created, not tracked.
    const annotations = isRecord(metadata) && isRecord(metadata.annotations) ? metadata.annotations : {};
    const hook = HOOK_ANNOTATIONS.some((a) => typeof annotations[a] === 'string');
    const generated =
      isRecord(metadata) && typeof metadata.generateName === 'string' && metadata.generateName !== '';
    if (!(hook && generated)) missing.push('metadata.name');
  }
  if (missing.length > 0) {
    const what = typeof value.kind === 'string' ? `${value.kind} ` : '';
    return `${what}object is missing ${missing.join(', ')}`;
  }
  return undefined;
}

/** Throws ManifestError naming both places when two manifests describe the same object. */
export function assertNoDuplicates(manifests: Manifest[]): void {
  const seen = new Map<string, Manifest>();
  const problems: ManifestProblem[] = [];
  for (const m of manifests) {
    const key = objectKey(m.object);
    const first = seen.get(key);
    if (first) {
      const ns = m.object.metadata.namespace ? ` in namespace ${m.object.metadata.namespace}` : '';
      problems.push({
        source: m.source,
        line: m.line,
        message: `duplicate ${m.object.kind} "${objectName(m.object)}"${ns} (first defined at ${first.source}:${first.line})`,
      });
    } else {
      seen.set(key, m);
    }
  }
  if (problems.length > 0) throw new ManifestError(problems);
}
