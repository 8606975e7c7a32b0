import { describe, expect, test } from '@jest/globals';
import {
  assessMetric,
  assessRun,
  countMeasurement,
  dryRunMetrics,
  effectiveCount,
  isTerminating,
  metricTasks,
  nextReconcileTime,
  retentionLimits,
  trimMeasurements,
  validateMetrics,
} from '../../../src/controller/analysis/analysis.ts';
import type {
  AnalysisPhase,
  AnalysisRunStatus,
  Measurement,
  Metric,
  MetricResult,
} from '../../../src/controller/analysis/types.ts';

const web = { web: { url: 'http://x' } };
const metric = (over: Partial<Metric> = {}): Metric => ({ name: 'm', provider: web, ...over });
const T0 = Date.parse('2030-01-01T00:00:00Z');
const at = (ms: number) => new Date(T0 + ms).toISOString();

/** A metric result after measurements with these phases, each finished at the given offsets. */
function result(
  name: string,
  phases: AnalysisPhase[],
  finishedAt: number[] = phases.map((_, i) => i * 1000),
): MetricResult {
  const r: MetricResult = { name, phase: 'Running', measurements: [] };
  phases.forEach((phase, i) => {
    const m: Measurement = { phase, startedAt: at(finishedAt[i]!) };
    if (phase !== 'Running') m.finishedAt = at(finishedAt[i]!);
    r.measurements!.push(m);
    countMeasurement(r, phase);
  });
  return r;
}

describe('effectiveCount', () => {
  test('1 without interval; unbounded with interval and no count; count otherwise', () => {
    expect(effectiveCount(metric())).toBe(1);
    expect(effectiveCount(metric({ count: 0 }))).toBe(1);
    expect(effectiveCount(metric({ interval: '10s' }))).toBeUndefined();
    expect(effectiveCount(metric({ interval: '10s', count: 3 }))).toBe(3);
    expect(effectiveCount(metric({ interval: '10s', count: '5' }))).toBe(5);
  });
});

describe('validateMetrics (Argo ValidateMetric)', () => {
  test.each<[Metric[], string | undefined]>([
    [[metric()], undefined],
    [[], 'no metrics specified'],
    [[metric(), metric()], "metrics[1]: duplicate name 'm'"],
    [[metric({ count: 2 })], 'metrics[0]: interval must be specified when count > 1'],
    [[metric({ count: 1, failureLimit: 2 })], 'metrics[0]: count must be >= failureLimit'],
    [[metric({ count: 1, inconclusiveLimit: 2 })], 'metrics[0]: count must be >= inconclusiveLimit'],
    [[metric({ interval: 'soon' })], 'metrics[0]: invalid interval string: "soon"'],
    [[metric({ interval: '0s', count: 3 })], 'metrics[0]: interval must be greater than 0'],
    [[metric({ interval: '0' })], 'metrics[0]: interval must be greater than 0'],
    [[metric({ failureLimit: -1 })], 'metrics[0]: failureLimit must be >= 0'],
    [[metric({ count: 'three' })], 'metrics[0]: count must be an integer, not "three"'],
    [[metric({ provider: {} })], 'metrics[0]: no provider specified'],
    [
      [metric({ provider: { ...web, job: { spec: {} } } })],
      'metrics[0]: multiple providers specified (web, job)',
    ],
    [
      [metric({ provider: { datadog: { query: 'x' } } })],
      'metrics[0]: provider "datadog" is not supported by kube-actions (supported: prometheus, web, job, githubWorkflow)',
    ],
    [
      [metric({ provider: { web: { url: 'x', authentication: {} } as never } })],
      'metrics[0]: provider.web: "authentication" not supported by kube-actions',
    ],
    [
      [metric({ consecutiveSuccessLimit: 2 })],
      'metrics[0]: consecutiveSuccessLimit is not supported by kube-actions',
    ],
  ])('%j', (metrics, problem) => {
    expect(validateMetrics(metrics)).toBe(problem);
  });
});

describe('metricTasks: what is due', () => {
  const status = (results: MetricResult[], startedAt = at(0)): AnalysisRunStatus => ({
    startedAt,
    metricResults: results,
  });

  test('first measurement now, or after initialDelay from the run start', () => {
    expect(metricTasks([metric()], status([]), false, T0)).toEqual([{ index: 0 }]);
    const delayed = [metric({ initialDelay: '30s' })];
    expect(metricTasks(delayed, status([]), false, T0 + 29_999)).toEqual([]);
    expect(metricTasks(delayed, status([]), false, T0 + 30_000)).toEqual([{ index: 0 }]);
    expect(nextReconcileTime(delayed, status([]), T0)).toBe(T0 + 30_000);
  });

  test('next measurement one interval after the last finished, until count is reached', () => {
    const m = [metric({ interval: '10s', count: 3 })];
    const s = status([result('m', ['Successful'], [5000])]);
    expect(metricTasks(m, s, false, T0 + 14_999)).toEqual([]);
    expect(metricTasks(m, s, false, T0 + 15_000)).toEqual([{ index: 0 }]);
    expect(nextReconcileTime(m, s, T0)).toBe(T0 + 15_000);
    const done = status([result('m', ['Successful', 'Successful', 'Successful'])]);
    expect(metricTasks(m, done, false, T0 + 100_000)).toEqual([]);
    expect(nextReconcileTime(m, done, T0)).toBeUndefined();
  });

  test('an Error is retried after the error retry interval, whatever the interval', () => {
    const m = [metric({ interval: '1m' })];
    const s = status([result('m', ['Error'], [0])]);
    expect(metricTasks(m, s, false, T0 + 9_999)).toEqual([]);
    expect(metricTasks(m, s, false, T0 + 10_000)).toEqual([{ index: 0 }]);
    expect(nextReconcileTime(m, s, T0, 500)).toBe(T0 + 500);
    // A single-shot metric that errored is retried too (its count is not reached).
    expect(metricTasks([metric()], s, false, T0 + 10_000)).toEqual([{ index: 0 }]);
  });

  test('an in-flight measurement is resumed (or terminated); nothing new starts while terminating', () => {
    const inflight = status([result('m', ['Running'])]);
    expect(metricTasks([metric()], inflight, false, T0)).toEqual([
      { index: 0, incomplete: inflight.metricResults![0]!.measurements![0] },
    ]);
    expect(metricTasks([metric()], inflight, true, T0)).toHaveLength(1);
    expect(
      metricTasks([metric({ interval: '1s' })], status([result('m', ['Successful'])]), true, T0 + 60_000),
    ).toEqual([]);
  });

  test('an in-flight measurement waits for its resumeAt, unless the run is terminating', () => {
    const inflight = status([result('m', ['Running'])]);
    const m = inflight.metricResults![0]!.measurements![0]!;
    m.resumeAt = at(30_000);
    expect(metricTasks([metric()], inflight, false, T0 + 10_000)).toEqual([]);
    expect(nextReconcileTime([metric()], inflight, T0 + 10_000)).toBe(T0 + 30_000);
    expect(metricTasks([metric()], inflight, false, T0 + 30_000)).toEqual([{ index: 0, incomplete: m }]);
    // Terminating: now, so that what the measurement started (a workflow run) is stopped.
    expect(metricTasks([metric()], inflight, true, T0 + 10_000)).toEqual([{ index: 0, incomplete: m }]);
  });

  test('completed metrics take no more measurements', () => {
    const r = result('m', ['Failed']);
    r.phase = 'Failed';
    expect(metricTasks([metric({ interval: '1s' })], status([r]), false, T0 + 60_000)).toEqual([]);
  });
});

describe('assessMetric: limits', () => {
  test.each<[Partial<Metric>, AnalysisPhase[], AnalysisPhase]>([
    [{}, [], 'Pending'],
    [{}, ['Running'], 'Running'],
    [{}, ['Successful'], 'Successful'],
    [{}, ['Failed'], 'Failed'],
    [{ interval: '1s', count: 3, failureLimit: 1 }, ['Failed', 'Successful'], 'Running'],
    [{ interval: '1s', count: 3, failureLimit: 1 }, ['Failed', 'Successful', 'Successful'], 'Successful'],
    [{ interval: '1s', count: 3, failureLimit: 1 }, ['Failed', 'Failed'], 'Failed'],
    [{}, ['Inconclusive'], 'Inconclusive'],
    [{ interval: '1s', count: 3, inconclusiveLimit: 1 }, ['Inconclusive', 'Successful'], 'Running'],
    [{}, ['Error', 'Error', 'Error', 'Error'], 'Running'],
    [{}, ['Error', 'Error', 'Error', 'Error', 'Error'], 'Error'],
    [{ consecutiveErrorLimit: 0 }, ['Error'], 'Error'],
    [{}, ['Error', 'Error', 'Error', 'Error', 'Successful'], 'Successful'],
    [{ interval: '1s' }, ['Successful', 'Successful'], 'Running'],
  ])('%j after %j: %s', (over, phases, expected) => {
    expect(assessMetric(metric(over), result('m', phases), false)).toBe(expected);
  });

  test('terminating: an unbounded or unmeasured metric ends Successful; limits still apply', () => {
    expect(assessMetric(metric({ interval: '1s' }), result('m', ['Successful']), true)).toBe('Successful');
    expect(assessMetric(metric(), result('m', []), true)).toBe('Successful');
    expect(assessMetric(metric({ interval: '1s' }), result('m', ['Failed']), true)).toBe('Failed');
  });
});

describe('assessRun', () => {
  const metrics = [metric({ name: 'a', interval: '1s' }), metric({ name: 'b' })];

  test('Running while a metric runs; the worst phase once all are done', () => {
    const s: AnalysisRunStatus = {
      metricResults: [result('a', ['Successful']), result('b', ['Successful'])],
    };
    expect(assessRun(metrics, s, new Set(), false, false).phase).toBe('Running');
    const done: AnalysisRunStatus = {
      metricResults: [result('a', ['Successful', 'Inconclusive']), result('b', ['Failed'])],
    };
    const a = assessRun(metrics, done, new Set(), false, false);
    expect(a.phase).toBe('Failed');
    expect(a.message).toBe('Metric "b" assessed Failed due to failed (1) > failureLimit (0)');
    expect(a.runSummary).toEqual({ count: 2, successful: 0, failed: 1, inconclusive: 1, error: 0 });
    expect(a.transitions).toEqual([
      { metric: 'a', from: 'Running', to: 'Inconclusive' },
      { metric: 'b', from: 'Running', to: 'Failed' },
    ]);
  });

  test('a failing metric makes the run terminating; the other metric is then Successful', () => {
    const s: AnalysisRunStatus = { metricResults: [result('a', ['Successful']), result('b', ['Failed'])] };
    assessRun(metrics, s, new Set(), false, false);
    expect(isTerminating({ metrics }, s)).toBe(true);
    const second = assessRun(metrics, s, new Set(), true, false);
    expect(second.phase).toBe('Failed');
    expect(s.metricResults![0]!.phase).toBe('Successful');
  });

  test('dry-run metrics never fail the run, but their results are kept and summarized', () => {
    const s: AnalysisRunStatus = {
      metricResults: [result('a', ['Failed']), { ...result('b', ['Successful']), dryRun: false }],
    };
    s.metricResults![0]!.dryRun = true;
    const a = assessRun([metric({ name: 'a' }), metric({ name: 'b' })], s, new Set(['a']), false, false);
    expect(a.phase).toBe('Successful');
    expect(s.metricResults![0]!.phase).toBe('Failed');
    expect(s.metricResults![0]!.message).toBe('Metric assessed Failed due to failed (1) > failureLimit (0)');
    expect(a.dryRunSummary).toEqual({ count: 1, successful: 0, failed: 1, inconclusive: 0, error: 0 });
    expect(isTerminating({ metrics: [] }, s)).toBe(false);
  });

  test('terminate: Successful with "Run Terminated" unless a metric failed', () => {
    const s: AnalysisRunStatus = { metricResults: [result('a', ['Successful'])] };
    const a = assessRun(metrics, s, new Set(), true, true);
    expect(a.phase).toBe('Successful');
    expect(a.message).toBe('Run Terminated');
  });

  test('the Error message carries the last measurement message', () => {
    const r = result('b', ['Error', 'Error', 'Error', 'Error', 'Error']);
    r.measurements!.at(-1)!.message = 'received non 2xx response code: 500';
    const a = assessRun([metric({ name: 'b' })], { metricResults: [r] }, new Set(), false, false);
    expect(a.phase).toBe('Error');
    expect(a.message).toBe(
      'Metric "b" assessed Error due to consecutiveErrors (5) > consecutiveErrorLimit (4): "Error Message: received non 2xx response code: 500"',
    );
  });
});

describe('rules and retention', () => {
  const metrics = [metric({ name: 'error-rate' }), metric({ name: 'latency' })];
  test('dryRun and measurementRetention match names by regular expression; a rule matching nothing is an error', () => {
    expect(dryRunMetrics([{ metricName: '.*' }], metrics)).toEqual(new Set(['error-rate', 'latency']));
    expect(dryRunMetrics([{ metricName: 'lat' }], metrics)).toEqual(new Set(['latency']));
    expect(() => dryRunMetrics([{ metricName: 'nope' }], metrics)).toThrow(
      "dryRun[0]: Rule didn't match any metric name(s)",
    );
    expect(retentionLimits([{ metricName: 'error-rate', limit: 3 }], metrics)).toEqual(
      new Map([['error-rate', 3]]),
    );
  });

  test('trimMeasurements keeps the newest, 10 by default', () => {
    const phases = Array.from({ length: 12 }, () => 'Successful' as const);
    const s: AnalysisRunStatus = { metricResults: [result('error-rate', phases), result('latency', phases)] };
    const trimmed = trimMeasurements(s, new Map([['error-rate', 3]]));
    expect(trimmed).toEqual([
      { metric: 'error-rate', limit: 3 },
      { metric: 'latency', limit: 10 },
    ]);
    expect(s.metricResults![0]!.measurements!.map((m) => m.finishedAt)).toEqual([
      at(9000),
      at(10000),
      at(11000),
    ]);
    expect(s.metricResults![1]!.measurements).toHaveLength(10);
    // Counters keep the whole history.
    expect(s.metricResults![0]!.count).toBe(12);
  });
});
