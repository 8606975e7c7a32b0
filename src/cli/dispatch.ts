// kube-actions dispatch: the dispatch action's engine on the command line.
import { readFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { createGitHubClient, parseRepository, redact } from '../core/github/client.ts';
import { dispatchAndWait, type DispatchLog } from '../core/github/dispatch.ts';
import { formatDuration, parseDuration } from '../core/github/poll.ts';
import { DEFAULT_FAIL_ON, failsOn, jobRows, parseFailOn } from '../core/github/run-jobs.ts';
import { parseInputsText } from '../core/github/workflow-inputs.ts';
import { columns } from './format.ts';

export const DISPATCH_USAGE = `usage: kube-actions dispatch <workflow> --repo OWNER/NAME [options]

Starts a workflow_dispatch run and waits for it. The inputs are checked against the workflow's
on.workflow_dispatch.inputs at the ref before anything is dispatched. The run is the one GitHub
names in its answer; on servers that do not (GitHub Enterprise Server before 3.21) it is found by a
distinct_id input shown in the run-name, or as the only new run, and never guessed. The token is
read from an environment variable, never from a flag.

<workflow> is a file name in .github/workflows (deploy.yml), its path, or its numeric id.

options:
  --repo OWNER/NAME      the repository (default $GITHUB_REPOSITORY)
  --ref REF              branch or tag (default: the repository's default branch)
  -f, --field KEY=VALUE  an input (repeatable)
  --inputs YAML|@FILE    inputs as a YAML or JSON mapping, or @path to read them from a file
  --no-wait              only dispatch, print the run, and exit
  --timeout DURATION     how long to wait from the dispatch (default 1h; 90s, 30m, 1h30m)
  --no-cancel            leave the run going when the timeout passes (default: cancel it)
  --fail-on LIST         conclusions that exit 1 (default ${DEFAULT_FAIL_ON.join(',')}; or none)
  --api-url URL          GitHub API (default $GITHUB_API_URL or https://api.github.com)
  --token-env NAME       environment variable holding the token (default GITHUB_TOKEN, then GH_TOKEN)
  --json                 print the result as JSON instead of a table

Progress goes to stderr; the result to stdout. Exit status: 0 when the run's conclusion is not in
--fail-on, 1 when it is or the timeout passed, 2 for a usage error.
`;

export async function dispatchCommand(argv: string[]): Promise<number> {
  const usage = (why: string) => {
    process.stderr.write(`kube-actions dispatch: ${why}\n\n${DISPATCH_USAGE}`);
    return 2;
  };
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        repo: { type: 'string' },
        ref: { type: 'string' },
        field: { type: 'string', short: 'f', multiple: true, default: [] },
        inputs: { type: 'string' },
        'no-wait': { type: 'boolean', default: false },
        timeout: { type: 'string', default: '1h' },
        'no-cancel': { type: 'boolean', default: false },
        'fail-on': { type: 'string', default: DEFAULT_FAIL_ON.join(',') },
        'api-url': { type: 'string' },
        'token-env': { type: 'string' },
        json: { type: 'boolean', default: false },
        help: { type: 'boolean', short: 'h', default: false },
      },
    });
  } catch (err) {
    return usage((err as Error).message);
  }
  const { values, positionals } = parsed;
  if (values.help) {
    process.stdout.write(DISPATCH_USAGE);
    return 0;
  }
  if (positionals.length !== 1) return usage('give exactly one workflow');
  const repository = values.repo ?? process.env.GITHUB_REPOSITORY;
  if (!repository) return usage('--repo is required (or set GITHUB_REPOSITORY)');
  const tokenEnv = values['token-env'] ?? (process.env.GITHUB_TOKEN ? 'GITHUB_TOKEN' : 'GH_TOKEN');
  const token = process.env[tokenEnv];
  if (!token) return usage(`a token is needed in $${tokenEnv}`);

  let inputs: Record<string, string>;
  let timeoutMs: number;
  let failOn: string[];
  let target;
  try {
    target = parseRepository(repository);
    const text = values.inputs?.startsWith('@')
      ? await readFile(values.inputs.slice(1), 'utf8')
      : (values.inputs ?? '');
    inputs = parseInputsText(text, '--inputs');
    for (const field of values.field) {
      const eq = field.indexOf('=');
      if (eq < 1) return usage(`--field must be KEY=VALUE, got "${field}"`);
      const key = field.slice(0, eq);
      if (key in inputs) return usage(`input "${key}" is given twice`);
      inputs[key] = field.slice(eq + 1);
    }
    timeoutMs = parseDuration(values.timeout, '--timeout');
    failOn = parseFailOn(values['fail-on'], '--fail-on');
  } catch (err) {
    return usage((err as Error).message);
  }

  const log: DispatchLog = {
    info: (m) => process.stderr.write(`${m}\n`),
    warning: (m) => process.stderr.write(`warning: ${m}\n`),
    job: (title, lines) =>
      process.stderr.write([title, ...lines.map((l) => `    ${l}`)].map((l) => `  ${l}\n`).join('')),
  };
  const octokit = createGitHubClient({
    token,
    apiURL: values['api-url'] ?? process.env.GITHUB_API_URL,
    onRateLimit: (e) =>
      log.warning(
        `${e.kind} rate limit on ${e.method} ${e.url}: ${e.retrying ? `retrying in ${e.retryAfterSeconds} s` : 'not retrying'}`,
      ),
  });
  try {
    const { run, result } = await dispatchAndWait({
      octokit,
      ...target,
      workflow: positionals[0]!,
      ...(values.ref ? { ref: values.ref } : {}),
      inputs,
      wait: !values['no-wait'],
      timeoutMs,
      cancelOnTimeout: !values['no-cancel'],
      log,
    });
    if (values.json) {
      process.stdout.write(
        `${JSON.stringify({ runId: result.runId, url: result.htmlUrl, status: result.status, conclusion: result.conclusion, timedOut: result.timedOut, foundBy: run.foundBy, jobs: jobRows(result.jobs) }, null, 2)}\n`,
      );
    } else {
      const rows = jobRows(result.jobs);
      process.stdout.write(
        `run ${result.runId} ${result.status}${result.conclusion ? ` ${result.conclusion}` : ''} ${result.htmlUrl}\n` +
          (rows.length
            ? columns([
                ['JOB', 'CONCLUSION', 'DURATION', 'URL'],
                ...rows.map((r) => [r.name, r.result, r.duration, r.url]),
              ])
            : ''),
      );
    }
    if (result.timedOut) {
      process.stderr.write(
        `kube-actions dispatch: run ${result.runId} did not complete within ${formatDuration(timeoutMs)}${result.cancelRequested ? ': cancelled it' : ''}\n`,
      );
      return 1;
    }
    return !values['no-wait'] && failsOn(result.conclusion, failOn) ? 1 : 0;
  } catch (err) {
    process.stderr.write(
      `kube-actions dispatch: ${redact(err instanceof Error ? err.message : String(err), [token])}\n`,
    );
    return 1;
  }
}
