// Rendering a source directory into final Kubernetes objects with the real tools: `kustomize
// build`, `helm template`, or the YAML files of a plain directory; then image overrides and
// validation. Nothing is written here: callers write only a render that fully succeeded.
import { execFile } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { promisify } from 'node:util';
import { parse as parseYaml } from 'yaml';
import { applyImageOverrides, containerImageNames, parseImageOverride, type ImageChange } from './images.ts';
import { assertNoDuplicates, parseManifests, type KubeObject, type Manifest } from './manifest.ts';
import { resolveInside } from './paths.ts';

const run = promisify(execFile);

export type SourceType = 'kustomize' | 'helm' | 'directory';

export interface HelmOptions {
  releaseName?: string;
  namespace?: string;
  /** Values files, relative to the chart directory (as Argo CD's helm.valueFiles). */
  valueFiles?: string[];
  /** Inline values (YAML); they take precedence over valueFiles. */
  values?: string;
  /** `--set`-style assignments, `path.to.key=value`. */
  set?: string[];
  kubeVersion?: string;
  apiVersions?: string[];
  /** Render Helm test hooks too (off by default, as they are not part of a deployment). */
  includeTests?: boolean;
  /** Allow fetching chart dependencies from repositories (off: only file:// dependencies). */
  allowRepositoryAccess?: boolean;
}

export interface RenderOptions {
  /** Root that every path must stay inside (the checkout). */
  workspace: string;
  /** The source directory, relative to the workspace. */
  path: string;
  /** Forces a source type instead of detecting it. */
  type?: SourceType;
  helm?: HelmOptions;
  directory?: { recurse?: boolean };
  kustomize?: { allowRemoteBases?: boolean };
  /** Image overrides, `kustomize edit set image` syntax. */
  images?: string[];
  /** Binaries; found on PATH by default. */
  helmBinary?: string;
  kustomizeBinary?: string;
  /** Limit for each tool invocation. */
  timeoutMs?: number;
}

export interface RenderResult {
  type: SourceType;
  objects: KubeObject[];
  imageChanges: ImageChange[];
  /** Overrides that matched no container: usually a typo worth a warning. */
  unmatchedImages: string[];
}

export class RenderError extends Error {
  override name = 'RenderError';
}

const KUSTOMIZATION_FILES = ['kustomization.yaml', 'kustomization.yml', 'Kustomization'];
// With repository access off, any network attempt by a tool dials this closed port and fails fast.
const NO_NETWORK = {
  HTTP_PROXY: 'http://127.0.0.1:9',
  HTTPS_PROXY: 'http://127.0.0.1:9',
  NO_PROXY: '',
  GIT_ALLOW_PROTOCOL: 'file',
};

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}

export async function detectSourceType(dir: string): Promise<SourceType> {
  for (const f of KUSTOMIZATION_FILES) if (await exists(join(dir, f))) return 'kustomize';
  if (await exists(join(dir, 'Chart.yaml'))) return 'helm';
  return 'directory';
}

async function tool(
  binary: string,
  args: string[],
  options: { cwd?: string; env?: NodeJS.ProcessEnv; timeoutMs: number },
) {
  try {
    const { stdout } = await run(binary, args, {
      cwd: options.cwd,
      env: { ...process.env, ...options.env },
      maxBuffer: 256 * 1024 * 1024,
      timeout: options.timeoutMs,
    });
    return stdout;
  } catch (err) {
    const e = err as Error & { code?: string | number; stderr?: string; killed?: boolean };
    if (e.code === 'ENOENT') throw new RenderError(`${binary} not found: install it or put it on PATH`);
    if (e.killed) throw new RenderError(`${binary} ${args[0]} timed out after ${options.timeoutMs} ms`);
    // The tool's own message is the useful part; it never contains our credentials.
    throw new RenderError(`${binary} ${args[0]} failed: ${(e.stderr ?? e.message).trim()}`);
  }
}

const REMOTE =
  /^(?:[a-z][a-z0-9+.-]*:\/\/|git@|github\.com\/|gitlab\.com\/|bitbucket\.org\/)|\?ref=|\.git(?:\/\/|$)/i;

/** Finds remote bases anywhere in the kustomization tree, to refuse them with a clear message. */
async function findRemoteKustomizeBases(
  workspace: string,
  dir: string,
  seen = new Set<string>(),
): Promise<string[]> {
  if (seen.has(dir)) return [];
  seen.add(dir);
  let file: string | undefined;
  for (const f of KUSTOMIZATION_FILES) if (await exists(join(dir, f))) file = join(dir, f);
  if (!file) return [];
  const k = (parseYaml(await readFile(file, 'utf8')) ?? {}) as Record<string, unknown>;
  const entries = ['resources', 'bases', 'components'].flatMap((key) =>
    Array.isArray(k[key]) ? (k[key] as unknown[]).filter((v): v is string => typeof v === 'string') : [],
  );
  const remote: string[] = [];
  for (const entry of entries) {
    if (REMOTE.test(entry)) {
      remote.push(`${entry} (in ${relative(workspace, file)})`);
      continue;
    }
    const target = join(dir, entry);
    if ((await stat(target).catch(() => undefined))?.isDirectory()) {
      remote.push(...(await findRemoteKustomizeBases(workspace, target, seen)));
    }
  }
  return remote;
}

async function renderKustomize(dir: string, options: RenderOptions, timeoutMs: number): Promise<string> {
  const workspace = options.workspace;
  if (!options.kustomize?.allowRemoteBases) {
    const remote = await findRemoteKustomizeBases(workspace, dir);
    if (remote.length > 0) {
      throw new RenderError(
        `remote kustomize bases are disabled (enable allowRemoteBases to use them): ${remote.join(', ')}`,
      );
    }
  }
  return tool(options.kustomizeBinary ?? 'kustomize', ['build', dir], {
    timeoutMs,
    env: options.kustomize?.allowRemoteBases ? {} : NO_NETWORK,
  });
}

async function renderHelm(dir: string, options: RenderOptions, timeoutMs: number): Promise<string> {
  const helm = options.helmBinary ?? 'helm';
  const h = options.helm ?? {};
  const chart = (parseYaml(await readFile(join(dir, 'Chart.yaml'), 'utf8')) ?? {}) as {
    name?: string;
    dependencies?: Array<{ name: string; repository?: string }>;
  };
  const env = h.allowRepositoryAccess ? {} : NO_NETWORK;
  const deps = chart.dependencies ?? [];
  if (deps.length > 0) {
    const remote = deps.filter((d) => d.repository && !d.repository.startsWith('file://'));
    if (remote.length > 0 && !h.allowRepositoryAccess) {
      throw new RenderError(
        `chart dependencies from repositories are disabled (enable allowRepositoryAccess): ${remote.map((d) => `${d.name} from ${d.repository}`).join(', ')}`,
      );
    }
    // Packages local (file://) dependencies into charts/, as Argo CD does before templating.
    await tool(helm, ['dependency', 'build', dir, '--skip-refresh'], { timeoutMs, env });
  }

  const args = ['template', h.releaseName ?? chart.name ?? 'release', dir, '--include-crds'];
  if (h.namespace) args.push('--namespace', h.namespace);
  for (const f of h.valueFiles ?? []) {
    args.push(
      '--values',
      await resolveInside(options.workspace, relative(options.workspace, join(dir, f)), 'values file'),
    );
  }
  let tmp: string | undefined;
  try {
    if (h.values) {
      tmp = await mkdtemp(join(tmpdir(), 'kube-actions-values-'));
      await writeFile(join(tmp, 'values.yaml'), h.values);
      args.push('--values', join(tmp, 'values.yaml'));
    }
    for (const s of h.set ?? []) args.push('--set', s);
    if (h.kubeVersion) args.push('--kube-version', h.kubeVersion);
    for (const v of h.apiVersions ?? []) args.push('--api-versions', v);
    if (!h.includeTests) args.push('--skip-tests');
    return await tool(helm, args, { timeoutMs, env });
  } finally {
    if (tmp) await rm(tmp, { recursive: true, force: true });
  }
}

async function yamlFiles(dir: string, recurse: boolean): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true });
  const files: string[] = [];
  for (const e of entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))) {
    if (e.name.startsWith('.')) continue;
    const p = join(dir, e.name);
    if (e.isDirectory() && recurse) files.push(...(await yamlFiles(p, recurse)));
    else if (/\.(ya?ml|json)$/i.test(e.name)) files.push(p);
  }
  return files;
}

export async function render(options: RenderOptions): Promise<RenderResult> {
  const timeoutMs = options.timeoutMs ?? 120_000;
  const overrides = (options.images ?? []).map(parseImageOverride);
  const dir = await resolveInside(options.workspace, options.path, 'source path');
  if (!(await stat(dir)).isDirectory())
    throw new RenderError(`source path "${options.path}" is not a directory`);
  const type = options.type ?? (await detectSourceType(dir));

  let manifests: Manifest[];
  if (type === 'directory') {
    manifests = [];
    for (const file of await yamlFiles(dir, options.directory?.recurse ?? false)) {
      const real = await resolveInside(options.workspace, relative(options.workspace, file), 'manifest');
      manifests.push(...parseManifests(await readFile(real, 'utf8'), relative(options.workspace, file)));
    }
  } else {
    const output =
      type === 'kustomize'
        ? await renderKustomize(dir, options, timeoutMs)
        : await renderHelm(dir, options, timeoutMs);
    manifests = parseManifests(
      output,
      `${type === 'helm' ? 'helm template' : 'kustomize build'} ${options.path}`,
    );
  }
  assertNoDuplicates(manifests);

  const objects = manifests.map((m) => m.object);
  const present = containerImageNames(objects);
  const imageChanges = applyImageOverrides(objects, overrides);
  const unmatchedImages = overrides.filter((o) => !present.has(o.name)).map((o) => o.name);
  return { type, objects, imageChanges, unmatchedImages };
}
