// The `dispatch` action: check the inputs against the target workflow, dispatch it, identify the
// run it started, wait for it (logging its jobs and steps as they change), set the outputs, write
// a job summary and fail on the configured conclusions. The work is in src/core/github.
import * as core from '@actions/core';
import { createGitHubClient, parseRepository, redact } from '../core/github/client.ts';
import { dispatchAndWait, type DispatchLog, type RunResult } from '../core/github/dispatch.ts';
import { formatDuration, parseDuration } from '../core/github/poll.ts';
import { failsOn, jobRows, parseFailOn } from '../core/github/run-jobs.ts';
import { parseInputsText } from '../core/github/workflow-inputs.ts';
import { optional } from './inputs.ts';

/**
 * The ref to dispatch on when none is given: for this repository the ref that triggered this run
 * (a pull request's head branch rather than its merge ref); for another repository undefined, its
 * default branch.
 */
export function defaultRef(env: NodeJS.ProcessEnv, repository: string): string | undefined {
  if ((env.GITHUB_REPOSITORY ?? '').toLowerCase() !== repository.toLowerCase()) return undefined;
  return env.GITHUB_HEAD_REF || env.GITHUB_REF || undefined;
}

function escapeHTML(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

const log: DispatchLog = {
  info: (message) => core.info(message),
  warning: (message) => core.warning(message),
  job: (title, lines) => {
    if (lines.length === 0) return core.info(title);
    core.startGroup(title);
    for (const line of lines) core.info(`  ${line}`);
    core.endGroup();
  },
};

async function writeSummary(result: RunResult, workflowPath: string, ref: string): Promise<void> {
  const title = `${workflowPath} ${result.runNumber !== undefined ? `#${result.runNumber}` : `run ${result.runId}`}`;
  const outcome =
    result.status === 'completed'
      ? `completed, <strong>${escapeHTML(result.conclusion ?? 'no conclusion')}</strong>`
      : escapeHTML(result.status);
  const note = result.timedOut ? (result.cancelRequested ? ' (timed out: cancelled)' : ' (timed out)') : '';
  const summary = core.summary
    .addHeading('Dispatch', 3)
    .addRaw(
      `<a href="${escapeHTML(result.htmlUrl)}">${escapeHTML(title)}</a> on <code>${escapeHTML(ref)}</code>: ${outcome}${note}`,
    )
    .addEOL();
  if (result.jobs.length) {
    summary.addTable([
      [
        { data: 'Job', header: true },
        { data: 'Conclusion', header: true },
        { data: 'Duration', header: true },
        { data: 'Link', header: true },
      ],
      ...jobRows(result.jobs).map((row) => [
        escapeHTML(row.name),
        escapeHTML(row.result),
        row.duration,
        row.url ? `<a href="${escapeHTML(row.url)}">logs</a>` : '',
      ]),
    ]);
  }
  await summary.write();
}

export async function run(): Promise<void> {
  const token = core.getInput('token', { required: true });
  core.setSecret(token);
  try {
    const repository = optional('repository') ?? process.env.GITHUB_REPOSITORY ?? '';
    if (!repository) throw new Error('input "repository" is empty and GITHUB_REPOSITORY is not set');
    const target = parseRepository(repository);
    const workflow = core.getInput('workflow', { required: true });
    const inputs = parseInputsText(core.getInput('inputs'));
    const wait = core.getBooleanInput('wait');
    const timeoutMs = parseDuration(core.getInput('timeout'), 'input "timeout"');
    const failOn = parseFailOn(core.getInput('fail-on'));
    const cancelOnTimeout = core.getBooleanInput('cancel-on-timeout');
    const ref = optional('ref') ?? defaultRef(process.env, `${target.owner}/${target.repo}`);
    const octokit = createGitHubClient({
      token,
      apiURL: optional('github-api-url') ?? process.env.GITHUB_API_URL,
      onRateLimit: (e) =>
        core.warning(
          `GitHub ${e.kind} rate limit on ${e.method} ${e.url}: ${e.retrying ? `retrying in ${e.retryAfterSeconds} s` : `not retrying (asked to wait ${e.retryAfterSeconds} s)`}`,
        ),
    });

    const { run, result } = await dispatchAndWait({
      octokit,
      ...target,
      workflow,
      ...(ref ? { ref } : {}),
      inputs,
      wait,
      timeoutMs,
      cancelOnTimeout,
      log,
      onDispatched: (started) => {
        core.setOutput('run-id', String(started.runId));
        core.setOutput('run-url', started.htmlUrl);
      },
    });
    core.setOutput('run-id', String(result.runId));
    core.setOutput('run-url', result.htmlUrl);
    core.setOutput('status', result.status);
    core.setOutput('conclusion', result.conclusion ?? '');
    await writeSummary(result, run.workflowPath, run.ref);
    if (result.timedOut) {
      core.setFailed(
        `run ${result.runId} did not complete within ${formatDuration(timeoutMs)}${result.cancelRequested ? ': cancelled it' : ''} (${result.htmlUrl})`,
      );
    } else if (wait && failsOn(result.conclusion, failOn)) {
      core.setFailed(
        `run ${result.runId} concluded ${result.conclusion} (fail-on: ${failOn.join(', ')}): ${result.htmlUrl}`,
      );
    } else {
      core.info(
        `run ${result.runId}: ${result.status}${result.conclusion ? `, ${result.conclusion}` : ''} ${result.htmlUrl}`,
      );
    }
  } catch (err) {
    core.setFailed(redact(err instanceof Error ? err.message : String(err), [token]));
  }
}

run().catch((err: unknown) => core.setFailed(err instanceof Error ? err.message : String(err)));
