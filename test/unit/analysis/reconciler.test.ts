// The reconciler against an in-memory API (status patches with resourceVersion checks) and fake
// providers on a fake clock: scheduling, restarts, conflicts, termination and secret redaction.
import { beforeEach, describe, expect, test } from '@jest/globals';
import type { KubeClient } from '../../../src/core/kube/client.ts';
import { AnalysisRunReconciler } from '../../../src/controller/analysis/reconciler.ts';
import type { Provider, ProviderContext } from '../../../src/controller/analysis/providers/provider.ts';
import type { AnalysisRun, Measurement, Metric } from '../../../src/controller/analysis/types.ts';

const T0 = Date.parse('2030-01-01T00:00:00Z');

class FakeApi {
  run!: AnalysisRun;
  rv = 1;
  writes = 0;
  secrets: Record<string, Record<string, string>> = {};

  set(run: AnalysisRun): void {
    this.run = structuredClone(run);
    this.run.metadata.resourceVersion = String(this.rv);
  }

  read(): AnalysisRun {
    return structuredClone(this.run);
  }

  client(): KubeClient {
    const fake = {
      get: (ref: { resource: string }, _ns: string, name: string) => {
        if (ref.resource === 'analysisruns') return Promise.resolve(this.read());
        const data = this.secrets[name];
        if (!data) return Promise.reject(Object.assign(new Error('not found'), { code: 404 }));
        const encoded = Object.fromEntries(
          Object.entries(data).map(([k, v]) => [k, Buffer.from(v).toString('base64')]),
        );
        return Promise.resolve({ data: encoded });
      },
      request: (
        method: string,
        _path: string,
        options: { body: Array<{ op: string; path: string; value: unknown }> },
      ) => {
        expect(method).toBe('PATCH');
        for (const op of options.body) {
          if (op.op === 'test' && op.value !== this.run.metadata.resourceVersion) {
            return Promise.reject(Object.assign(new Error('conflict'), { code: 422 }));
          }
          if (op.op === 'add' && op.path === '/status')
            this.run.status = structuredClone(op.value) as AnalysisRun['status'];
        }
        this.rv++;
        this.writes++;
        this.run.metadata.resourceVersion = String(this.rv);
        return Promise.resolve(this.read());
      },
    };
    return fake as unknown as KubeClient;
  }
}

/** A provider answering from a script of phases; 'Running' leaves the measurement in flight. */
class ScriptedProvider implements Provider {
  calls = { run: 0, resume: 0, terminate: 0 };
  script: Array<Measurement['phase']>;
  message?: string;
  constructor(script: Array<Measurement['phase']>) {
    this.script = script;
  }
  run(ctx: ProviderContext): Promise<Measurement> {
    this.calls.run++;
    const phase = this.script.shift() ?? 'Successful';
    const now = ctx.now().toISOString();
    return Promise.resolve({
      phase,
      startedAt: now,
      ...(phase !== 'Running' ? { finishedAt: now } : {}),
      ...(this.message
        ? { message: this.message.replace('SECRET', ctx.metric.provider.web?.url ?? '') }
        : {}),
      value: ctx.metric.provider.web?.url ?? '',
    });
  }
  resume(_ctx: ProviderContext, m: Measurement): Promise<Measurement> {
    this.calls.resume++;
    return Promise.resolve(m);
  }
  terminate(ctx: ProviderContext, m: Measurement): Promise<Measurement> {
    this.calls.terminate++;
    return Promise.resolve({ ...m, phase: 'Successful', finishedAt: ctx.now().toISOString() });
  }
  garbageCollect(): Promise<void> {
    return Promise.resolve();
  }
}

const metric = (over: Partial<Metric> = {}): Metric => ({
  name: 'm',
  provider: { web: { url: 'http://x' } },
  ...over,
});
const newRun = (metrics: Metric[], extra: Partial<AnalysisRun['spec']> = {}): AnalysisRun => ({
  apiVersion: 'kube-actions.dev/v1alpha1',
  kind: 'AnalysisRun',
  metadata: { name: 'r', namespace: 'ns', uid: 'u1' },
  spec: { metrics, ...extra },
});

let api: FakeApi;
let clock: number;
const req = { namespace: 'ns', name: 'r' };

function reconciler(web: Provider, job?: Provider): AnalysisRunReconciler {
  return new AnalysisRunReconciler({
    client: api.client(),
    getRun: () => Promise.resolve(api.read()),
    now: () => new Date(clock),
    providers: { web, ...(job ? { job } : {}) },
    errorRetryIntervalMs: 1000,
  });
}

beforeEach(() => {
  api = new FakeApi();
  clock = T0;
});

describe('AnalysisRunReconciler', () => {
  test('measures on schedule, requeues exactly until the next one, never twice, and completes', async () => {
    api.set(newRun([metric({ interval: '10s', count: 3 })]));
    const provider = new ScriptedProvider([]);
    const r = reconciler(provider);
    expect(await r.reconcile(req)).toEqual({ requeueAfter: 10_000 });
    expect(provider.calls.run).toBe(1);
    expect(api.run.status?.phase).toBe('Running');
    clock += 4_000;
    // Woken early (a spec change, a resync): nothing is due, nothing is written.
    const writes = api.writes;
    expect(await r.reconcile(req)).toEqual({ requeueAfter: 6_000 });
    expect(provider.calls.run).toBe(1);
    expect(api.writes).toBe(writes);
    // A restarted controller (a new reconciler) carries on from status alone.
    const restarted = reconciler(provider);
    clock += 6_000;
    expect(await restarted.reconcile(req)).toEqual({ requeueAfter: 10_000 });
    clock += 10_000;
    expect(await restarted.reconcile(req)).toEqual({});
    expect(provider.calls.run).toBe(3);
    const status = api.run.status!;
    expect(status.phase).toBe('Successful');
    expect(status.completedAt).toBe(new Date(clock).toISOString());
    expect(status.metricResults![0]).toMatchObject({ phase: 'Successful', count: 3, successful: 3 });
    expect(status.runSummary).toEqual({ count: 1, successful: 1, failed: 0, inconclusive: 0, error: 0 });
    clock += 60_000;
    expect(await restarted.reconcile(req)).toEqual({});
    expect(provider.calls.run).toBe(3);
  });

  test('a stale read cannot overwrite newer measurements: the write fails and nothing is recorded', async () => {
    api.set(newRun([metric({ interval: '10s', count: 3 })]));
    const provider = new ScriptedProvider([]);
    await reconciler(provider).reconcile(req);
    const stale = structuredClone(api.run);
    stale.metadata.resourceVersion = '1';
    stale.status = undefined;
    const r = new AnalysisRunReconciler({
      client: api.client(),
      getRun: () => Promise.resolve(structuredClone(stale)),
      now: () => new Date(clock),
      providers: { web: provider },
    });
    await expect(r.reconcile(req)).rejects.toThrow(/changed since it was read/);
    expect(api.run.status!.metricResults![0]!.measurements).toHaveLength(1);
  });

  test('a failure ends the run at once: in-flight measurements of other metrics are terminated', async () => {
    api.set(
      newRun([
        metric({ name: 'fails', successCondition: 'false' }),
        metric({ name: 'slow', provider: { job: { spec: {} } } }),
      ]),
    );
    const web = new ScriptedProvider(['Failed']);
    const job = new ScriptedProvider(['Running']);
    expect(await reconciler(web, job).reconcile(req)).toEqual({});
    const status = api.run.status!;
    expect(job.calls).toEqual({ run: 1, resume: 0, terminate: 1 });
    expect(status.phase).toBe('Failed');
    expect(status.message).toBe('Metric "fails" assessed Failed due to failed (1) > failureLimit (0)');
    expect(status.metricResults!.find((r) => r.name === 'slow')).toMatchObject({
      phase: 'Successful',
      measurements: [{ phase: 'Successful', message: 'Metric Terminated' }],
    });
  });

  test('an in-flight measurement is resumed until it completes; no requeue without a resumeAt', async () => {
    api.set(newRun([metric({ provider: { job: { spec: {} } } })]));
    const job = new ScriptedProvider(['Running']);
    const r = reconciler(new ScriptedProvider([]), job);
    expect(await r.reconcile(req)).toEqual({});
    expect(await r.reconcile(req)).toEqual({});
    expect(job.calls).toEqual({ run: 1, resume: 1, terminate: 0 });
    expect(api.run.status!.phase).toBe('Running');
  });

  test('errors are retried after the error interval, and the metric errors after consecutiveErrorLimit', async () => {
    api.set(newRun([metric({ consecutiveErrorLimit: 1 })]));
    const provider = new ScriptedProvider(['Error', 'Error']);
    const r = reconciler(provider);
    expect(await r.reconcile(req)).toEqual({ requeueAfter: 1000 });
    clock += 1000;
    expect(await r.reconcile(req)).toEqual({});
    expect(api.run.status).toMatchObject({ phase: 'Error' });
    expect(api.run.status!.metricResults![0]).toMatchObject({ error: 2, consecutiveError: 2, count: 0 });
  });

  test('terminate: no new measurements, Successful with "Run Terminated"', async () => {
    api.set(newRun([metric({ interval: '10s' })]));
    const provider = new ScriptedProvider([]);
    await reconciler(provider).reconcile(req);
    api.run.spec.terminate = true;
    clock += 60_000;
    expect(await reconciler(provider).reconcile(req)).toEqual({});
    expect(provider.calls.run).toBe(1);
    expect(api.run.status).toMatchObject({ phase: 'Successful', message: 'Run Terminated' });
  });

  test('invalid specs and unresolvable arguments end the run in Error with the reason', async () => {
    api.set(newRun([metric({ provider: { newRelic: { query: 'x' } } })]));
    await reconciler(new ScriptedProvider([])).reconcile(req);
    expect(api.run.status).toMatchObject({
      phase: 'Error',
      message:
        'Analysis spec invalid: metrics[0]: provider "newRelic" is not supported by kube-actions (supported: prometheus, web, job, githubWorkflow)',
    });
    api.set(
      newRun([metric({ provider: { web: { url: 'http://{{args.host}}' } } })], { args: [{ name: 'host' }] }),
    );
    await reconciler(new ScriptedProvider([])).reconcile(req);
    expect(api.run.status).toMatchObject({
      phase: 'Error',
      message: 'Unable to resolve metric arguments: argument "host" was not supplied',
    });
    api.set(
      newRun([metric({ provider: { web: { url: 'http://{{args.t}}' } } })], {
        args: [{ name: 't', valueFrom: { secretKeyRef: { name: 'missing', key: 'k' } } }],
      }),
    );
    await reconciler(new ScriptedProvider([])).reconcile(req);
    expect(api.run.status).toMatchObject({
      phase: 'Error',
      message: 'Unable to resolve metric arguments: secret "missing" not found',
    });
  });

  test('secret arguments reach the provider but never the status', async () => {
    api.secrets.creds = { token: 'hunter2' };
    api.set(
      newRun([metric({ provider: { web: { url: 'http://host/?t={{args.token}}' } } })], {
        args: [{ name: 'token', valueFrom: { secretKeyRef: { name: 'creds', key: 'token' } } }],
      }),
    );
    const provider = new ScriptedProvider(['Error']);
    provider.message = 'could not reach SECRET';
    await reconciler(provider).reconcile(req);
    const text = JSON.stringify(api.run.status);
    expect(text).not.toContain('hunter2');
    expect(text).toContain('could not reach http://host/?t=*****');
  });

  test('dry-run metrics are measured but never fail the run', async () => {
    api.set(newRun([metric({ name: 'a' }), metric({ name: 'b' })], { dryRun: [{ metricName: 'b' }] }));
    const provider = new ScriptedProvider(['Successful', 'Failed']);
    await reconciler(provider).reconcile(req);
    expect(api.run.status).toMatchObject({
      phase: 'Successful',
      dryRunSummary: { count: 1, failed: 1 },
      metricResults: [
        { name: 'a', phase: 'Successful' },
        { name: 'b', phase: 'Failed', dryRun: true },
      ],
    });
  });
});
