// The measuring side of the bad-input corpus (bad-input.test.ts): what the in-process controllers
// did while a case ran, read from their own Prometheus registry (API requests by verb, reconciles,
// reconciles that threw), the longest event-loop stall, and the table printed at the end.
import { mkdtemp, mkdir, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import type { Manager } from '../../src/controller/runtime/manager.ts';
import { git } from '../cluster/git-server.ts';

export interface Counters {
  /**
   * rest_client_requests_total, every verb and code but watch: a watch is one long request that
   * the apiserver ends after a random 5-10 minutes, and the informer's next one is no reaction
   * to anything (an informer that re-lists in a loop shows here as lists).
   */
  requests: number;
  /** controller_runtime_reconcile_total, every controller and result. */
  reconciles: number;
  /** controller_runtime_reconcile_errors_total: reconciles that threw (retried with backoff). */
  errors: number;
  /** kube_actions_git_ls_remote_total: one per refresh the Application controller makes. */
  lsRemotes: number;
  /** Requests by `verb code`, for telling what a loop sends. */
  byVerb: Map<string, number>;
}

/** What `after` counts beyond `before`, by verb and code (e.g. "patch 200: 2"). */
export function verbDelta(before: Counters, after: Counters): string {
  return [...after.byVerb]
    .map(([k, n]) => [k, n - (before.byVerb.get(k) ?? 0)] as const)
    .filter(([, n]) => n > 0)
    .map(([k, n]) => `${k}: ${n}`)
    .join(', ');
}

/** Sums the samples of `name` in Prometheus' text format (every label set). */
function sum(text: string, name: string): number {
  let total = 0;
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) continue;
    if (line.startsWith(`${name}{`) || line.startsWith(`${name} `))
      total += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return total;
}

export async function counters(manager: Manager): Promise<Counters> {
  const text = await manager.metrics.render();
  const watches = text
    .split('\n')
    .filter((l) => l.startsWith('rest_client_requests_total{verb="watch"'))
    .reduce((n, l) => n + Number(l.slice(l.lastIndexOf(' ') + 1)), 0);
  return {
    requests: sum(text, 'rest_client_requests_total') - watches,
    reconciles: sum(text, 'controller_runtime_reconcile_total'),
    errors: sum(text, 'controller_runtime_reconcile_errors_total'),
    lsRemotes: sum(text, 'kube_actions_git_ls_remote_total'),
    byVerb: new Map(
      text
        .split('\n')
        .map((l) => /^rest_client_requests_total\{verb="([^"]*)",code="([^"]*)"\} (\S+)$/.exec(l))
        .filter((m): m is RegExpExecArray => m !== null)
        .map((m) => [`${m[1]} ${m[2]}`, Number(m[3])]),
    ),
  };
}

/**
 * The longest event-loop stall while enabled: perf_hooks samples the loop's lateness every 10 ms,
 * so a synchronous stretch (a backtracking regex, a huge parse) shows as its length.
 */
export class StallProbe {
  private readonly histogram: ReturnType<typeof monitorEventLoopDelay> = monitorEventLoopDelay({
    resolution: 10,
  });
  start(): void {
    this.histogram.reset();
    this.histogram.enable();
  }
  /** Stops and returns the longest stall seen, in ms. */
  stop(): number {
    this.histogram.disable();
    const max = this.histogram.max;
    // No sample at all (a very short case) reads as a huge max: report 0 then.
    return Number.isFinite(max) && max < 1e15 ? max / 1e6 : 0;
  }
}

export interface Row {
  area: string;
  name: string;
  outcome: string;
  clear: boolean;
  /** API requests/s over the quiet window after the report. */
  rate: number;
  /** Reconciles/s over the same window (a requeue loop that makes no request shows here). */
  reconcileRate: number;
  stallMs: number;
  /** The controllers went quiet after the report (see the test's settle). */
  quiet: boolean;
  prunes: number;
  partialApplies: number;
  crashes: number;
  knownBug?: string;
}

const shorten = (s: string, n: number) => {
  const one = s.replace(/\s+/g, ' ').trim();
  return one.length > n ? `${one.slice(0, n - 1)}…` : one;
};

export function table(rows: Row[]): string {
  const header = [
    'area',
    'case',
    'outcome',
    'quiet',
    'req/s',
    'rec/s',
    'stall ms',
    'prune',
    'partial',
    'crash',
  ];
  const body = rows.map((r) => [
    r.area,
    r.name + (r.knownBug ? ' [known bug]' : ''),
    (r.clear ? '' : '✗ ') + shorten(r.outcome, 70),
    r.quiet ? 'yes' : 'NO',
    r.rate.toFixed(2),
    r.reconcileRate.toFixed(2),
    r.stallMs.toFixed(0),
    String(r.prunes),
    String(r.partialApplies),
    String(r.crashes),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i]!)).join('  ');
  const summary = (list: Row[]) => {
    const total = (f: (r: Row) => number) => list.reduce((s, r) => s + f(r), 0);
    const maxRate = Math.max(0, ...list.map((r) => r.rate));
    const maxStall = Math.max(0, ...list.map((r) => r.stallMs));
    return (
      `${list.filter((r) => r.clear).length} clear, ${total((r) => r.prunes)} prunes, ` +
      `${total((r) => r.partialApplies)} partial applies, ${total((r) => r.crashes)} crashes, ` +
      `${list.filter((r) => !r.quiet).length} never quiet, max ${maxRate.toFixed(2)} req/s, max stall ${maxStall.toFixed(0)} ms`
    );
  };
  const bugs = rows.filter((r) => r.knownBug);
  const rest = rows.filter((r) => !r.knownBug);
  return [
    line(header),
    line(widths.map((w) => '-'.repeat(w))),
    ...body.map(line),
    '',
    `${rows.length} cases; the ${rest.length} without a known bug: ${summary(rest)}`,
    ...(bugs.length ? [`the ${bugs.length} rows of known bugs: ${summary(bugs)}`] : []),
    ...bugs.map((r) => `known bug (${r.area}: ${r.name}): ${r.knownBug}`),
  ].join('\n');
}

/**
 * Replaces `dir` in the bare repository's `branch` with exactly `files` (and `symlinks`, path ->
 * target, which GitServer.commitFiles cannot make), as one commit. Returns the commit id.
 */
export async function commitTree(
  bare: string,
  dir: string,
  files: Record<string, string>,
  options: { symlinks?: Record<string, string>; message?: string; branch?: string } = {},
): Promise<string> {
  const branch = options.branch ?? 'main';
  const work = await mkdtemp(join(tmpdir(), 'bad-input-tree-'));
  try {
    await git(['clone', '--quiet', '--branch', branch, bare, work]);
    await rm(join(work, dir), { recursive: true, force: true });
    for (const [path, content] of Object.entries(files)) {
      await mkdir(dirname(join(work, dir, path)), { recursive: true });
      await writeFile(join(work, dir, path), content);
    }
    for (const [path, target] of Object.entries(options.symlinks ?? {})) {
      await mkdir(dirname(join(work, dir, path)), { recursive: true });
      await symlink(target, join(work, dir, path));
    }
    await git(['add', '--all'], work);
    await git(['commit', '--quiet', '--allow-empty', '-m', options.message ?? `tree of ${dir}`], work);
    await git(['push', '--quiet', 'origin', `HEAD:refs/heads/${branch}`], work);
    return (await git(['rev-parse', 'HEAD'], work)).trim();
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
