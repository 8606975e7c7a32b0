// The analysis controller against the real control plane: AnalysisRuns measured by the controller
// as it ships (a Manager with informers and timed requeues), with web metrics served by a local
// HTTP server, prometheus metrics by a real Prometheus (Debian's) scraping that server, and job
// metrics by Jobs that the cluster's job controller and kwok complete.
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { KubeClient, isNotFound } from '../../src/core/kube/client.ts';
import { Logger } from '../../src/controller/runtime/log.ts';
import { Manager } from '../../src/controller/runtime/manager.ts';
import { setupAnalysisController } from '../../src/controller/analysis/controller.ts';
import {
  createAnalysisRun,
  terminateAnalysisRun,
  TemplateError,
} from '../../src/controller/analysis/templates.ts';
import {
  ANALYSIS_RUN,
  ANALYSIS_TEMPLATE,
  CLUSTER_ANALYSIS_TEMPLATE,
  JOB_RUN_UID_LABEL,
  JOBS,
  type AnalysisPhase,
  type AnalysisRun,
  type Metric,
} from '../../src/controller/analysis/types.ts';
import { installCRDs } from '../cluster/crds.ts';
import { Prometheus } from '../cluster/prometheus.ts';
import { eventually, useTestNamespace } from '../cluster/testing.ts';

const ns = useTestNamespace('analysis');
const ERROR_RETRY_MS = 300;
let client: KubeClient;
let manager: Manager;
let http: Server;
let base: string;

/** What the test server answers on a path, and the requests it got. */
interface Route {
  respond: (req: IncomingMessage, body: string) => { status?: number; body: unknown; contentType?: string };
  requests: Array<{ at: number; headers: IncomingMessage['headers']; body: string }>;
}
const routes = new Map<string, Route>();
function route(path: string, respond: Route['respond']): Route {
  const r: Route = { respond, requests: [] };
  routes.set(path, r);
  return r;
}

function startManager(): Manager {
  const m = new Manager({ kubeConfig: ns.kc, logger: new Logger({ sink: () => undefined, level: 'error' }) });
  setupAnalysisController(m, { namespace: ns.name, errorRetryIntervalMs: ERROR_RETRY_MS });
  return m;
}

beforeAll(async () => {
  await installCRDs(ns.kc);
  client = new KubeClient(ns.kc);
  http = createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      const path = (req.url ?? '/').split('?')[0]!;
      const r = routes.get(path);
      if (!r) {
        res.writeHead(404).end();
        return;
      }
      r.requests.push({ at: Date.now(), headers: req.headers, body });
      const out = r.respond(req, body);
      res
        .writeHead(out.status ?? 200, { 'content-type': out.contentType ?? 'application/json' })
        .end(typeof out.body === 'string' ? out.body : JSON.stringify(out.body));
    });
  });
  await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(http.address() as AddressInfo).port}`;
  manager = startManager();
  await manager.start();
});

afterAll(async () => {
  await manager?.stop();
  await client?.delete(CLUSTER_ANALYSIS_TEMPLATE, '', `${ns.name}-cluster`).catch(() => undefined);
  await client?.close();
  await new Promise((resolve) => http?.close(resolve));
});

async function getRun(name: string): Promise<AnalysisRun | undefined> {
  try {
    return await client.get<AnalysisRun>(ANALYSIS_RUN, ns.name, name);
  } catch (err) {
    if (isNotFound(err)) return undefined;
    throw err;
  }
}

async function createRun(
  name: string,
  metrics: Metric[],
  spec: Partial<AnalysisRun['spec']> = {},
): Promise<void> {
  await client.create<AnalysisRun>(ANALYSIS_RUN, {
    apiVersion: 'kube-actions.dev/v1alpha1',
    kind: 'AnalysisRun',
    metadata: { name, namespace: ns.name },
    spec: { metrics, ...spec },
  });
}

/** Waits until the run's phase is one of `phases`; on timeout, says where it stood. */
async function waitForPhase(name: string, phases: AnalysisPhase[], timeoutMs = 30_000): Promise<AnalysisRun> {
  try {
    return await eventually(
      `${name} to be ${phases.join(' or ')}`,
      async () => {
        const run = await getRun(name);
        return run?.status?.phase && phases.includes(run.status.phase) ? run : undefined;
      },
      timeoutMs,
    );
  } catch (err) {
    const status = JSON.stringify((await getRun(name))?.status ?? null);
    throw new Error(`${(err as Error).message}\nlast status: ${status.slice(0, 3000)}`, { cause: err });
  }
}

const gaps = (run: AnalysisRun, metric: string) => {
  const list = run.status!.metricResults!.find((r) => r.name === metric)!.measurements!;
  return list.slice(1).map((m, i) => Date.parse(m.startedAt!) - Date.parse(list[i]!.finishedAt!));
};

describe('web metrics', () => {
  test('success: Successful after `count` measurements, one interval apart, each taken once', async () => {
    const r = route('/ok', () => ({ body: { data: { ok: true, rate: 0.99 } } }));
    await createRun('web-ok', [
      {
        name: 'ok',
        interval: '1s',
        count: 3,
        successCondition: 'result.ok == true && result.rate > 0.9',
        provider: { web: { url: `${base}/ok`, jsonPath: '{$.data}' } },
      },
    ]);
    const run = await waitForPhase('web-ok', ['Successful', 'Failed', 'Error', 'Inconclusive']);
    expect(run.status!.phase).toBe('Successful');
    expect(r.requests).toHaveLength(3);
    const result = run.status!.metricResults![0]!;
    expect(result).toMatchObject({ phase: 'Successful', count: 3, successful: 3, failed: 0 });
    expect(result.measurements!.map((m) => m.value)).toEqual(Array(3).fill('{"ok":true,"rate":0.99}'));
    // The interval is honoured (how promptly each one follows is measured in bench/, not here).
    for (const gap of gaps(run, 'ok')) expect(gap).toBeGreaterThanOrEqual(990);
    expect(run.status!.completedAt).toBeDefined();
  });

  test('failure: the value flips and the run fails on the measurement that exceeds failureLimit', async () => {
    let n = 0;
    const r = route('/rate', () => ({ body: { rate: ++n <= 2 ? '0.95' : '0.5' } }));
    await createRun('web-fail', [
      {
        name: 'rate',
        interval: '1s',
        failureLimit: 1,
        successCondition: 'asFloat(result) >= 0.9',
        provider: { web: { url: `${base}/rate`, jsonPath: '{$.rate}' } },
      },
    ]);
    const run = await waitForPhase('web-fail', ['Successful', 'Failed', 'Error', 'Inconclusive']);
    expect(run.status!.phase).toBe('Failed');
    expect(run.status!.message).toBe('Metric "rate" assessed Failed due to failed (2) > failureLimit (1)');
    const result = run.status!.metricResults![0]!;
    expect(result).toMatchObject({ phase: 'Failed', count: 4, successful: 2, failed: 2 });
    // No measurement after the one that failed the metric, and the run ended with it.
    expect(r.requests).toHaveLength(4);
    const last = result.measurements!.at(-1)!;
    expect(Date.parse(run.status!.completedAt!)).toBeGreaterThanOrEqual(Date.parse(last.finishedAt!));
  });

  test('error: a server answering 500 makes the run Error after consecutiveErrorLimit + 1 errors, retried quickly', async () => {
    const r = route('/broken', () => ({ status: 500, body: 'oops' }));
    await createRun('web-error', [
      {
        name: 'broken',
        interval: '1m',
        successCondition: 'result == 1',
        provider: { web: { url: `${base}/broken` } },
      },
    ]);
    const run = await waitForPhase('web-error', ['Successful', 'Failed', 'Error', 'Inconclusive']);
    expect(run.status!.phase).toBe('Error');
    expect(run.status!.message).toBe(
      'Metric "broken" assessed Error due to consecutiveErrors (5) > consecutiveErrorLimit (4): "Error Message: received non 2xx response code: 500"',
    );
    expect(r.requests).toHaveLength(5);
    // Errors are retried after the error retry interval, not the metric's 1m interval.
    for (const gap of gaps(run, 'broken')) expect(gap).toBeGreaterThanOrEqual(ERROR_RETRY_MS - 10);
  });

  test('inconclusive: neither condition holds', async () => {
    route('/middle', () => ({ body: { v: 5 } }));
    await createRun('web-inconclusive', [
      {
        name: 'middle',
        successCondition: 'result > 10',
        failureCondition: 'result < 1',
        provider: { web: { url: `${base}/middle`, jsonPath: '{$.v}' } },
      },
    ]);
    const run = await waitForPhase('web-inconclusive', ['Successful', 'Failed', 'Error', 'Inconclusive']);
    expect(run.status!.phase).toBe('Inconclusive');
    expect(run.status!.metricResults![0]).toMatchObject({ inconclusive: 1, measurements: [{ value: '5' }] });
  });

  test('unsupported provider: Error at once with the reason', async () => {
    await createRun('unsupported', [{ name: 'dd', provider: { datadog: { query: 'avg:x' } } }]);
    const run = await waitForPhase('unsupported', ['Successful', 'Failed', 'Error', 'Inconclusive']);
    expect(run.status).toMatchObject({
      phase: 'Error',
      message:
        'Analysis spec invalid: metrics[0]: provider "datadog" is not supported by kube-actions (supported: prometheus, web, job, githubWorkflow)',
    });
  });
});

describe('prometheus metrics', () => {
  let prometheus: Prometheus;
  beforeAll(async () => {
    // What Prometheus scrapes from the test server: a gauge per service.
    route('/metrics', () => ({
      contentType: 'text/plain; version=0.0.4',
      body: ['# TYPE ok_ratio gauge', 'ok_ratio{svc="api"} 0.99', 'ok_ratio{svc="web"} 0.5', ''].join('\n'),
    }));
    prometheus = await Prometheus.start({ staticTargets: [new URL(base).host] });
    await eventually('Prometheus to hold a sample of the test server', async () =>
      (await prometheus.query('ok_ratio')).length === 2 ? true : undefined,
    );
  }, 60_000);
  afterAll(() => prometheus?.stop());

  const finished: AnalysisPhase[] = ['Successful', 'Failed', 'Error', 'Inconclusive'];

  test('a vector becomes an array of values; args are substituted into the query', async () => {
    await createRun(
      'prom-ok',
      [
        {
          name: 'success-rate',
          successCondition: 'result[0] >= 0.95',
          provider: {
            prometheus: { address: prometheus.url, query: 'sum(ok_ratio{svc="{{args.svc}}"})' },
          },
        },
      ],
      { args: [{ name: 'svc', value: 'api' }] },
    );
    const run = await waitForPhase('prom-ok', finished);
    expect(run.status!.phase).toBe('Successful');
    expect(run.status!.metricResults![0]).toMatchObject({
      metadata: { ResolvedPrometheusQuery: 'sum(ok_ratio{svc="api"})' },
      measurements: [{ phase: 'Successful', value: '[0.99]' }],
    });
  });

  test('a value outside the condition fails the metric', async () => {
    await createRun('prom-low', [
      {
        name: 'success-rate',
        successCondition: 'result[0] >= 0.95',
        provider: { prometheus: { address: prometheus.url, query: 'sum(ok_ratio{svc="web"})' } },
      },
    ]);
    const run = await waitForPhase('prom-low', finished);
    expect(run.status!.phase).toBe('Failed');
    expect(run.status!.metricResults![0]!.measurements![0]).toMatchObject({
      phase: 'Failed',
      value: '[0.5]',
    });
  });

  test('an empty result is an Error measurement, not a crash', async () => {
    await createRun('prom-empty', [
      {
        name: 'success-rate',
        successCondition: 'result[0] >= 0.95',
        consecutiveErrorLimit: 0,
        provider: { prometheus: { address: prometheus.url, query: 'ok_ratio{svc="nobody"}' } },
      },
    ]);
    const run = await waitForPhase('prom-empty', finished);
    expect(run.status!.phase).toBe('Error');
    const m = run.status!.metricResults![0]!.measurements![0]!;
    expect(m.phase).toBe('Error');
    expect(m.message).toMatch(
      /could not evaluate successCondition "result\[0\] >= 0.95": metric result is nil or empty/,
    );
  });

  test("a query Prometheus cannot parse is an Error measurement with Prometheus's reason", async () => {
    await createRun('prom-bad', [
      {
        name: 'success-rate',
        successCondition: 'result[0] >= 0.95',
        consecutiveErrorLimit: 0,
        provider: { prometheus: { address: prometheus.url, query: 'sum(ok_ratio' } },
      },
    ]);
    const run = await waitForPhase('prom-bad', finished);
    expect(run.status!.phase).toBe('Error');
    expect(run.status!.metricResults![0]!.measurements![0]!.message).toMatch(/bad_data.*parse error/);
  });
});

describe('job metrics', () => {
  test('a Job owned by the run, labelled with its uid; Successful when the Job completes', async () => {
    await createRun('job-ok', [
      {
        name: 'smoke',
        provider: {
          job: {
            metadata: { labels: { team: 'qa' } },
            spec: {
              backoffLimit: 0,
              template: {
                spec: {
                  restartPolicy: 'Never',
                  containers: [{ name: 'test', image: 'registry.example/smoke:1' }],
                },
              },
            },
          },
        },
      },
    ]);
    const running = await waitForPhase('job-ok', ['Running', 'Successful']);
    const run = await waitForPhase('job-ok', ['Successful', 'Failed', 'Error', 'Inconclusive'], 60_000);
    expect(run.status!.phase).toBe('Successful');
    const m = run.status!.metricResults![0]!.measurements![0]!;
    const jobName = m.metadata!['job-name']!;
    const job = await client.get<{
      metadata: {
        labels: Record<string, string>;
        ownerReferences: Array<{ uid: string; controller: boolean }>;
      };
    }>(JOBS, ns.name, jobName);
    expect(job.metadata.labels).toMatchObject({ team: 'qa', [JOB_RUN_UID_LABEL]: running.metadata.uid });
    expect(job.metadata.ownerReferences).toEqual([
      expect.objectContaining({ uid: running.metadata.uid, controller: true, kind: 'AnalysisRun' }),
    ]);
  });
});

describe('secrets', () => {
  test('a secretKeyRef arg authenticates the request and appears in no status or event', async () => {
    const SECRET = 'tok-9f8e7d6c5b4a';
    await client.create({ apiVersion: 'v1', resource: 'secrets' }, {
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: { name: 'api-token', namespace: ns.name },
      stringData: { token: SECRET },
    } as never);
    const r = route('/auth', (req) =>
      req.headers.authorization === `Bearer ${SECRET}` ? { body: { ok: true } } : { status: 401, body: {} },
    );
    await createRun(
      'secret-run',
      [
        {
          name: 'authed',
          successCondition: 'result == true',
          provider: {
            web: {
              url: `${base}/auth?t={{args.token}}`,
              headers: [{ key: 'Authorization', value: 'Bearer {{ args.token }}' }],
              jsonPath: '{$.ok}',
            },
          },
        },
        {
          // Its condition fails to evaluate, with the secret in the error message.
          name: 'leaky',
          consecutiveErrorLimit: 0,
          successCondition: 'result > "{{args.token}}"',
          provider: {
            web: {
              url: `${base}/auth`,
              headers: [{ key: 'Authorization', value: 'Bearer {{args.token}}' }],
              jsonPath: '{$.ok}',
            },
          },
        },
      ],
      { args: [{ name: 'token', valueFrom: { secretKeyRef: { name: 'api-token', key: 'token' } } }] },
    );
    const run = await waitForPhase('secret-run', ['Successful', 'Failed', 'Error', 'Inconclusive']);
    expect(r.requests[0]!.headers.authorization).toBe(`Bearer ${SECRET}`);
    expect(run.status!.metricResults!.find((x) => x.name === 'authed')!.phase).toBe('Successful');
    expect(run.status!.phase).toBe('Error');
    expect(run.status!.metricResults!.find((x) => x.name === 'leaky')!.measurements![0]!.message).toContain(
      'could not evaluate successCondition "result > "*****""',
    );
    expect(JSON.stringify(run.status)).not.toContain(SECRET);
    const events = await eventually('events about the run', async () => {
      const list = await client.request<{
        items: Array<{ note?: string; reason?: string; regarding?: { name?: string } }>;
      }>('GET', `/apis/events.k8s.io/v1/namespaces/${ns.name}/events`);
      const mine = list.items.filter((e) => e.regarding?.name === 'secret-run');
      return mine.some((e) => e.reason?.startsWith('AnalysisRun')) ? mine : undefined;
    });
    expect(JSON.stringify(events)).not.toContain(SECRET);
  });

  test('a job metric gets a secret argument as a reference to the Secret, never its value', async () => {
    const SECRET = 'job-tok-1a2b3c4d5e';
    await client.create({ apiVersion: 'v1', resource: 'secrets' }, {
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: { name: 'smoke-token', namespace: ns.name },
      stringData: { token: SECRET },
    } as never);
    await createRun(
      'job-secret',
      [
        {
          name: 'smoke',
          provider: {
            job: {
              spec: {
                backoffLimit: 0,
                template: {
                  spec: {
                    restartPolicy: 'Never',
                    containers: [
                      {
                        name: 'test',
                        image: 'registry.example/smoke:1',
                        command: ['smoke', '--token={{args.token}}', '--env={{args.env}}'],
                        env: [{ name: 'AUTH', value: 'Bearer {{args.token}}' }],
                      },
                    ],
                  },
                },
              },
            },
          },
        },
      ],
      {
        args: [
          { name: 'token', valueFrom: { secretKeyRef: { name: 'smoke-token', key: 'token' } } },
          { name: 'env', value: 'staging' },
        ],
      },
    );
    const run = await waitForPhase('job-secret', ['Running', 'Successful', 'Failed', 'Error']);
    const jobName = await eventually('the job named in the measurement', async () => {
      const r = await getRun('job-secret');
      return r?.status?.metricResults?.[0]?.measurements?.[0]?.metadata?.['job-name'];
    });
    const job = await client.get<{
      spec: { template: { spec: { containers: { command: string[]; env: unknown[] }[] } } };
    }>(JOBS, ns.name, jobName);
    expect(run.status?.phase).not.toBe('Error');
    expect(JSON.stringify(job)).not.toContain(SECRET);
    const container = job.spec.template.spec.containers[0]!;
    // The kubelet expands $(VAR) in command, args and env values from the Secret it reads.
    expect(container.command).toEqual(['smoke', '--token=$(KUBE_ACTIONS_ARG_TOKEN)', '--env=staging']);
    expect(container.env).toEqual([
      { name: 'KUBE_ACTIONS_ARG_TOKEN', valueFrom: { secretKeyRef: { name: 'smoke-token', key: 'token' } } },
      { name: 'AUTH', value: 'Bearer $(KUBE_ACTIONS_ARG_TOKEN)' },
    ]);
  });
});

describe('an opted-in Secret allowlist (--analysis-secrets=labelled)', () => {
  const allow = useTestNamespace('analysis-allow');
  let strict: Manager;
  const run = (name: string, secret: string) =>
    client.create<AnalysisRun>(ANALYSIS_RUN, {
      apiVersion: 'kube-actions.dev/v1alpha1',
      kind: 'AnalysisRun',
      metadata: { name, namespace: allow.name },
      spec: {
        args: [{ name: 'token', valueFrom: { secretKeyRef: { name: secret, key: 'token' } } }],
        metrics: [
          {
            name: 'authed',
            successCondition: 'result == true',
            provider: {
              web: {
                url: `${base}/allowlisted`,
                headers: [{ key: 'Authorization', value: 'Bearer {{args.token}}' }],
                jsonPath: '{$.ok}',
              },
            },
          },
        ],
      },
    });
  const finished = (name: string) =>
    eventually(`${name} finished`, async () => {
      const r = await client.get<AnalysisRun>(ANALYSIS_RUN, allow.name, name);
      return r.status?.phase && r.status.phase !== 'Running' && r.status.phase !== 'Pending' ? r : undefined;
    });

  beforeAll(async () => {
    strict = new Manager({
      kubeConfig: allow.kc,
      logger: new Logger({ sink: () => undefined, level: 'error' }),
    });
    setupAnalysisController(strict, { namespace: allow.name, secretPolicy: 'labelled' });
    await strict.start();
    for (const [name, labels] of [
      ['plain', {}],
      ['labelled', { 'kube-actions.dev/analysis-secret': 'true' }],
    ] as const) {
      await client.create({ apiVersion: 'v1', resource: 'secrets' }, {
        apiVersion: 'v1',
        kind: 'Secret',
        metadata: { name, namespace: allow.name, labels },
        stringData: { token: `token-of-${name}` },
      } as never);
    }
  });
  afterAll(() => strict?.stop());

  test('a labelled Secret is read; any other is refused with a message naming the label', async () => {
    const r = route('/allowlisted', (req) => ({
      body: { ok: req.headers.authorization === 'Bearer token-of-labelled' },
    }));
    await run('reads-labelled', 'labelled');
    expect((await finished('reads-labelled')).status?.phase).toBe('Successful');
    await run('reads-plain', 'plain');
    const refused = await finished('reads-plain');
    expect(refused.status?.phase).toBe('Error');
    expect(JSON.stringify(refused.status)).toContain(
      `secret ${allow.name}/plain is not labelled kube-actions.dev/analysis-secret=true`,
    );
    // The refused Secret's value was never sent.
    expect(r.requests.map((q) => q.headers.authorization)).toEqual(['Bearer token-of-labelled']);
  });
});

describe('templates and termination', () => {
  test('createAnalysisRun merges a namespaced and a cluster template; terminate ends an endless run', async () => {
    const r = route('/tmpl', () => ({ body: { v: 1 } }));
    await client.create(ANALYSIS_TEMPLATE, {
      apiVersion: 'kube-actions.dev/v1alpha1',
      kind: 'AnalysisTemplate',
      metadata: { name: 'endless', namespace: ns.name },
      spec: {
        args: [{ name: 'path' }],
        metrics: [
          {
            name: 'endless',
            interval: '500ms',
            successCondition: 'result == 1',
            provider: { web: { url: `${base}{{args.path}}`, jsonPath: '{$.v}' } },
          },
        ],
      },
    } as never);
    await client.create(CLUSTER_ANALYSIS_TEMPLATE, {
      apiVersion: 'kube-actions.dev/v1alpha1',
      kind: 'ClusterAnalysisTemplate',
      metadata: { name: `${ns.name}-cluster` },
      spec: {
        args: [{ name: 'path', value: '/tmpl' }],
        metrics: [{ name: 'once', provider: { web: { url: `${base}/tmpl`, jsonPath: '{$.v}' } } }],
      },
    } as never);
    // A real owner: the garbage collector deletes a run whose owner does not exist.
    const ownerObject = await client.create<{ metadata: { name: string; namespace: string; uid?: string } }>(
      { apiVersion: 'v1', resource: 'configmaps' },
      { metadata: { name: 'owner', namespace: ns.name } },
    );
    const owner = { apiVersion: 'v1', kind: 'ConfigMap', name: 'owner', uid: ownerObject.metadata.uid! };
    const created = await createAnalysisRun(client, {
      namespace: ns.name,
      name: 'from-templates',
      owner,
      templates: [{ templateName: 'endless' }, { templateName: `${ns.name}-cluster`, clusterScope: true }],
      labels: { 'rollouts-pod-template-hash': 'abc' },
    });
    expect(created.spec.metrics.map((m) => m.name)).toEqual(['endless', 'once']);
    expect(created.spec.args).toEqual([{ name: 'path', value: '/tmpl' }]);
    // Creating again (a retried reconcile) returns the same run.
    const again = await createAnalysisRun(client, {
      namespace: ns.name,
      name: 'from-templates',
      owner,
      templates: [{ templateName: 'endless' }, { templateName: `${ns.name}-cluster`, clusterScope: true }],
    });
    expect(again.metadata.uid).toBe(created.metadata.uid);
    await expect(
      createAnalysisRun(client, {
        namespace: ns.name,
        name: 'dup',
        templates: [{ templateName: 'endless' }, { templateName: 'endless' }],
      }),
    ).rejects.toThrow(TemplateError);

    await eventually(
      'a few measurements',
      () => Promise.resolve(r.requests.length >= 3 ? true : undefined),
      60_000,
    );
    const before = await getRun('from-templates');
    expect(before!.status!.phase).toBe('Running');
    await terminateAnalysisRun(client, ns.name, 'from-templates');
    const run = await waitForPhase('from-templates', ['Successful', 'Failed', 'Error', 'Inconclusive']);
    expect(run.status).toMatchObject({ phase: 'Successful', message: 'Run Terminated' });
    const count = r.requests.length;
    await new Promise((resolve) => setTimeout(resolve, 1200));
    expect(r.requests.length).toBe(count);
  });
});

describe('restart', () => {
  test('a new controller resumes a run mid-way without measuring twice', async () => {
    const r = route('/steady', () => ({ body: { v: 1 } }));
    await createRun('restart', [
      {
        name: 'steady',
        interval: '1s',
        count: 4,
        successCondition: 'result == 1',
        provider: { web: { url: `${base}/steady`, jsonPath: '{$.v}' } },
      },
    ]);
    await eventually('two measurements', async () => {
      const run = await getRun('restart');
      return (run?.status?.metricResults?.[0]?.count ?? 0) >= 2 ? run : undefined;
    });
    await manager.stop();
    const stoppedAt = r.requests.length;
    // Let a measurement come due while no controller runs.
    await new Promise((resolve) => setTimeout(resolve, 1500));
    expect(r.requests.length).toBe(stoppedAt);
    manager = startManager();
    await manager.start();
    const run = await waitForPhase('restart', ['Successful', 'Failed', 'Error', 'Inconclusive']);
    expect(run.status!.phase).toBe('Successful');
    expect(r.requests).toHaveLength(4);
    expect(run.status!.metricResults![0]).toMatchObject({ count: 4, successful: 4 });
    for (const gap of gaps(run, 'steady')) expect(gap).toBeGreaterThanOrEqual(990);
  });
});
