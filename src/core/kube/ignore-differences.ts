// Argo CD's spec.ignoreDifferences (https://argo-cd.readthedocs.io/en/stable/user-guide/diffing/):
// fields of matching objects that a comparison leaves out, named by JSON pointer (RFC 6901) or by
// the field managers that own them in the live object's managedFields (an HPA's replicas, a
// caBundle a webhook injects) or by jq path expression (jq-paths.ts).
//
// Argo CD leaves those fields out of the diff, but by default a sync still applies them, undoing
// the HPA's or the injector's value (its RespectIgnoreDifferences=true sync option stops that).
// Here the safe behaviour is the only one: an ignored field that the live object has keeps its
// live value in what is applied, so a sync never resets it. The field is then applied with the
// value it already has: server-side apply takes shared ownership and changes nothing.
import { isRecord, type KubeResource } from './resource.ts';

export interface IgnoreDifference {
  group?: string;
  kind: string;
  name?: string;
  namespace?: string;
  jsonPointers?: string[];
  jqPathExpressions?: string[];
  managedFieldsManagers?: string[];
}

/** A rule that cannot be applied (a malformed pointer, a jq expression jq refuses). */
export class IgnoreRuleError extends Error {
  override name = 'IgnoreRuleError';
}

/** A field's place in an object: keys and array indexes from the root. */
export type FieldPath = readonly (string | number)[];

/** The rules for an object: group and kind must match, name and namespace when a rule gives them. */
export function rulesFor(
  rules: readonly IgnoreDifference[],
  obj: { group: string; kind: string; name: string; namespace: string },
): IgnoreDifference[] {
  return rules.filter(
    (r) =>
      (r.group ?? '') === obj.group &&
      r.kind === obj.kind &&
      (!r.name || r.name === obj.name) &&
      (!r.namespace || r.namespace === obj.namespace),
  );
}

/** RFC 6901: `/spec/replicas`, `~1` for `/` and `~0` for `~`; throws on a pointer without a leading `/`. */
export function parsePointer(pointer: string): string[] {
  if (pointer === '') return [];
  if (!pointer.startsWith('/'))
    throw new Error(`JSON pointer ${JSON.stringify(pointer)} must start with "/"`);
  return pointer
    .slice(1)
    .split('/')
    .map((t) => t.replace(/~1/g, '/').replace(/~0/g, '~'));
}

interface ManagedFieldsEntry {
  manager?: string;
  fieldsType?: string;
  fieldsV1?: unknown;
}

/**
 * The fields the given managers own in `live`, from its managedFields (fieldsV1: `f:<name>` a
 * field, `k:<json>` the list item with those key fields, `v:<json>` the set item of that value,
 * `i:<n>` an index; `{}` a field owned whole, `.` the item itself). Only fields the live object
 * has are returned, resolved to indexes in its lists.
 */
export function managedFieldPaths(live: KubeResource, managers: readonly string[]): FieldPath[] {
  const entries = (live.metadata.managedFields ?? []) as ManagedFieldsEntry[];
  const paths: FieldPath[] = [];
  for (const entry of entries) {
    if (!entry.manager || !managers.includes(entry.manager) || entry.fieldsType !== 'FieldsV1') continue;
    walkFields(entry.fieldsV1, live, [], paths);
  }
  // A manager writing status (kube-controller-manager's Deployment controller is also the HPA's
  // manager name) owns fields that are neither applied nor compared: not ours to carry over.
  return paths.filter(
    (p) => p[0] !== 'status' && !(p[0] === 'metadata' && SERVER_METADATA.has(String(p[1]))),
  );
}

const SERVER_METADATA = new Set([
  'managedFields',
  'resourceVersion',
  'generation',
  'uid',
  'creationTimestamp',
]);

function walkFields(node: unknown, value: unknown, at: (string | number)[], out: FieldPath[]): void {
  if (!isRecord(node)) return;
  for (const [key, child] of Object.entries(node)) {
    if (key === '.') continue;
    const step = resolveStep(key, value);
    if (step === undefined) continue;
    const path = [...at, step];
    const next = (value as Record<string | number, unknown>)[step];
    if (isRecord(child) && Object.keys(child).length > 0) walkFields(child, next, path, out);
    else out.push(path);
  }
}

/** The key or index a fieldsV1 key names in `value`, or undefined when `value` has no such field. */
function resolveStep(key: string, value: unknown): string | number | undefined {
  const body = key.slice(2);
  switch (key.slice(0, 2)) {
    case 'f:':
      return isRecord(value) && body in value ? body : undefined;
    case 'k:': {
      if (!Array.isArray(value)) return undefined;
      const fields = parseJSON(body);
      if (!isRecord(fields)) return undefined;
      const i = value.findIndex(
        (item) => isRecord(item) && Object.entries(fields).every(([k, v]) => sameJSON(item[k], v)),
      );
      return i >= 0 ? i : undefined;
    }
    case 'v:': {
      if (!Array.isArray(value)) return undefined;
      const member = parseJSON(body);
      if (member === undefined) return undefined;
      const i = value.findIndex((item) => sameJSON(item, member));
      return i >= 0 ? i : undefined;
    }
    case 'i:': {
      const i = Number(body);
      return Array.isArray(value) && Number.isInteger(i) && i >= 0 && i < value.length ? i : undefined;
    }
    default:
      return undefined;
  }
}

/** The value of a fieldsV1 key's JSON, or undefined when it is not JSON. */
function parseJSON(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}

function sameJSON(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

/** The value at `path`, and whether it is there at all. */
export function lookup(obj: unknown, path: FieldPath): { found: boolean; value?: unknown } {
  let cur: unknown = obj;
  for (const step of path) {
    if (Array.isArray(cur)) {
      const i = typeof step === 'number' ? step : /^(0|[1-9]\d*)$/.test(step) ? Number(step) : -1;
      if (i < 0 || i >= cur.length) return { found: false };
      cur = cur[i];
    } else if (isRecord(cur) && Object.hasOwn(cur, String(step))) {
      cur = cur[String(step)];
    } else {
      return { found: false };
    }
  }
  return { found: true, value: cur };
}

/**
 * A copy of `target` where each path takes `source`'s value; where `source` lacks the field, it
 * is removed from the copy when `removeMissing`, else left as `target` has it. Only the
 * containers on the way are copied. A path whose parent `target` lacks is created when `source`
 * has it.
 */
export function overlay<T>(
  target: T,
  source: unknown,
  paths: readonly FieldPath[],
  removeMissing: boolean,
): T {
  let result: unknown = target;
  for (const path of paths) {
    if (path.length === 0) continue;
    const from = lookup(source, path);
    if (!from.found && !removeMissing) continue;
    result = setAt(result, path, from.found ? { value: structuredClone(from.value) } : undefined);
  }
  return result as T;
}

/** `obj` with the value at `path` replaced (or removed, for undefined), copying what changes. */
function setAt(obj: unknown, path: FieldPath, to: { value: unknown } | undefined): unknown {
  const [step, ...rest] = path;
  if (step === undefined) return to?.value;
  if (Array.isArray(obj)) {
    const i = typeof step === 'number' ? step : Number(step);
    if (!Number.isInteger(i) || i < 0 || i >= obj.length) return obj;
    const copy: unknown[] = [...(obj as unknown[])];
    if (rest.length === 0 && !to) copy.splice(i, 1);
    else copy[i] = setAt(copy[i], rest, to);
    return copy;
  }
  const record = isRecord(obj) ? obj : undefined;
  if (!record) {
    // A missing container is made only for a field name: a list cannot be made up to an index.
    if (!to || obj !== undefined || typeof step === 'number') return obj;
    return setAt({}, path, to);
  }
  const key = String(step);
  const copy: Record<string, unknown> = { ...record };
  if (rest.length === 0) {
    if (to) copy[key] = to.value;
    else delete copy[key];
    return copy;
  }
  if (!Object.hasOwn(copy, key) && !to) return obj;
  copy[key] = setAt(copy[key], rest, to);
  return copy;
}

/**
 * The fields of `live` the rules ignore, as paths: the pointers as given, and the fields the named
 * managers own. Throws on a malformed pointer (the caller makes it a condition).
 */
export function ignoredPaths(
  rules: readonly IgnoreDifference[],
  live: KubeResource | undefined,
): FieldPath[] {
  const paths: FieldPath[] = [];
  for (const rule of rules) {
    for (const pointer of rule.jsonPointers ?? []) paths.push(parsePointer(pointer));
    if (live && rule.managedFieldsManagers?.length)
      paths.push(...managedFieldPaths(live, rule.managedFieldsManagers));
  }
  return paths;
}
