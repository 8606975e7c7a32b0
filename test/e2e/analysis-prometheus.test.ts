// Analysis against real systems, as Argo Rollouts users write it: a canary step's analysis asks a
// real Prometheus (Debian's, discovering and scraping the app's pods on the real node) for the
// canary's success rate, and a web metric asks the canary pod itself (through the canary Service)
// for its error rate. While the test sends requests through the Service, a healthy version passes
// both and is promoted; a version answering 500 to every other request fails them and is aborted,
// every request going back to the stable version.
import { afterAll, beforeAll, expect, test } from '@jest/globals';
import { stringify } from 'yaml';
import {
  ANALYSIS_RUN,
  ANALYSIS_TEMPLATE,
  type AnalysisRun,
  type MetricResult,
} from '../../src/controller/analysis/types.ts';
import type { Rollout } from '../../src/controller/rollout/types.ts';
import { Prometheus } from '../cluster/prometheus.ts';
import { describeOnRealNode, eventually, useTestNamespace, type RealNodeInfo } from '../cluster/testing.ts';
import { appRollout, appService, startAppEnvironment, type AppEnvironment } from './app-env.ts';
import { load, sample } from './traffic.ts';

/** The share of 500s each version answers: v3 fails every other request. */
const ERROR_EVERY: Record<string, string> = { v1: '0', v2: '0', v3: '2' };

describeOnRealNode('canary analysis against a real Prometheus and a web metric served by a pod', (node) => {
  const ns = useTestNamespace('e2e-prometheus');
  let prometheus: Prometheus;
  let env: AppEnvironment;
  let ip: string;
  // Known once the first sync created the canary Service: the web metric's address.
  let canaryIP: string | undefined;

  const manifests = (n: RealNodeInfo, image: string, version: string): Record<string, string> => {
    const selector = `namespace="${ns.name}",rollouts_pod_template_hash="{{args.hash}}"`;
    const files: Record<string, string> = {
      'web/rollout.yaml': appRollout(
        n,
        image,
        2,
        {
          canary: {
            canaryService: 'web-canary',
            steps: [
              { setWeight: 50 },
              {
                analysis: {
                  templates: [{ templateName: 'canary-health' }],
                  args: [{ name: 'hash', valueFrom: { podTemplateHashValue: 'Latest' } }],
                },
              },
            ],
          },
        },
        {
          env: { ERROR_EVERY: ERROR_EVERY[version]! },
          annotations: { 'prometheus.io/scrape': 'true', 'prometheus.io/port': '8080' },
        },
      ),
      'web/service.yaml': appService('web'),
      'web/canary-service.yaml': appService('web-canary'),
    };
    {
      const measured = { interval: '4s', count: 3, initialDelay: '8s', failureLimit: 0 };
      files['web/analysis.yaml'] = stringify({
        apiVersion: 'kube-actions.dev/v1alpha1',
        kind: 'AnalysisTemplate',
        metadata: { name: 'canary-health' },
        spec: {
          args: [{ name: 'hash' }],
          metrics: [
            {
              name: 'success-rate',
              ...measured,
              successCondition: 'result[0] >= 0.95',
              provider: {
                prometheus: {
                  address: prometheus.url,
                  query:
                    `sum(rate(http_requests_total{${selector},code!~"5.."}[20s])) / ` +
                    `sum(rate(http_requests_total{${selector}}[20s]))`,
                },
              },
            },
            {
              name: 'error-rate',
              ...measured,
              successCondition: 'result.served > 0 && result.errorRate <= 0.05',
              // Before the first sync the canary Service has no address yet: a placeholder no
              // measurement uses (the first revision skips the steps), replaced once it is known.
              provider: {
                web: { url: `http://${canaryIP ?? 'web-canary.invalid'}/stats`, timeoutSeconds: 5 },
              },
            },
          ],
        },
      });
    }
    return files;
  };

  /** The analysis run of the current canary step, once it finished. */
  const finishedRun = async (): Promise<AnalysisRun> => {
    const ro = await env.untilRollout(
      (r) =>
        ['Successful', 'Failed', 'Error'].includes(
          r.status?.canary?.currentStepAnalysisRunStatus?.status ?? '',
        ),
      'the step analysis to finish',
      180_000,
    );
    return env.client.get<AnalysisRun>(
      ANALYSIS_RUN,
      ns.name,
      ro.status!.canary!.currentStepAnalysisRunStatus!.name,
    );
  };
  const result = (run: AnalysisRun, name: string): MetricResult =>
    run.status!.metricResults!.find((m) => m.name === name)!;

  beforeAll(async () => {
    prometheus = await Prometheus.start({ kubeconfig: process.env.KUBECONFIG!, namespaces: [ns.name] });
    env = await startAppEnvironment(node, ns, ['v1', 'v2', 'v3'], (image, version) =>
      manifests(node, image, version),
    );
    await env.untilRollout((ro) => ro.status?.phase === 'Healthy', 'v1 healthy', 180_000);
    canaryIP = await env.clusterIP('web-canary');
    ip = await env.clusterIP('web');
    // The template the Rollout names is in the first commit (a Rollout naming a missing one is
    // InvalidSpec, as in Argo Rollouts); now it gets the canary Service's address.
    await env.commit(manifests(node, env.images.v1!, 'v1'), 'the canary analysis template');
    await eventually(
      'the AnalysisTemplate updated',
      async () => {
        const t = await env.client.get<{ spec: { metrics: { provider: { web?: { url: string } } }[] } }>(
          ANALYSIS_TEMPLATE,
          ns.name,
          'canary-health',
        );
        return t.spec.metrics.some((m) => m.provider.web?.url === `http://${canaryIP}/stats`) || undefined;
      },
      60_000,
    );
    await env.settled('web');
    // Prometheus found the pods by Kubernetes service discovery and scrapes them.
    await eventually(
      'Prometheus scraping both v1 pods',
      async () =>
        (await prometheus.targets()).filter((t) => t.labels.namespace === ns.name && t.health === 'up')
          .length === 2
          ? true
          : undefined,
      60_000,
    );
  }, 600_000);
  afterAll(async () => {
    await env?.stop();
    await prometheus?.stop();
  });

  let answered: Record<string, number> = {};

  test('a healthy canary passes both metrics under load and is promoted', async () => {
    const traffic = load(ip, { intervalMs: 20, maxRequests: 7500, maxMs: 150_000 });
    let run: AnalysisRun;
    try {
      await env.deploy('v2');
      run = await finishedRun();
      await env.untilRollout(
        (ro) => ro.status?.phase === 'Healthy' && ro.status.stableRS === ro.status.currentPodHash,
        'v2 promoted',
      );
    } finally {
      answered = await traffic.stop();
    }
    expect(run.status?.phase).toBe('Successful');
    expect(result(run, 'success-rate').measurements!.map((m) => m.value)).toEqual(['[1]', '[1]', '[1]']);
    expect(result(run, 'error-rate').phase).toBe('Successful');
    // Both versions answered the load, and nothing else did.
    expect(Object.keys(answered).sort()).toEqual(['v1', 'v2']);
    await env.settled('web');
    expect(await sample(ip, 40)).toEqual({ v2: 40 });
  }, 300_000);

  test('a canary answering 500s fails the Prometheus success rate and is aborted to stable', async () => {
    const traffic = load(ip, { intervalMs: 20, maxRequests: 7500, maxMs: 150_000 });
    let run: AnalysisRun;
    let aborted: Rollout;
    try {
      await env.deploy('v3');
      run = await finishedRun();
      aborted = await env.untilRollout((ro) => ro.status?.abort === true, 'v3 aborted by its analysis');
    } finally {
      answered = await traffic.stop();
    }
    expect(aborted.status?.phase).toBe('Degraded');
    expect(run.status?.phase).toBe('Failed');
    const rate = result(run, 'success-rate');
    expect(rate.phase).toBe('Failed');
    // Every other request to the canary failed: a success rate near one half.
    const measured = Number((JSON.parse(rate.measurements!.at(-1)!.value!) as number[])[0]);
    expect(measured).toBeGreaterThan(0.3);
    expect(measured).toBeLessThan(0.7);
    // The load saw the canary's 500s before the abort.
    expect(answered['500']).toBeGreaterThan(0);
    await env.settled('web');
    expect(await sample(ip, 40)).toEqual({ v2: 40 });
  }, 300_000);
});
