// Deterministic output: the same input always gives byte-identical YAML, in an order that can be
// applied top to bottom, so diffs of rendered manifests stay small and reviewable. The order is the
// one a sync applies a wave in (sync-plan's kindOrder: gitops-engine's, from Helm's install order):
// Namespaces first, a Secret before the Deployment that mounts it, and custom resources (kinds it
// does not list) after all of them, so after their CustomResourceDefinitions. One order for both,
// so a rendered file reads in the order the controller applies it.
import { stringify } from 'yaml';
import { kindOrder } from '../kube/sync-plan.ts';
import { objectName, type KubeObject } from './manifest.ts';
import { compareStrings } from '../order.ts';

/** Known kinds in dependency order, then other kinds alphabetically; ties by namespace and name. */
export function sortObjects(objects: KubeObject[]): KubeObject[] {
  return [...objects].sort(
    (a, b) =>
      kindOrder(a.kind) - kindOrder(b.kind) ||
      compareStrings(a.kind, b.kind) ||
      compareStrings(a.apiVersion, b.apiVersion) ||
      compareStrings(a.metadata.namespace ?? '', b.metadata.namespace ?? '') ||
      compareStrings(objectName(a), objectName(b)),
  );
}

export function toYaml(o: KubeObject): string {
  // lineWidth 0: never fold long strings, so a changed value changes exactly one line.
  return stringify(o, { indent: 2, lineWidth: 0, minContentWidth: 0, aliasDuplicateObjects: false });
}

/** One stream, documents separated by `---`. */
export function toStream(objects: KubeObject[]): string {
  return sortObjects(objects)
    .map((o) => `---\n${toYaml(o)}`)
    .join('');
}

function fileStem(...parts: string[]): string {
  return parts
    .join('-')
    .toLowerCase()
    .replace(/[^a-z0-9.-]+/g, '_');
}

/**
 * One file per object, `<kind>-<name>.yaml` (the rendered-manifests pattern). When two objects
 * would share a name (same kind and name in different namespaces or groups) the namespace, then
 * the API group, is added to keep every file name unique and stable.
 */
export function toFiles(objects: KubeObject[]): Map<string, string> {
  const sorted = sortObjects(objects);
  const count = (f: (o: KubeObject) => string) => {
    const m = new Map<string, number>();
    for (const o of sorted) m.set(f(o), (m.get(f(o)) ?? 0) + 1);
    return m;
  };
  const short = (o: KubeObject) => fileStem(o.kind, objectName(o));
  const withNs = (o: KubeObject) =>
    o.metadata.namespace ? fileStem(o.kind, o.metadata.namespace, objectName(o)) : short(o);
  const withGroup = (o: KubeObject) => fileStem(o.apiVersion.split('/')[0]!, withNs(o));
  const shortCount = count(short);
  const nsCount = count(withNs);
  const files = new Map<string, string>();
  for (const o of sorted) {
    const stem =
      shortCount.get(short(o)) === 1 ? short(o) : nsCount.get(withNs(o)) === 1 ? withNs(o) : withGroup(o);
    files.set(`${stem}.yaml`, toYaml(o));
  }
  return files;
}
