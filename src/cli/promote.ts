// kube-actions promote: the promote action's engine on the command line.
import { parseArgs } from 'node:util';
import { changeFromSpec, describeChange } from '../core/gitops/changes.ts';
import { createGitHubClient, parseRepository } from '../core/github/client.ts';
import { promote, type PromoteMode } from '../core/gitops/promote.ts';

export const PROMOTE_USAGE = `usage: kube-actions promote --repo URL [--branch main] <change> [options]

Commits a change to a GitOps repository, retrying on the new head when other pipelines push
first (never force-pushing). The token is read from an environment variable, never from a flag.

change (exactly one):
  --manifests-from DIR --path PATH        place rendered manifests at PATH (stale ones removed)
  --kustomization FILE --image SPEC       set an image in a kustomization's images list
  --values-file FILE --key K --value V    set a dotted key in a YAML file (e.g. image.tag)

options:
  --repo URL             git URL of the GitOps repository (https)
  --branch NAME          branch to commit to (default main; the pull request's base)
  --mode MODE            push (git, any host; default), api (GitHub Git Data API: verified
                         commits with an app token), pull-request (open or update a PR)
  --api-url URL          GitHub API for api/pull-request (default $GITHUB_API_URL or api.github.com)
  --pr-branch NAME       pull request head branch (default kube-actions/promote/<branch>/<path>)
  --pr-title TEXT        pull request title (default: the message's first line)
  --pr-body TEXT         pull request description
  --pr-label NAME        label to add (repeatable)
  --draft                open the pull request as a draft
  --token-env NAME       environment variable holding the token (default GIT_TOKEN, then GITHUB_TOKEN)
  --username NAME        basic-auth user for the token (default x-access-token)
  -m, --message TEXT     commit message
  --trailer KEY=VALUE    commit trailer (repeatable), e.g. Image-Digest=sha256:...
  --max-attempts N       attempts while the branch keeps moving (default 10)
  --workspace DIR        where --manifests-from is read (default: current directory)
`;

export async function promoteCommand(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      repo: { type: 'string' },
      branch: { type: 'string', default: 'main' },
      mode: { type: 'string', default: 'push' },
      'api-url': { type: 'string' },
      'pr-branch': { type: 'string' },
      'pr-title': { type: 'string' },
      'pr-body': { type: 'string' },
      'pr-label': { type: 'string', multiple: true, default: [] },
      draft: { type: 'boolean', default: false },
      'token-env': { type: 'string' },
      username: { type: 'string', default: 'x-access-token' },
      'manifests-from': { type: 'string' },
      path: { type: 'string' },
      kustomization: { type: 'string' },
      image: { type: 'string' },
      'values-file': { type: 'string' },
      key: { type: 'string' },
      value: { type: 'string' },
      message: { type: 'string', short: 'm' },
      trailer: { type: 'string', multiple: true, default: [] },
      'max-attempts': { type: 'string', default: '10' },
      workspace: { type: 'string', default: process.cwd() },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) {
    process.stdout.write(PROMOTE_USAGE);
    return 0;
  }
  const usage = (why: string) => {
    process.stderr.write(`kube-actions promote: ${why}\n\n${PROMOTE_USAGE}`);
    return 2;
  };
  if (!values.repo) return usage('--repo is required');
  const modes: PromoteMode[] = ['push', 'api', 'pull-request'];
  const mode = values.mode as PromoteMode;
  if (!modes.includes(mode)) return usage(`--mode must be one of ${modes.join(', ')}, got "${values.mode}"`);
  const trailers: Record<string, string> = {};
  for (const t of values.trailer) {
    const eq = t.indexOf('=');
    if (eq < 1) return usage(`--trailer must be KEY=VALUE, got "${t}"`);
    trailers[t.slice(0, eq)] = t.slice(eq + 1);
  }
  const maxAttempts = Number(values['max-attempts']);
  if (!Number.isInteger(maxAttempts) || maxAttempts < 1)
    return usage('--max-attempts must be a positive integer');
  const tokenEnv = values['token-env'] ?? (process.env.GIT_TOKEN ? 'GIT_TOKEN' : 'GITHUB_TOKEN');
  const token = process.env[tokenEnv];

  const change = await changeFromSpec({
    workspace: values.workspace,
    ...(values['manifests-from'] !== undefined ? { manifestsFrom: values['manifests-from'] } : {}),
    ...(values.path !== undefined ? { path: values.path } : {}),
    ...(values.kustomization !== undefined ? { kustomization: values.kustomization } : {}),
    ...(values.image !== undefined ? { image: values.image } : {}),
    ...(values['values-file'] !== undefined ? { valuesFile: values['values-file'] } : {}),
    ...(values.key !== undefined ? { key: values.key } : {}),
    ...(values.value !== undefined ? { value: values.value } : {}),
  });
  if (mode !== 'push' && !token) return usage(`mode ${mode} needs a token in $${tokenEnv}`);
  const github =
    mode === 'push'
      ? undefined
      : {
          ...parseRepository(values.repo),
          octokit: createGitHubClient({
            token: token!,
            apiURL: values['api-url'] ?? process.env.GITHUB_API_URL,
          }),
        };
  const result = await promote({
    repoURL: values.repo,
    mode,
    ...(github ? { github } : {}),
    pullRequest: {
      ...(values['pr-branch'] ? { branch: values['pr-branch'] } : {}),
      ...(values['pr-title'] ? { title: values['pr-title'] } : {}),
      ...(values['pr-body'] ? { body: values['pr-body'] } : {}),
      labels: values['pr-label'],
      draft: values.draft,
    },
    branch: values.branch,
    change,
    message: values.message ?? `promote ${describeChange(change)}`,
    trailers,
    maxAttempts,
    ...(token ? { credentials: { username: values.username, token } } : {}),
  });
  if (result.pullRequest) {
    const verb = result.pullRequest.created ? 'opened' : result.changed ? 'updated' : 'unchanged:';
    process.stdout.write(
      `${verb} pull request #${result.pullRequest.number} ${result.pullRequest.url} (${result.commit})\n`,
    );
  } else {
    process.stdout.write(
      result.changed
        ? `${mode === 'push' ? 'pushed' : 'committed'} ${result.commit} to ${values.branch} (attempt ${result.attempts})\n`
        : `${values.branch} already holds this change (${result.commit}): nothing to commit\n`,
    );
  }
  return 0;
}
