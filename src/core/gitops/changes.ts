// The changes a promotion makes to a GitOps checkout. Each is a pure function of the checkout and
// its arguments, touching only its own path, so it can be re-applied on top of whatever another
// pipeline pushed meanwhile.
import { mkdir, readdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { YAMLMap } from 'yaml';
import { isMap, isSeq, parseDocument } from 'yaml';
import { parseImageOverride, type ImageOverride } from '../render/images.ts';
import { replaceFile, resolveInside, resolveTargetInside } from '../fs/paths.ts';

export type PromoteChange =
  /** Make `path` hold exactly these rendered manifest files (the rendered-manifests pattern). */
  | { type: 'manifests'; path: string; files: Map<string, string> }
  /** Set an image in a kustomization's `images:` list (as `kustomize edit set image`). */
  | { type: 'kustomize-image'; file: string; image: ImageOverride }
  /** Set a value in a YAML file by dotted key path, e.g. a Helm values file's `image.tag`. */
  | { type: 'yaml-value'; file: string; key: string; value: string };

export class ChangeError extends Error {
  override name = 'ChangeError';
}

export function describeChange(change: PromoteChange): string {
  switch (change.type) {
    case 'manifests':
      return `${change.path} (${change.files.size} manifests)`;
    case 'kustomize-image':
      return `${change.file}: image ${change.image.name}`;
    case 'yaml-value':
      return `${change.file}: ${change.key}=${change.value}`;
  }
}

export async function applyChange(worktree: string, change: PromoteChange): Promise<void> {
  switch (change.type) {
    case 'manifests': {
      const dir = await resolveTargetInside(worktree, change.path, 'manifests path');
      await mkdir(dir, { recursive: true });
      for (const name of await readdir(dir)) {
        if (/\.ya?ml$/.test(name) && !change.files.has(name)) await rm(join(dir, name));
      }
      for (const [name, content] of change.files) {
        if (name.includes('/') || name.startsWith('.')) throw new ChangeError(`invalid manifest file name "${name}"`);
        await replaceFile(join(dir, name), content);
      }
      return;
    }
    case 'kustomize-image':
      return editYaml(worktree, change.file, (doc) => {
        const images: unknown = doc.get('images');
        const list = isSeq(images) ? images : doc.createNode([]);
        if (!isSeq(images)) doc.set('images', list);
        let entry = list.items.find((i) => isMap(i) && i.get('name') === change.image.name) as YAMLMap | undefined;
        if (!entry) {
          entry = doc.createNode({ name: change.image.name });
          list.items.push(entry);
        }
        if (change.image.newName) entry.set('newName', change.image.newName);
        // A digest pins the image: a leftover tag would be ignored and mislead, and vice versa.
        if (change.image.digest) {
          entry.set('digest', change.image.digest);
          entry.delete('newTag');
        } else if (change.image.newTag) {
          entry.set('newTag', change.image.newTag);
          entry.delete('digest');
        }
      });
    case 'yaml-value':
      return editYaml(worktree, change.file, (doc) => {
        const path = change.key.split('.');
        if (path.some((p) => p === '')) throw new ChangeError(`invalid key "${change.key}"`);
        doc.setIn(path, change.value);
      });
  }
}

async function editYaml(worktree: string, file: string, edit: (doc: ReturnType<typeof parseDocument>) => void) {
  const path = await resolveInside(worktree, file, 'file');
  const doc = parseDocument(await readFile(path, 'utf8'));
  if (doc.errors.length > 0) throw new ChangeError(`${file} is not valid YAML: ${doc.errors[0]!.message}`);
  edit(doc);
  // Comments and layout of the rest of the file are kept: only the edited nodes change.
  await replaceFile(path, doc.toString({ lineWidth: 0 }));
}

/** A change described the way the action inputs and CLI flags describe it. */
export interface ChangeSpec {
  /** Workspace the local paths (manifestsFrom) are read from. */
  workspace: string;
  /** Rendered manifests directory (local) to copy to `path` in the GitOps repo. */
  manifestsFrom?: string;
  path?: string;
  /** A kustomization in the GitOps repo and the image to set in it. */
  kustomization?: string;
  image?: string;
  /** A YAML file in the GitOps repo, the dotted key and the value to set. */
  valuesFile?: string;
  key?: string;
  value?: string;
}

export async function changeFromSpec(spec: ChangeSpec): Promise<PromoteChange> {
  const forms = [
    spec.manifestsFrom !== undefined || spec.path !== undefined,
    spec.kustomization !== undefined,
    spec.valuesFile !== undefined,
  ].filter(Boolean).length;
  if (forms !== 1) {
    throw new ChangeError(
      'describe exactly one change: manifests (manifests-from + path), an image in a kustomization (kustomization + image), or a value in a YAML file (values-file + key + value)',
    );
  }
  if (spec.manifestsFrom !== undefined || spec.path !== undefined) {
    if (!spec.manifestsFrom || !spec.path) throw new ChangeError('manifests need both manifests-from and path');
    const dir = await resolveInside(spec.workspace, spec.manifestsFrom, 'manifests-from');
    const files = new Map<string, string>();
    for (const name of (await readdir(dir)).sort()) {
      if (/\.ya?ml$/.test(name)) files.set(name, await readFile(await resolveInside(dir, name, 'manifest'), 'utf8'));
    }
    if (files.size === 0) throw new ChangeError(`no manifests (*.yaml) in ${spec.manifestsFrom}: refusing to empty ${spec.path}`);
    return { type: 'manifests', path: spec.path, files };
  }
  if (spec.kustomization !== undefined) {
    if (!spec.image) throw new ChangeError('an image change needs image (e.g. ghcr.io/acme/web@sha256:...)');
    return { type: 'kustomize-image', file: spec.kustomization, image: parseImageOverride(spec.image) };
  }
  if (!spec.key || spec.value === undefined) throw new ChangeError('a values change needs key and value');
  return { type: 'yaml-value', file: spec.valuesFile!, key: spec.key, value: spec.value };
}

/** Trailers that tie a promotion to the workflow run that made it (GitHub Actions environment). */
export function runTrailers(env: NodeJS.ProcessEnv): Record<string, string> {
  const server = env.GITHUB_SERVER_URL ?? 'https://github.com';
  return {
    ...(env.GITHUB_REPOSITORY ? { 'Source-Repository': env.GITHUB_REPOSITORY } : {}),
    ...(env.GITHUB_SHA ? { 'Source-Commit': env.GITHUB_SHA } : {}),
    ...(env.GITHUB_REPOSITORY && env.GITHUB_RUN_ID
      ? { 'Workflow-Run': `${server}/${env.GITHUB_REPOSITORY}/actions/runs/${env.GITHUB_RUN_ID}` }
      : {}),
  };
}
