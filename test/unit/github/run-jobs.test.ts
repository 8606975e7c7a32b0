import { describe, expect, test } from '@jest/globals';
import { diffJobs, failsOn, jobRows, parseFailOn, type JobView } from '../../../src/core/github/run-jobs.ts';
import { redact } from '../../../src/core/github/client.ts';

function job(overrides: Partial<JobView> = {}): JobView {
  return {
    id: 11,
    name: 'deploy',
    status: 'in_progress',
    conclusion: null,
    started_at: '2026-09-01T12:00:00Z',
    completed_at: null,
    html_url: 'https://github.example/acme/app/actions/runs/1/job/11',
    steps: [
      {
        name: 'Set up job',
        number: 1,
        status: 'completed',
        conclusion: 'success',
        started_at: '2026-09-01T12:00:00Z',
        completed_at: '2026-09-01T12:00:02Z',
      },
      {
        name: 'Deploy',
        number: 2,
        status: 'in_progress',
        conclusion: null,
        started_at: '2026-09-01T12:00:02Z',
        completed_at: null,
      },
      { name: 'Verify', number: 3, status: 'queued', conclusion: null },
    ],
    ...overrides,
  };
}

describe('diffJobs', () => {
  test('a new job: its title and the steps that started, not the queued ones', () => {
    expect(diffJobs(new Map(), [job()])).toEqual([
      {
        job: job(),
        title: 'deploy: in_progress',
        lines: ['1. Set up job: success (2s)', '2. Deploy: in_progress'],
      },
    ]);
  });

  test('only the steps that moved, and the job when it completes', () => {
    const before = new Map([[11, job()]]);
    const done = job({
      status: 'completed',
      conclusion: 'failure',
      completed_at: '2026-09-01T12:01:05Z',
      steps: [
        job().steps![0]!,
        {
          name: 'Deploy',
          number: 2,
          status: 'completed',
          conclusion: 'failure',
          started_at: '2026-09-01T12:00:02Z',
          completed_at: '2026-09-01T12:01:05Z',
        },
        {
          name: 'Verify',
          number: 3,
          status: 'completed',
          conclusion: 'skipped',
          started_at: '2026-09-01T12:01:05Z',
          completed_at: '2026-09-01T12:01:05Z',
        },
      ],
    });
    expect(diffJobs(before, [done])).toEqual([
      {
        job: done,
        title: 'deploy: failure in 1m 05s',
        lines: ['2. Deploy: failure (1m 03s)', '3. Verify: skipped (0s)'],
      },
    ]);
  });

  test('nothing moved: no change', () => {
    expect(diffJobs(new Map([[11, job()]]), [job()])).toEqual([]);
  });

  test('a queued job without steps is news once', () => {
    const queued = job({ id: 12, name: 'smoke', status: 'queued', steps: [] });
    expect(diffJobs(new Map(), [queued])).toEqual([{ job: queued, title: 'smoke: queued', lines: [] }]);
    expect(diffJobs(new Map([[12, queued]]), [queued])).toEqual([]);
  });
});

describe('fail-on', () => {
  test('parses names and none; refuses what GitHub never concludes with', () => {
    expect(parseFailOn('failure, cancelled\ntimed_out')).toEqual(['failure', 'cancelled', 'timed_out']);
    expect(parseFailOn('none')).toEqual([]);
    expect(() => parseFailOn('failure, failed, error')).toThrow(
      'input "fail-on" lists "failed", "error", which GitHub never concludes with: use success, failure, neutral, cancelled, skipped, timed_out, action_required, stale, startup_failure or none',
    );
  });

  test('failsOn', () => {
    expect(failsOn('failure', ['failure'])).toBe(true);
    expect(failsOn('success', ['failure'])).toBe(false);
    expect(failsOn(null, ['failure'])).toBe(false);
  });
});

test('jobRows: conclusion, duration and link per job', () => {
  expect(
    jobRows([
      job({ status: 'completed', conclusion: 'success', completed_at: '2026-09-01T12:03:07Z' }),
      job({ id: 12, name: 'smoke', status: 'queued', html_url: null }),
    ]),
  ).toEqual([
    {
      name: 'deploy',
      result: 'success',
      duration: '3m 07s',
      url: 'https://github.example/acme/app/actions/runs/1/job/11',
    },
    { name: 'smoke', result: 'queued', duration: '', url: '' },
  ]);
});

test('redact replaces a secret and its base64 and URL-encoded forms', () => {
  const token = 'ghs_abc+/=def';
  const text = `a ${token} b ${Buffer.from(token).toString('base64')} c ${encodeURIComponent(token)}`;
  expect(redact(text, [token, undefined, ''])).toBe('a *** b *** c ***');
});
