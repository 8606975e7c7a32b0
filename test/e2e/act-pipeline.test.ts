// The pipeline as a real workflow runner runs it: nektos/act (built from its Go module) runs
// workflows/build-and-deploy.yml, unchanged, for a push to main of an app repository, in host mode
// (no container engine here). `uses: kube-actions/kube-actions/<action>@v1` resolves to this
// checkout's actions (--local-repository), and actions/checkout to a local stand-in that clones
// from the test git server (no internet here: test/e2e/act/checkout). GITHUB_SERVER_URL points at
// the git server, GITHUB_API_URL at the GitHub stand-in, the image goes to the test registry
// through BuildKit, and the controller (a process, pods on kwok nodes) syncs the GitOps
// repository's staging overlay. The run: the image built and pushed; staging promoted by a commit
// the controller syncs, and the workflow's gate passing once the Rollout runs the image;
// production promoted through a pull request. Then promote-image.yml as a workflow_dispatch with
// inputs, and with a bad input that fails with the action's message.
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { execFile, spawn } from 'node:child_process';
import { cp, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { stringify } from 'yaml';
import { KubeClient } from '../../src/core/kube/client.ts';
import { ROLLOUT, type Rollout } from '../../src/controller/rollout/types.ts';
import { APPLICATION } from '../../src/controller/sync/types.ts';
import { pushBusyboxBase } from '../cluster/base-images.ts';
import { BuildKit, buildKitUnavailableReason, builtBinaries } from '../cluster/buildkit.ts';
import { startControllerProcess, type ControllerProcess } from '../cluster/controller-process.ts';
import { installCRDs } from '../cluster/crds.ts';
import { GitHubStandIn } from '../cluster/github-api.ts';
import { GitServer } from '../cluster/git-server.ts';
import { OciRegistry } from '../cluster/registry.ts';
import { NODE24 } from '../cluster/run-action.ts';
import { eventually, useTestNamespace } from '../cluster/testing.ts';

const run = promisify(execFile);
const ROOT = resolve(import.meta.dirname, '..', '..');
const CHECKOUT_STAND_IN = join(import.meta.dirname, 'act', 'checkout');
const ACTIONS = ['build', 'render', 'promote', 'dispatch', 'setup'];
const TOKEN = 'ghs_' + 'c4'.repeat(18);
const BOT = { login: 'kube-actions[bot]', id: 41898282, type: 'Bot' as const };

const unavailable = await buildKitUnavailableReason();
if (unavailable) console.warn(`skipping the act pipeline: ${unavailable}`);
const describeAct = unavailable ? describe.skip : describe;

const ns = useTestNamespace('e2e-act');
let work: string;
let git: GitServer;
let github: GitHubStandIn;
let registry: OciRegistry;
let buildkit: BuildKit;
let controller: ControllerProcess;
let client: KubeClient;
let act: string;
let image: string;

/** The GitOps repository: apps/app with a canary Rollout, staging deployed to the test namespace. */
function gitopsFiles(namespace: string): Record<string, string> {
  const overlay = (ns: string) =>
    stringify({
      apiVersion: 'kustomize.config.k8s.io/v1beta1',
      kind: 'Kustomization',
      namespace: ns,
      resources: ['../../base'],
      images: [{ name: image, newTag: 'initial' }],
    });
  return {
    'apps/app/base/kustomization.yaml': stringify({ resources: ['rollout.yaml'] }),
    'apps/app/base/rollout.yaml': stringify({
      apiVersion: 'kube-actions.dev/v1alpha1',
      kind: 'Rollout',
      metadata: { name: 'app' },
      spec: {
        replicas: 2,
        selector: { matchLabels: { app: 'app' } },
        template: {
          metadata: { labels: { app: 'app' } },
          spec: { containers: [{ name: 'app', image: `${image}:initial` }] },
        },
        strategy: { canary: { steps: [{ setWeight: 50 }, { pause: { duration: '1s' } }] } },
      },
    }),
    'apps/app/overlays/staging/kustomization.yaml': overlay(namespace),
    'apps/app/overlays/production/kustomization.yaml': overlay(`${namespace}-production`),
  };
}

/** A file of `repo` at `ref`, read from a fresh clone. */
async function show(repo: string, path: string, ref = 'main'): Promise<string> {
  const dir = await mkdtemp(join(work, 'show-'));
  await run('git', ['clone', '--quiet', git.url(repo), dir]);
  const { stdout } = await run('git', ['-C', dir, 'show', `${ref}:${path}`]);
  await rm(dir, { recursive: true, force: true });
  return stdout;
}

/** act with this run's servers, in a fresh clone of acme/app; resolves with its exit code and log. */
async function runAct(
  args: string[],
  inputs: Record<string, string> = {},
): Promise<{ code: number; log: string }> {
  const checkout = await mkdtemp(join(work, 'app-'));
  await run('git', ['clone', '--quiet', git.url('acme/app'), checkout]);
  const event = join(work, `event-${Date.now()}.json`);
  await writeFile(
    event,
    JSON.stringify({
      ref: 'refs/heads/main',
      repository: { name: 'app', full_name: 'acme/app', owner: { login: 'acme' } },
      // act takes a workflow_dispatch's inputs from the event when one is given.
      ...(Object.keys(inputs).length ? { inputs } : {}),
    }),
  );
  const child = spawn(
    act,
    [
      ...args,
      '-e',
      event,
      '-P',
      'ubuntu-24.04=-self-hosted',
      // The git server's host, so that act reads owner/name from the clone's remote.
      '--github-instance',
      new URL(git.baseUrl).host,
      '--local-repository',
      `kube-actions/kube-actions@v1=${join(work, 'actions')}`,
      '--local-repository',
      `actions/checkout@v5=${CHECKOUT_STAND_IN}`,
      '--env',
      `GITHUB_SERVER_URL=${git.baseUrl}`,
      '--env',
      `GITHUB_API_URL=${github.apiURL}`,
      '--env',
      `BUILDKIT_HOST=${buildkit.address}`,
      '--var',
      `IMAGE=${image}`,
      '--var',
      'GITOPS_REPOSITORY=acme/gitops',
      '--var',
      'APP=app',
      '--var',
      `STAGING_NAMESPACE=${ns.name}`,
      // Values from the environment below: a kubeconfig spans lines.
      '-s',
      'GITOPS_TOKEN',
      '-s',
      'STAGING_KUBECONFIG',
      '--action-cache-path',
      join(work, 'act-cache'),
      // act's cache server would listen on an outside address; the workflows use no cache.
      '--no-cache-server',
    ],
    {
      cwd: checkout,
      env: {
        // Host mode runs actions with the first `node` on PATH: the pinned Node 24.
        PATH: [dirname(NODE24), dirname(buildkit.buildctl), process.env.PATH].join(':'),
        HOME: process.env.HOME,
        GITOPS_TOKEN: TOKEN,
        STAGING_KUBECONFIG: await readFile(process.env.KUBECONFIG!, 'utf8'),
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let log = '';
  child.stdout.on('data', (d: Buffer) => (log += d.toString()));
  child.stderr.on('data', (d: Buffer) => (log += d.toString()));
  const code = await new Promise<number>((r) => child.on('exit', (c) => r(c ?? 1)));
  return { code, log };
}

const failure = (what: string, log: string) => `${what}; act's log:\n${log.slice(-6000)}`;

beforeAll(async () => {
  if (unavailable) return;
  work = await mkdtemp(join(tmpdir(), 'e2e-act-'));
  act = join(await builtBinaries(['act'], ['act']), 'act');
  // The actions as a repository would hold them: action.yml and the bundle, nothing else
  // (act copies the folder for each use).
  for (const name of ACTIONS) {
    await mkdir(join(work, 'actions', name), { recursive: true });
    await cp(join(ROOT, name, 'action.yml'), join(work, 'actions', name, 'action.yml'));
    await cp(join(ROOT, name, 'dist'), join(work, 'actions', name, 'dist'), { recursive: true });
  }
  registry = await OciRegistry.start();
  buildkit = await BuildKit.start({ registries: [registry.host] });
  const base = await pushBusyboxBase(registry, 'base/busybox', 'v1');
  image = `${registry.host}/acme/app`;
  git = await GitServer.start();
  await git.createRepo('acme/app', {
    '.github/workflows/build-and-deploy.yml': await readFile(
      join(ROOT, 'workflows', 'build-and-deploy.yml'),
      'utf8',
    ),
    '.github/workflows/promote-image.yml': await readFile(
      join(ROOT, 'workflows', 'promote-image.yml'),
      'utf8',
    ),
    Dockerfile: `FROM ${base.reference}\nCOPY hello.txt /hello.txt\n`,
    'hello.txt': 'hello from acme/app\n',
    // promote-image.yml renders the app repository's own gitops/ directory.
    ...Object.fromEntries(
      Object.entries({
        'apps/guestbook/overlays/staging/kustomization.yaml': stringify({
          resources: ['deployment.yaml'],
          images: [{ name: 'ghcr.io/acme/guestbook', newTag: '1.0.0' }],
        }),
        'apps/guestbook/overlays/staging/deployment.yaml': stringify({
          apiVersion: 'apps/v1',
          kind: 'Deployment',
          metadata: { name: 'guestbook' },
          spec: {
            selector: { matchLabels: { app: 'guestbook' } },
            template: {
              metadata: { labels: { app: 'guestbook' } },
              spec: { containers: [{ name: 'guestbook', image: 'ghcr.io/acme/guestbook:1.0.0' }] },
            },
          },
        }),
      }).map(([path, text]) => [`gitops/${path}`, text]),
    ),
  });
  await git.createRepo('acme/gitops', gitopsFiles(ns.name));
  github = await GitHubStandIn.start(git, { [TOKEN]: BOT });
  await installCRDs(ns.kc);
  client = new KubeClient(ns.kc);
  // Git is polled every 2 s: the workflow sends no webhook.
  controller = await startControllerProcess([
    'controller',
    '--leader-elect=false',
    `--namespace=${ns.name}`,
    '--poll-interval=2s',
  ]);
  await client.create(APPLICATION, {
    apiVersion: APPLICATION.apiVersion,
    kind: 'Application',
    metadata: { name: 'app-staging', namespace: ns.name },
    spec: {
      source: { repoURL: git.url('acme/gitops'), targetRevision: 'main', path: 'apps/app/overlays/staging' },
      destination: { server: 'https://kubernetes.default.svc', namespace: ns.name },
      syncPolicy: { automated: { prune: true, selfHeal: true } },
    },
  } as never);
  await eventually(
    'the initial Rollout healthy',
    async () =>
      (await client.get<Rollout>(ROLLOUT, ns.name, 'app')).status?.phase === 'Healthy' ? true : undefined,
    120_000,
  );
}, 600_000);

afterAll(async () => {
  // Every part is stopped even when one fails to: a server left running keeps jest from exiting.
  const results = await Promise.allSettled([
    controller?.stop(),
    client?.close(),
    github?.stop(),
    git?.stop(),
    buildkit?.stop(),
    registry?.stop(),
  ]);
  if (work) await rm(work, { recursive: true, force: true, maxRetries: 10, retryDelay: 100 });
  const failed = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed.length)
    throw new AggregateError(
      failed.map((r) => r.reason as Error),
      'cleanup failed',
    );
});

describeAct('act runs the ready-to-copy workflows', () => {
  test('build-and-deploy.yml on a push to main: image pushed, staging synced and gated, production by pull request', async () => {
    const { code, log } = await runAct(['push', '-W', '.github/workflows/build-and-deploy.yml']);
    if (code !== 0) throw new Error(failure(`act exited ${code}`, log));

    // build: pushed by digest and tagged by the metadata rules (branch, short sha).
    const sha = (await git.revParse('acme/app')).slice(0, 7);
    const tags = await fetch(`http://${registry.host}/v2/acme/app/tags/list`).then(
      (r) => r.json() as Promise<{ tags: string[] }>,
    );
    expect(tags.tags.sort()).toEqual(['main', `sha-${sha}`]);
    const manifest = await fetch(`http://${registry.host}/v2/acme/app/manifests/main`, {
      method: 'HEAD',
      headers: {
        accept: 'application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json',
      },
    });
    const digest = manifest.headers.get('docker-content-digest');
    // staging: the overlay pins the digest, the controller synced it, and the gate saw it healthy.
    const staging = await show('acme/gitops', 'apps/app/overlays/staging/kustomization.yaml');
    const pinned = /digest: (sha256:[0-9a-f]{64})/.exec(staging)?.[1];
    expect(pinned).toBe(digest);
    const ro = await client.get<Rollout>(ROLLOUT, ns.name, 'app');
    expect(ro.spec.template?.spec?.containers?.[0]?.image).toBe(`${image}@${pinned}`);
    // The gate waited through the canary's timed pause to the end of its steps.
    expect(log).toMatch(
      /Gate on the staging rollout[\s\S]*\| Healthy\n[\s\S]*Success - Main Gate on the staging rollout/,
    );
    // production: a pull request against the GitOps repository, carrying the same digest.
    const pulls = github.pullRequests().filter((p) => p.repo === 'gitops');
    expect(pulls).toHaveLength(1);
    const production = await show(
      'acme/gitops',
      'apps/app/overlays/production/kustomization.yaml',
      `origin/${pulls[0]!.head}`,
    );
    expect(production).toContain(`digest: ${pinned}`);
    expect(await show('acme/gitops', 'apps/app/overlays/production/kustomization.yaml')).toContain(
      'newTag: initial',
    );
  });

  test('promote-image.yml as a workflow_dispatch with inputs renders and lands the image', async () => {
    const wanted = `ghcr.io/acme/guestbook@sha256:${'7'.repeat(64)}`;
    const { code, log } = await runAct(['workflow_dispatch', '-W', '.github/workflows/promote-image.yml'], {
      environment: 'staging',
      image: wanted,
    });
    if (code !== 0) throw new Error(failure(`act exited ${code}`, log));
    const landed = await show('acme/gitops', 'clusters/staging/guestbook/deployment-guestbook.yaml');
    expect(landed).toContain(`image: ${wanted}`);
  });

  test('a bad input fails the job with the action’s own message', async () => {
    const { code, log } = await runAct(['workflow_dispatch', '-W', '.github/workflows/promote-image.yml'], {
      environment: 'staging',
      image: 'ghcr.io/acme/guestbook@sha256:not-a-digest',
    });
    expect(code).not.toBe(0);
    expect(log).toMatch(/invalid image override "ghcr\.io\/acme\/guestbook@sha256:not-a-digest"/);
  });
});
