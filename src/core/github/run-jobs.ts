// A workflow run's jobs and steps as a watcher sees them: what changed between two polls (for the
// log), how long each job took (for the summary), and which conclusions fail the step. Pure.
import { formatDuration } from './poll.ts';

export interface StepView {
  name: string;
  number: number;
  status: string;
  conclusion: string | null;
  started_at?: string | null;
  completed_at?: string | null;
}

/** The fields of GitHub's job object the watcher reads. */
export interface JobView {
  id: number;
  name: string;
  status: string;
  conclusion: string | null;
  started_at: string;
  completed_at: string | null;
  html_url: string | null;
  steps?: StepView[];
}

/** What one poll revealed about one job: a title line and the steps that moved. */
export interface JobChange {
  job: JobView;
  title: string;
  lines: string[];
}

/** Every conclusion GitHub gives a run or job. */
export const CONCLUSIONS = [
  'success',
  'failure',
  'neutral',
  'cancelled',
  'skipped',
  'timed_out',
  'action_required',
  'stale',
  'startup_failure',
] as const;

/** Conclusions that fail the dispatching step unless `fail-on` says otherwise. */
export const DEFAULT_FAIL_ON = [
  'failure',
  'cancelled',
  'timed_out',
  'action_required',
  'stale',
  'startup_failure',
];

/** `failure, cancelled` (comma or newline separated), or `none`; refuses names GitHub never gives. */
export function parseFailOn(text: string, what = 'input "fail-on"'): string[] {
  const names = text
    .split(/[,\n]/)
    .map((n) => n.trim())
    .filter(Boolean);
  if (names.length === 1 && names[0] === 'none') return [];
  const unknown = names.filter((n) => !(CONCLUSIONS as readonly string[]).includes(n));
  if (unknown.length) {
    throw new Error(
      `${what} lists ${unknown.map((u) => `"${u}"`).join(', ')}, which GitHub never concludes with: use ${CONCLUSIONS.join(', ')} or none`,
    );
  }
  return names;
}

function elapsed(from: string | null | undefined, to: string | null | undefined): number | undefined {
  if (!from || !to) return undefined;
  const ms = Date.parse(to) - Date.parse(from);
  return Number.isNaN(ms) ? undefined : Math.max(0, ms);
}

/** How long a job ran (undefined until it completed). */
export function jobDurationMs(job: JobView): number | undefined {
  return job.status === 'completed' ? elapsed(job.started_at, job.completed_at) : undefined;
}

function describeJob(job: JobView): string {
  if (job.status !== 'completed') return job.status;
  const ms = jobDurationMs(job);
  return `${job.conclusion ?? 'completed'}${ms === undefined ? '' : ` in ${formatDuration(ms)}`}`;
}

function describeStep(step: StepView): string {
  const state = step.status === 'completed' ? (step.conclusion ?? 'completed') : step.status;
  const ms = step.status === 'completed' ? elapsed(step.started_at, step.completed_at) : undefined;
  return `${step.number}. ${step.name}: ${state}${ms === undefined ? '' : ` (${formatDuration(ms)})`}`;
}

/**
 * The changes from `previous` (by job id) to `jobs`: jobs that appeared or changed status or
 * conclusion, and within each job the steps that started or finished. Steps still queued when
 * first seen are not news.
 */
export function diffJobs(previous: ReadonlyMap<number, JobView>, jobs: readonly JobView[]): JobChange[] {
  const changes: JobChange[] = [];
  for (const job of jobs) {
    const before = previous.get(job.id);
    const jobMoved = !before || before.status !== job.status || before.conclusion !== job.conclusion;
    const oldSteps = new Map((before?.steps ?? []).map((s) => [s.number, s]));
    const lines: string[] = [];
    for (const step of job.steps ?? []) {
      const old = oldSteps.get(step.number);
      const moved = old
        ? old.status !== step.status || old.conclusion !== step.conclusion
        : step.status !== 'queued';
      if (moved) lines.push(describeStep(step));
    }
    if (jobMoved || lines.length) changes.push({ job, title: `${job.name}: ${describeJob(job)}`, lines });
  }
  return changes;
}

/** Whether a run's conclusion fails the step under `failOn`. */
export function failsOn(conclusion: string | null, failOn: readonly string[]): boolean {
  return conclusion !== null && failOn.includes(conclusion);
}

/** Rows for a jobs table: name, conclusion (or status), duration, link. */
export function jobRows(
  jobs: readonly JobView[],
): { name: string; result: string; duration: string; url: string }[] {
  return jobs.map((job) => {
    const ms = jobDurationMs(job);
    return {
      name: job.name,
      result: job.status === 'completed' ? (job.conclusion ?? 'completed') : job.status,
      duration: ms === undefined ? '' : formatDuration(ms),
      url: job.html_url ?? '',
    };
  });
}
