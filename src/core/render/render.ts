// Rendering a source directory into final Kubernetes objects with the real tools: `kustomize
// build`, `helm template`, or the YAML files of a plain directory; then image overrides and
// validation. Nothing is written here: callers write only a render that fully succeeded.
import { execFile } from 'node:child_process';
import { mkdtemp, readdir, readFile, realpath, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { promisify } from 'node:util';
import { parse as parseYaml } from 'yaml';
import { applyImageOverrides, containerImageNames, parseImageOverride, type ImageChange } from './images.ts';
import {
  assertNoDuplicates,
  ManifestError,
  parseManifests,
  type KubeObject,
  type Manifest,
} from './manifest.ts';
import { assertNoEscapingSymlinks, resolveInside } from '../fs/paths.ts';
import { inputKey, type RenderCache } from './cache.ts';
import { compareStrings } from '../order.ts';

const run = promisify(execFile);

export type SourceType = 'kustomize' | 'helm' | 'directory';

export interface HelmOptions {
  releaseName?: string;
  namespace?: string;
  /**
   * Values files, relative to the chart directory (as Argo CD's helm.valueFiles), or the content
   * of one read elsewhere (another source's `$ref/...` file), in the same order.
   */
  valueFiles?: (string | { from: string; content: string })[];
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
  /** Reuse tool output when nothing the tool reads has changed (see cache.ts). */
  cache?: RenderCache;
}

export interface RenderResult {
  type: SourceType;
  objects: KubeObject[];
  imageChanges: ImageChange[];
  /** Overrides that matched no container: usually a typo worth a warning. */
  unmatchedImages: string[];
  /** How many times helm or kustomize ran (0 for a plain directory or a cache hit). */
  toolInvocations: number;
}

export class RenderError extends Error {
  override name = 'RenderError';
}

/**
 * The manifests in `text`. The yaml library reports most problems as document errors (a
 * ManifestError naming file and line), but throws a plain Error for some hostile input, e.g. a
 * ReferenceError for an alias bomb: that is a render failure of `source` too, not a crash.
 */
function manifestsOf(text: string, source: string): Manifest[] {
  try {
    return parseManifests(text, source);
  } catch (err) {
    if (err instanceof ManifestError) throw err;
    throw new RenderError(`${source}: ${(err as Error).message}`);
  }
}

/** A YAML file the renderer reads itself (a kustomization, Chart.yaml): a mapping, or an error naming it. */
async function readYamlMapping(workspace: string, file: string): Promise<Record<string, unknown>> {
  const name = relative(workspace, file);
  let value: unknown;
  try {
    value = parseYaml(await readFile(file, 'utf8'));
  } catch (err) {
    // A YAMLParseError for bad syntax, a ReferenceError for an alias bomb: both the file's fault.
    throw new RenderError(`${name}: ${(err as Error).message}`);
  }
  if (value === null || value === undefined) return {};
  if (typeof value !== 'object' || Array.isArray(value)) throw new RenderError(`${name}: expected a mapping`);
  return value as Record<string, unknown>;
}

interface ChartDependency {
  name: string;
  repository?: string;
}

/** Chart.yaml's fields this renderer acts on, checked: they come from the repository, untrusted. */
function chartMetadata(
  file: string,
  chart: Record<string, unknown>,
): { name?: string; dependencies: ChartDependency[] } {
  const fail = (why: string) => new RenderError(`${file}: ${why}`);
  if (chart.name !== undefined && typeof chart.name !== 'string') throw fail('name must be a string');
  const deps = chart.dependencies ?? [];
  if (!Array.isArray(deps)) throw fail('dependencies must be a list');
  const dependencies = deps.map((d: unknown, i) => {
    const dep = d as Partial<Record<string, unknown>> | null;
    if (typeof dep !== 'object' || dep === null || Array.isArray(dep) || typeof dep.name !== 'string')
      throw fail(`dependencies[${i}] must be a mapping with a name`);
    if (dep.repository !== undefined && dep.repository !== null && typeof dep.repository !== 'string')
      throw fail(`dependencies[${i}].repository must be a string`);
    return { name: dep.name, ...(typeof dep.repository === 'string' ? { repository: dep.repository } : {}) };
  });
  return { ...(typeof chart.name === 'string' ? { name: chart.name } : {}), dependencies };
}

const KUSTOMIZATION_FILES = ['kustomization.yaml', 'kustomization.yml', 'Kustomization'];
// Helm's own rule for release names (a DNS-1123 subdomain, at most 53 characters).
const RELEASE_NAME = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
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

/**
 * Walks the kustomization tree from `dir`: the local directories kustomize will load (each one a
 * kustomization root; its files may not leave it) and any remote bases, for a clear refusal.
 */
async function kustomizeTree(
  workspace: string,
  dir: string,
  tree = { dirs: [] as string[], remote: [] as string[] },
): Promise<{ dirs: string[]; remote: string[] }> {
  if (tree.dirs.includes(dir)) return tree;
  tree.dirs.push(dir);
  let file: string | undefined;
  for (const f of KUSTOMIZATION_FILES) if (await exists(join(dir, f))) file = join(dir, f);
  if (!file) return tree;
  // Resolved inside the workspace first: a symlinked kustomization must not read other files.
  const real = await resolveInside(workspace, relative(workspace, file), 'kustomization');
  const k = await readYamlMapping(workspace, real);
  // Every field whose entries kustomize loads as paths or URLs.
  const entries = ['resources', 'bases', 'components', 'transformers', 'generators', 'validators'].flatMap(
    (key) =>
      Array.isArray(k[key]) ? (k[key] as unknown[]).filter((v): v is string => typeof v === 'string') : [],
  );
  for (const entry of entries) {
    if (REMOTE.test(entry)) {
      tree.remote.push(`${entry} (in ${relative(workspace, file)})`);
      continue;
    }
    const target = join(dir, entry);
    if ((await stat(target).catch(() => undefined))?.isDirectory()) {
      // A base outside the workspace (by `..` or a symlink) is refused like any other path.
      const base = await resolveInside(workspace, relative(workspace, target), 'kustomize base');
      await kustomizeTree(workspace, base, tree);
    }
  }
  return tree;
}

/** Runs the tool unless the cache already holds its output for exactly these inputs. */
async function cachedTool(
  cache: RenderCache | undefined,
  key: () => Promise<string>,
  produce: () => Promise<string>,
  counter: { invocations: number },
): Promise<string> {
  const k = cache ? await key() : '';
  const hit = cache ? await cache.get(k) : undefined;
  if (hit !== undefined) return hit;
  counter.invocations++;
  const output = await produce();
  if (cache) await cache.set(k, output);
  return output;
}

async function renderKustomize(
  dir: string,
  options: RenderOptions,
  timeoutMs: number,
  counter: { invocations: number },
): Promise<string> {
  const tree = await kustomizeTree(options.workspace, dir);
  const allowRemote = options.kustomize?.allowRemoteBases ?? false;
  if (!allowRemote && tree.remote.length > 0) {
    throw new RenderError(
      `remote kustomize bases are disabled (enable allowRemoteBases to use them): ${tree.remote.join(', ')}`,
    );
  }
  const binary = options.kustomizeBinary ?? 'kustomize';
  return cachedTool(
    // Remote bases can change without any local change: never cache those renders.
    allowRemote && tree.remote.length > 0 ? undefined : options.cache,
    () => inputKey(binary, tree.dirs, { tool: 'kustomize', dir }),
    () => tool(binary, ['build', dir], { timeoutMs, env: allowRemote ? {} : NO_NETWORK }),
    counter,
  );
}

/** A placeholder in helm's args for a values file written just before it runs (never a real path). */
const EXTERNAL_VALUES = '\0external-values-';

async function renderHelm(
  dir: string,
  options: RenderOptions,
  timeoutMs: number,
  counter: { invocations: number },
): Promise<string> {
  const helm = options.helmBinary ?? 'helm';
  const h = options.helm ?? {};
  const chartFile = await resolveInside(
    options.workspace,
    relative(options.workspace, join(dir, 'Chart.yaml')),
    'Chart.yaml',
  );
  const chart = chartMetadata(
    relative(options.workspace, chartFile),
    await readYamlMapping(options.workspace, chartFile),
  );
  const env = h.allowRepositoryAccess ? {} : NO_NETWORK;
  const deps = chart.dependencies;
  const remote = deps.filter((d) => d.repository && !d.repository.startsWith('file://'));
  if (remote.length > 0 && !h.allowRepositoryAccess) {
    throw new RenderError(
      `chart dependencies from repositories are disabled (enable allowRepositoryAccess): ${remote.map((d) => `${d.name} from ${d.repository}`).join(', ')}`,
    );
  }
  const localDeps: string[] = [];
  for (const d of deps.filter((d) => d.repository?.startsWith('file://'))) {
    const depPath = relative(options.workspace, join(dir, d.repository!.slice(7)));
    localDeps.push(await resolveInside(options.workspace, depPath, 'chart dependency'));
  }
  // helm follows symlinks inside the chart: none may lead out of the workspace.
  for (const chartDir of [dir, ...localDeps]) await assertNoEscapingSymlinks(options.workspace, chartDir);

  // The release name comes from Chart.yaml or the caller: both are untrusted input, and as a
  // positional argument a name like `--output-dir=..` would be read as a flag.
  const releaseName = h.releaseName ?? chart.name ?? 'release';
  if (!RELEASE_NAME.test(releaseName) || releaseName.length > 53) {
    throw new RenderError(
      `invalid Helm release name "${releaseName}": lower-case letters, digits, - and ., at most 53 characters`,
    );
  }
  const args = ['template', '--include-crds'];
  if (h.namespace) args.push('--namespace', h.namespace);
  const valueFiles: string[] = [];
  // Values read elsewhere are written to a temporary file for the run; the args hold a placeholder.
  const external: string[] = [];
  for (const f of h.valueFiles ?? []) {
    if (typeof f !== 'string') {
      args.push('--values', `${EXTERNAL_VALUES}${external.length}`);
      external.push(f.content);
      continue;
    }
    const file = await resolveInside(
      options.workspace,
      relative(options.workspace, join(dir, f)),
      'values file',
    );
    valueFiles.push(file);
    args.push('--values', file);
  }
  for (const s of h.set ?? []) args.push('--set', s);
  if (h.kubeVersion) args.push('--kube-version', h.kubeVersion);
  for (const v of h.apiVersions ?? []) args.push('--api-versions', v);
  if (!h.includeTests) args.push('--skip-tests');
  const positional = ['--', releaseName, dir];

  const key = async () =>
    inputKey(
      helm,
      [dir, ...localDeps],
      // Values files may live outside the chart: their contents are part of the key.
      {
        tool: 'helm',
        args,
        values: h.values ?? '',
        valueFiles: await Promise.all(valueFiles.map((f) => readFile(f, 'utf8'))),
        external,
      },
      // Packaged local dependencies and the lock are derived from the dependency dirs, hashed too.
      (rel) => rel === 'Chart.lock' || (localDeps.length > 0 && /^charts\/[^/]+\.tgz$/.test(rel)),
    );
  return cachedTool(
    remote.length > 0 ? undefined : options.cache,
    key,
    async () => {
      if (deps.length > 0) {
        // Packages local (file://) dependencies into charts/, as Argo CD does before templating.
        await tool(helm, ['dependency', 'build', dir, '--skip-refresh'], { timeoutMs, env });
      }
      let tmp: string | undefined;
      try {
        if (h.values || external.length) tmp = await mkdtemp(join(tmpdir(), 'kube-actions-values-'));
        for (const [i, content] of external.entries())
          await writeFile(join(tmp!, `external-${i}.yaml`), content);
        const templateArgs = args.map((a) =>
          a.startsWith(EXTERNAL_VALUES) ? join(tmp!, `external-${a.slice(EXTERNAL_VALUES.length)}.yaml`) : a,
        );
        if (h.values) {
          await writeFile(join(tmp!, 'values.yaml'), h.values);
          // After the values files: inline values win, as in Argo CD.
          templateArgs.push('--values', join(tmp!, 'values.yaml'));
        }
        templateArgs.push(...positional);
        return await tool(helm, templateArgs, { timeoutMs, env });
      } finally {
        if (tmp) await rm(tmp, { recursive: true, force: true });
      }
    },
    counter,
  );
}

/**
 * The manifest files under `dir` (a real directory inside the workspace), in name order, each
 * with whether it is a symlink. The walk descends only real directories, so a regular file it
 * finds is inside the workspace as found: only a symlink needs its target checked (realpath
 * walks every component of the path: 2 calls per file were 0.9 s of CPU in a cold sync of
 * 1,000 applications × 5 files).
 */
async function yamlFiles(dir: string, recurse: boolean): Promise<{ path: string; symlink: boolean }[]> {
  const entries = await readdir(dir, { withFileTypes: true });
  const files: { path: string; symlink: boolean }[] = [];
  for (const e of entries.sort((a, b) => compareStrings(a.name, b.name))) {
    if (e.name.startsWith('.')) continue;
    const p = join(dir, e.name);
    if (e.isDirectory() && recurse) files.push(...(await yamlFiles(p, recurse)));
    else if (/\.(ya?ml|json)$/i.test(e.name)) files.push({ path: p, symlink: !e.isFile() });
  }
  return files;
}

export async function render(given: RenderOptions): Promise<RenderResult> {
  // Canonical from here on: containment checks compare real paths with paths relative to it.
  const options = { ...given, workspace: await realpath(given.workspace) };
  const timeoutMs = options.timeoutMs ?? 120_000;
  const overrides = (options.images ?? []).map(parseImageOverride);
  const dir = await resolveInside(options.workspace, options.path, 'source path');
  if (!(await stat(dir)).isDirectory())
    throw new RenderError(`source path "${options.path}" is not a directory`);
  const type = options.type ?? (await detectSourceType(dir));

  const counter = { invocations: 0 };
  let manifests: Manifest[];
  if (type === 'directory') {
    manifests = [];
    for (const { path: file, symlink } of await yamlFiles(dir, options.directory?.recurse ?? false)) {
      const name = relative(options.workspace, file);
      const real = symlink ? await resolveInside(options.workspace, name, 'manifest') : file;
      manifests.push(...manifestsOf(await readFile(real, 'utf8'), name));
    }
  } else {
    const output =
      type === 'kustomize'
        ? await renderKustomize(dir, options, timeoutMs, counter)
        : await renderHelm(dir, options, timeoutMs, counter);
    manifests = manifestsOf(
      output,
      `${type === 'helm' ? 'helm template' : 'kustomize build'} ${options.path}`,
    );
  }
  assertNoDuplicates(manifests);

  const objects = manifests.map((m) => m.object);
  const present = containerImageNames(objects);
  const imageChanges = applyImageOverrides(objects, overrides);
  const unmatchedImages = overrides.filter((o) => !present.has(o.name)).map((o) => o.name);
  return { type, objects, imageChanges, unmatchedImages, toolInvocations: counter.invocations };
}
