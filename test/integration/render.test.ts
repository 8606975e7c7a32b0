// The render library with the real helm and kustomize (the pinned builds the global setup puts on
// PATH): charts, overlays, plain directories, image overrides, byte-identical re-renders, the
// output diff, and the bad-input corpus, where nothing may be written.
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { execFile } from 'node:child_process';
import { lstat, mkdir, mkdtemp, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { promisify } from 'node:util';
import {
  ManifestError,
  PathEscapeError,
  render,
  RenderError,
  renderToPath,
  toStream,
  type KubeObject,
} from '../../src/core/render/index.ts';
import { directoryCache } from '../../src/core/render/cache.ts';

const run = promisify(execFile);
const DIGEST = `sha256:${'b'.repeat(64)}`;
let ws: string;

async function put(files: Record<string, string>): Promise<void> {
  for (const [path, content] of Object.entries(files)) {
    await mkdir(dirname(join(ws, path)), { recursive: true });
    await writeFile(join(ws, path), content);
  }
}

const find = (objects: KubeObject[], kind: string, name?: string) =>
  objects.find((o) => o.kind === kind && (name === undefined || o.metadata.name === name));
const images = (o: KubeObject | undefined) =>
  (
    (o?.spec as { template: { spec: { containers: Array<{ image: string }> } } }).template.spec.containers ??
    []
  ).map((c) => c.image);

beforeAll(async () => {
  ws = await mkdtemp(join(tmpdir(), 'render-ws-'));
  await mkdir(join(ws, 'charts'));
  await run('helm', ['create', join(ws, 'charts', 'web')]);
  await put({
    'apps/base/kustomization.yaml': 'resources: [deployment.yaml, service.yaml]\n',
    'apps/base/deployment.yaml':
      'apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: api}\nspec:\n  replicas: 1\n  selector: {matchLabels: {app: api}}\n  template:\n    metadata: {labels: {app: api}}\n    spec:\n      initContainers: [{name: migrate, image: ghcr.io/acme/api:1.0}]\n      containers: [{name: api, image: ghcr.io/acme/api:1.0}]\n',
    'apps/base/service.yaml':
      'apiVersion: v1\nkind: Service\nmetadata: {name: api}\nspec: {selector: {app: api}, ports: [{port: 80}]}\n',
    'apps/prod/kustomization.yaml':
      'namespace: prod\nresources: [../base]\npatches: [{path: replicas.yaml}]\nimages: [{name: ghcr.io/acme/api, newTag: "1.1"}]\nconfigMapGenerator: [{name: api-config, literals: [LEVEL=info]}]\n',
    'apps/prod/replicas.yaml':
      'apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: api}\nspec: {replicas: 4}\n',
    'plain/a.yaml': 'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\ndata: {k: v}\n',
    'plain/nested/b.yml': 'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: b}\n',
    'plain/README.md': 'not a manifest',
  });
});
afterAll(() => rm(ws, { recursive: true, force: true }));

describe('render: real tools', () => {
  test('the chart `helm create` generates, with values, --set and an image override', async () => {
    await put({ 'charts/web/values-prod.yaml': 'replicaCount: 3\n' });
    const result = await render({
      workspace: ws,
      path: 'charts/web',
      helm: {
        releaseName: 'shop',
        namespace: 'prod',
        valueFiles: ['values-prod.yaml'],
        set: ['service.port=8080'],
      },
      images: [`nginx=registry.example/web@${DIGEST}`],
    });
    expect(result.type).toBe('helm');
    const deployment = find(result.objects, 'Deployment', 'shop-web');
    expect((deployment?.spec as { replicas: number }).replicas).toBe(3);
    expect(images(deployment)).toEqual([`registry.example/web@${DIGEST}`]);
    expect(JSON.stringify(find(result.objects, 'Service'))).toContain('"port":8080');
    // Helm test hooks are not part of a deployment.
    expect(find(result.objects, 'Pod')).toBeUndefined();
    expect(result.unmatchedImages).toEqual([]);
  });

  test('inline values win over values files, as in Argo CD', async () => {
    const result = await render({
      workspace: ws,
      path: 'charts/web',
      helm: { valueFiles: ['values-prod.yaml'], values: 'replicaCount: 5\n' },
    });
    expect((find(result.objects, 'Deployment')?.spec as { replicas: number }).replicas).toBe(5);
  });

  test('a chart with CRDs, hooks and a local file:// dependency', async () => {
    await put({
      'charts/platform/Chart.yaml':
        'apiVersion: v2\nname: platform\nversion: 0.1.0\ndependencies:\n- name: common\n  version: 0.1.0\n  repository: file://../common\n',
      'charts/platform/crds/widget.yaml':
        'apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata: {name: widgets.acme.dev}\nspec:\n  group: acme.dev\n  names: {kind: Widget, plural: widgets}\n  scope: Namespaced\n  versions: [{name: v1, served: true, storage: true, schema: {openAPIV3Schema: {type: object}}}]\n',
      'charts/platform/templates/migrate-job.yaml':
        'apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: {{ .Release.Name }}-migrate\n  annotations: {"helm.sh/hook": pre-install, "helm.sh/hook-delete-policy": hook-succeeded}\nspec: {template: {spec: {restartPolicy: Never, containers: [{name: m, image: ghcr.io/acme/api:1.0}]}}}\n',
      'charts/common/Chart.yaml': 'apiVersion: v2\nname: common\nversion: 0.1.0\n',
      'charts/common/templates/cm.yaml':
        'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: common-settings}\n',
    });
    const result = await render({ workspace: ws, path: 'charts/platform', helm: { releaseName: 'p' } });
    expect(find(result.objects, 'CustomResourceDefinition', 'widgets.acme.dev')).toBeDefined();
    expect(find(result.objects, 'ConfigMap', 'common-settings')).toBeDefined();
    const job = find(result.objects, 'Job', 'p-migrate');
    expect((job?.metadata.annotations as Record<string, string>)['helm.sh/hook']).toBe('pre-install');
    expect(toStream(result.objects).indexOf('CustomResourceDefinition')).toBeLessThan(
      toStream(result.objects).indexOf('kind: Job'),
    );
  });

  test('a kustomize overlay with patches, a configMapGenerator and images, plus overrides on top', async () => {
    const result = await render({ workspace: ws, path: 'apps/prod', images: ['ghcr.io/acme/api:1.2'] });
    expect(result.type).toBe('kustomize');
    const d = find(result.objects, 'Deployment', 'api');
    expect(d?.metadata.namespace).toBe('prod');
    expect((d?.spec as { replicas: number }).replicas).toBe(4);
    expect(images(d)).toEqual(['ghcr.io/acme/api:1.2']);
    expect(result.imageChanges.map((c) => c.container).sort()).toEqual(['api', 'migrate']);
    expect(find(result.objects, 'ConfigMap')?.metadata.name).toMatch(/^api-config-[a-z0-9]{10}$/);
  });

  test('a plain directory, flat and recursive; an override matching nothing is reported', async () => {
    const flat = await render({ workspace: ws, path: 'plain', images: ['nothing-uses-this:1'] });
    expect(flat.type).toBe('directory');
    expect(flat.objects.map((o) => o.metadata.name)).toEqual(['a']);
    expect(flat.unmatchedImages).toEqual(['nothing-uses-this']);
    const deep = await render({ workspace: ws, path: 'plain', directory: { recurse: true } });
    expect(deep.objects.map((o) => o.metadata.name)).toEqual(['a', 'b']);
  });

  test('re-rendering the same input gives byte-identical output', async () => {
    const a = await render({ workspace: ws, path: 'charts/web', helm: { releaseName: 'x' } });
    const b = await render({ workspace: ws, path: 'charts/web', helm: { releaseName: 'x' } });
    expect(toStream(b.objects)).toBe(toStream(a.objects));
    const k1 = await render({ workspace: ws, path: 'apps/prod' });
    const k2 = await render({ workspace: ws, path: 'apps/prod' });
    expect(toStream(k2.objects)).toBe(toStream(k1.objects));
  });
});

describe('renderToPath: output and diff', () => {
  test('writes one file per object, reports changes, and removes what is gone', async () => {
    const first = await renderToPath({ workspace: ws, path: 'apps/prod', output: 'out/prod' });
    expect(first.changed).toBe(true);
    const files = (await readdir(join(ws, 'out/prod'))).sort();
    expect(files).toEqual(
      [
        'configmap-' + first.render.objects.find((o) => o.kind === 'ConfigMap')!.metadata.name + '.yaml',
        'deployment-api.yaml',
        'service-api.yaml',
      ].sort(),
    );

    const again = await renderToPath({ workspace: ws, path: 'apps/prod', output: 'out/prod' });
    expect(again.changed).toBe(false);
    expect(again.plan.unchanged).toHaveLength(3);

    const bumped = await renderToPath({
      workspace: ws,
      path: 'apps/prod',
      output: 'out/prod',
      images: ['ghcr.io/acme/api:2.0'],
    });
    expect(bumped.plan.changed).toEqual(['deployment-api.yaml']);
    expect(await readFile(join(ws, 'out/prod/deployment-api.yaml'), 'utf8')).toContain(
      'image: ghcr.io/acme/api:2.0',
    );

    // Only the Deployment is left: the Service and generated ConfigMap files must go.
    const deployment = await readFile(join(ws, 'apps/base/deployment.yaml'), 'utf8');
    await put({
      'apps/prod/deployment.yaml': deployment,
      'apps/prod/kustomization.yaml': 'namespace: prod\nresources: [deployment.yaml]\n',
    });
    const shrunk = await renderToPath({ workspace: ws, path: 'apps/prod', output: 'out/prod' });
    expect(shrunk.plan.removed.sort()).toEqual([files[0], 'service-api.yaml'].sort());
    expect(await readdir(join(ws, 'out/prod'))).toEqual(['deployment-api.yaml']);
  });

  test('a dry run reports the diff and writes nothing', async () => {
    const result = await renderToPath({
      workspace: ws,
      path: 'plain',
      output: 'out/dry.yaml',
      mode: 'stream',
      dryRun: true,
    });
    expect(result.plan.added).toEqual(['out/dry.yaml']);
    await expect(readFile(join(ws, 'out/dry.yaml'))).rejects.toThrow();
  });
});

describe('render: bad input gets a clear error and writes nothing', () => {
  const output = 'out/bad';
  beforeAll(async () => {
    await put({ [`${output}/keep.yaml`]: 'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: keep}\n' });
  });
  async function expectNothingWritten(): Promise<void> {
    expect(await readdir(join(ws, output))).toEqual(['keep.yaml']);
  }

  test.each([
    [
      'invalid YAML',
      { 'bad/yaml/x.yaml': 'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: [oops\n' },
      'bad/yaml',
      ManifestError,
      /bad\/yaml\/x\.yaml:\d+: /,
    ],
    ['a missing chart', {}, 'bad/no-such-chart', PathEscapeError, /does not exist/],
    [
      'a kustomize error',
      { 'bad/kust/kustomization.yaml': 'resources: [missing.yaml]\n' },
      'bad/kust',
      RenderError,
      /kustomize build failed: .*missing\.yaml/,
    ],
    [
      'a helm template error',
      {
        'bad/chart/Chart.yaml': 'apiVersion: v2\nname: c\nversion: 0.1.0\n',
        'bad/chart/templates/x.yaml': '{{ .Values.nope.deeper }}\n',
      },
      'bad/chart',
      RenderError,
      /helm template failed: [\s\S]*<\.Values\.nope\.deeper>: *\n *nil pointer/,
    ],
    [
      'duplicate objects',
      {
        'bad/dup/a.yaml': 'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: same}\n',
        'bad/dup/b.yaml': 'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: same}\n',
      },
      'bad/dup',
      ManifestError,
      /duplicate ConfigMap "same" \(first defined at bad\/dup\/a\.yaml:1\)/,
    ],
    ['a path escape', {}, '../outside', PathEscapeError, /outside the workspace/],
    [
      'a remote kustomize base',
      { 'bad/remote/kustomization.yaml': 'resources: [https://github.com/acme/base//app?ref=v1]\n' },
      'bad/remote',
      RenderError,
      /remote kustomize bases are disabled/,
    ],
    [
      'a chart dependency from a repository',
      {
        'bad/repo-dep/Chart.yaml':
          'apiVersion: v2\nname: c\nversion: 0.1.0\ndependencies: [{name: redis, version: 1.0.0, repository: "https://charts.example.com"}]\n',
      },
      'bad/repo-dep',
      RenderError,
      /dependencies from repositories are disabled .*: redis from https:\/\/charts\.example\.com/,
    ],
  ])('%s', async (_name, files, path, type, message) => {
    await put(files);
    const err: unknown = await renderToPath({ workspace: ws, path, output }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(type);
    expect((err as Error).message).toMatch(message);
    await expectNothingWritten();
  });

  test('a symlink to a manifest inside the workspace is read as the file it points at', async () => {
    await mkdir(join(ws, 'linked'), { recursive: true });
    await symlink(join(ws, 'plain/a.yaml'), join(ws, 'linked/a.yaml'));
    await writeFile(join(ws, 'linked/own.yaml'), 'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: own}\n');
    const result = await render({ workspace: ws, path: 'linked' });
    expect(result.objects.map((o) => o.metadata.name)).toEqual(['a', 'own']);
    await rm(join(ws, 'linked'), { recursive: true, force: true });
  });

  test('a symlink out of the workspace is refused', async () => {
    const outside = await mkdtemp(join(tmpdir(), 'outside-'));
    await writeFile(
      join(outside, 'secret.yaml'),
      'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: stolen}\n',
    );
    await mkdir(join(ws, 'bad/link'), { recursive: true });
    await symlink(join(outside, 'secret.yaml'), join(ws, 'bad/link/secret.yaml'));
    await expect(renderToPath({ workspace: ws, path: 'bad/link', output })).rejects.toThrow(
      /symlink .* outside the workspace/,
    );
    await expect(renderToPath({ workspace: ws, path: 'plain', output: '../escape' })).rejects.toThrow(
      PathEscapeError,
    );
    await expectNothingWritten();
    await rm(outside, { recursive: true, force: true });
  });
});

describe('render cache (by input hash)', () => {
  test('re-runs kustomize only when something it reads changed, including a shared base', async () => {
    await put({
      'cached/base/kustomization.yaml': 'resources: [cm.yaml]\n',
      'cached/base/cm.yaml': 'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: shared}\ndata: {v: "1"}\n',
      'cached/app/kustomization.yaml': 'resources: [../base]\nnamePrefix: app-\n',
    });
    const cache = directoryCache(join(ws, '.render-cache'));
    const opts = { workspace: ws, path: 'cached/app', cache };
    expect((await render(opts)).toolInvocations).toBe(1);
    expect((await render(opts)).toolInvocations).toBe(0);
    // An image override is applied after the tool: still a hit.
    expect((await render({ ...opts, images: ['x:1'] })).toolInvocations).toBe(0);
    await put({
      'cached/base/cm.yaml': 'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: shared}\ndata: {v: "2"}\n',
    });
    const changed = await render(opts);
    expect(changed.toolInvocations).toBe(1);
    expect(JSON.stringify(changed.objects)).toContain('"v":"2"');
  });

  test('re-runs helm when a values file or a file:// dependency changes, not otherwise', async () => {
    const cache = directoryCache(join(ws, '.render-cache'));
    const opts = { workspace: ws, path: 'charts/platform', helm: { releaseName: 'p' }, cache };
    await render(opts);
    expect((await render(opts)).toolInvocations).toBe(0);
    await put({
      'charts/common/templates/cm.yaml':
        'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: common-settings-v2}\n',
    });
    const dep = await render(opts);
    expect(dep.toolInvocations).toBe(1);
    expect(dep.objects.map((o) => o.metadata.name)).toContain('common-settings-v2');
    expect((await render(opts)).toolInvocations).toBe(0);

    const web = { workspace: ws, path: 'charts/web', helm: { valueFiles: ['values-prod.yaml'] }, cache };
    await render(web);
    await put({ 'charts/web/values-prod.yaml': 'replicaCount: 7\n' });
    const bumped = await render(web);
    expect(bumped.toolInvocations).toBe(1);
    expect((bumped.objects.find((o) => o.kind === 'Deployment')?.spec as { replicas: number }).replicas).toBe(
      7,
    );
    expect((await render({ ...web, helm: { ...web.helm, set: ['replicaCount=8'] } })).toolInvocations).toBe(
      1,
    );
  });
});

describe('render: nothing outside the workspace is read or written', () => {
  let outside: string;
  beforeAll(async () => {
    outside = await mkdtemp(join(tmpdir(), 'outside-'));
    await writeFile(join(outside, 'secret.yaml'), 'apiVersion: v1\nkind: Secret\nmetadata: {name: stolen}\n');
    await writeFile(join(outside, 'kustomization.yaml'), 'resources: [secret.yaml]\n');
    await writeFile(join(outside, 'target.yaml'), 'untouched\n');
  });
  afterAll(() => rm(outside, { recursive: true, force: true }));

  test('a chart name that looks like a flag is refused before helm runs', async () => {
    await put({
      'evil/chart/Chart.yaml': 'apiVersion: v2\nname: --output-dir=..\nversion: 0.1.0\n',
      'evil/chart/templates/cm.yaml': 'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n',
    });
    await expect(render({ workspace: ws, path: 'evil/chart' })).rejects.toThrow(
      /invalid Helm release name "--output-dir=\.\."/,
    );
    await expect(readdir(join(ws, 'evil'))).resolves.toEqual(['chart']);
  });

  test('a kustomize base outside the workspace, by .. or by symlink, is refused', async () => {
    const rel = relative(join(ws, 'evil/kbase'), outside);
    await put({ 'evil/kbase/kustomization.yaml': `resources: [${rel}]\n` });
    await expect(render({ workspace: ws, path: 'evil/kbase' })).rejects.toThrow(
      /kustomize base .* outside the workspace/,
    );
    await mkdir(join(ws, 'evil/klink'), { recursive: true });
    await symlink(outside, join(ws, 'evil/klink/base'));
    await put({ 'evil/klink/kustomization.yaml': 'resources: [base]\n' });
    await expect(render({ workspace: ws, path: 'evil/klink' })).rejects.toThrow(
      /symlink .* outside the workspace/,
    );
  });

  test('a chart whose templates symlink out of the workspace is refused', async () => {
    await put({ 'evil/hchart/Chart.yaml': 'apiVersion: v2\nname: h\nversion: 0.1.0\n' });
    await mkdir(join(ws, 'evil/hchart/templates'), { recursive: true });
    await symlink(join(outside, 'secret.yaml'), join(ws, 'evil/hchart/templates/secret.yaml'));
    await expect(render({ workspace: ws, path: 'evil/hchart' })).rejects.toThrow(/outside the workspace/);
  });

  test('a symlink already in the output directory is replaced, not written through', async () => {
    await mkdir(join(ws, 'out/linked'), { recursive: true });
    await symlink(join(outside, 'target.yaml'), join(ws, 'out/linked/configmap-a.yaml'));
    await renderToPath({ workspace: ws, path: 'plain', output: 'out/linked' });
    expect(await readFile(join(outside, 'target.yaml'), 'utf8')).toBe('untouched\n');
    expect((await lstat(join(ws, 'out/linked/configmap-a.yaml'))).isSymbolicLink()).toBe(false);
  });

  test('a change in a transformers directory invalidates the cache', async () => {
    await put({
      'tx/app/kustomization.yaml': 'resources: [cm.yaml]\ntransformers: [../labels]\n',
      'tx/app/cm.yaml': 'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n',
      'tx/labels/kustomization.yaml': 'resources: [labels.yaml]\n',
      'tx/labels/labels.yaml':
        'apiVersion: builtin\nkind: LabelTransformer\nmetadata: {name: l}\nlabels: {team: a}\nfieldSpecs: [{path: metadata/labels, create: true}]\n',
    });
    const cache = directoryCache(join(ws, '.render-cache'));
    const first = await render({ workspace: ws, path: 'tx/app', cache });
    expect(first.objects[0]!.metadata.labels).toEqual({ team: 'a' });
    await put({
      'tx/labels/labels.yaml':
        'apiVersion: builtin\nkind: LabelTransformer\nmetadata: {name: l}\nlabels: {team: b}\nfieldSpecs: [{path: metadata/labels, create: true}]\n',
    });
    const second = await render({ workspace: ws, path: 'tx/app', cache });
    expect(second.toolInvocations).toBe(1);
    expect(second.objects[0]!.metadata.labels).toEqual({ team: 'b' });
  });
});
