// A local stand-in for the parts of GitHub's REST API that kube-actions uses, since GitHub cannot
// be reached from here. It is backed by the real bare repositories of a GitServer (git plumbing
// does the object work: hash-object, a scratch index for trees, commit-tree, update-ref with the
// old value as compare-and-swap), signs commits made without an author with a real SSH key as
// GitHub signs web-flow commits, and checks every request and response body against GitHub's
// published OpenAPI description: a request our client should not send gets GitHub's 422, a
// response the real API would not give is a 500 and is recorded in `violations`.
//
// For GitHub Actions it serves the workflows in those repositories (contents API, workflow
// lookup), dispatches that start scripted runs (jobs and steps going queued -> in_progress ->
// completed on a clock the test controls, with the conclusions the script gives; cancellable),
// the run lists and job lists that watchers poll, rate-limit headers on every response, a primary
// budget per token, scripted secondary rate limits (403 or 429 with Retry-After), and a mode that
// refuses `return_run_details` as GitHub Enterprise Server before 3.21 does. Any request a client
// sends while a Retry-After it was given is still pending is recorded in `rateLimitViolations`.
import { execFile, spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { parse as parseYAML } from 'yaml';
import { GIT_ENV, type GitServer } from './git-server.ts';
import { matchOperation, requestBodyErrors, responseErrors, type MatchedOperation } from './openapi.ts';

const run = promisify(execFile);

export interface StandInUser {
  login: string;
  id: number;
  type: 'User' | 'Bot';
}

interface PullRequest {
  number: number;
  owner: string;
  repo: string;
  head: string;
  base: string;
  title: string;
  body: string | null;
  draft: boolean;
  state: 'open' | 'closed';
  /** As on GitHub, a closed pull request keeps the head it had: later pushes to its branch do not move it. */
  closedHeadSha?: string;
  user: StandInUser;
  labels: string[];
  createdAt: string;
  updatedAt: string;
}

/** A recorded API call, for tests that count or inspect requests. */
export interface StandInRequest {
  method: string;
  operationId: string;
  params: Record<string, string>;
  body: unknown;
  status: number;
}

class HttpError extends Error {
  readonly status: number;
  readonly errors: unknown[] | undefined;
  constructor(status: number, message: string, errors?: unknown[]) {
    super(message);
    this.status = status;
    this.errors = errors;
  }
}

type Handler = (ctx: {
  user: StandInUser;
  params: Record<string, string>;
  query: URLSearchParams;
  body: Record<string, unknown>;
}) => Promise<{ status: number; body?: unknown }>;

const SIGNER_EMAIL = 'noreply@github.com';

/** One step of a scripted job. */
export interface ScriptedStep {
  name: string;
  /** How long it runs (default 1). */
  seconds?: number;
  /** Default success; a failure skips the job's later steps and fails the job. */
  conclusion?: 'success' | 'failure' | 'skipped' | 'neutral';
}

export interface ScriptedJob {
  name: string;
  /** Seconds the job waits for a runner (default 0). */
  queuedSeconds?: number;
  steps: ScriptedStep[];
}

/**
 * What a dispatched run does, on the stand-in's clock: queued for `queuedSeconds`, then its jobs
 * one after another (a failed job skips the later ones), then completed with the jobs' outcome.
 */
export interface RunScript {
  queuedSeconds?: number;
  jobs?: ScriptedJob[];
  /** The run's conclusion whatever its jobs did, e.g. startup_failure with no jobs. */
  conclusion?: string;
  /** The last step never finishes: the run stays in progress until it is cancelled. */
  hang?: boolean;
  /** Seconds before the run shows in run lists (GitHub creates runs asynchronously). */
  listedAfterSeconds?: number;
}

const DEFAULT_SCRIPT: RunScript = {
  jobs: [{ name: 'build', steps: [{ name: 'Set up job' }, { name: 'Run' }] }],
};

export interface StandInRun {
  id: number;
  owner: string;
  repo: string;
  workflowPath: string;
  workflowId: number;
  workflowName: string;
  headBranch: string;
  headSha: string;
  displayTitle: string;
  runNumber: number;
  inputs: Record<string, unknown>;
  actor: StandInUser;
  createdMs: number;
  cancelledMs?: number;
  script: RunScript;
}

export interface StandInOptions {
  /** The clock runs progress on and the Date header tells (default the real one). */
  clock?: { now(): number };
  /**
   * How many real milliseconds one second of a rate-limit wait lasts (default 1000): Retry-After
   * and x-ratelimit-reset are in these seconds, so a client whose plugins use the same scale waits
   * briefly yet exactly as long as it was told.
   */
  secondMs?: number;
  /** Primary budget per token (default 5000 requests per 3600 seconds). */
  rateLimit?: { limit: number; windowSeconds: number };
}

interface RateState {
  windowStart: number;
  used: number;
  /** Real time before which the token must not send (a Retry-After or reset given to it). */
  blockedUntil: number;
  blockedBy: string;
}

interface ScriptedLimit {
  status: 403 | 429;
  kind: 'secondary' | 'primary';
  retryAfterSeconds: number;
}

const SECONDARY_MESSAGE =
  'You have exceeded a secondary rate limit. Please wait a few minutes before you try again. If you reach out to GitHub Support for help, please include the request ID.';

export class GitHubStandIn {
  readonly requests: StandInRequest[] = [];
  /** Responses that did not match GitHub's OpenAPI description (each also answered with a 500). */
  readonly violations: string[] = [];
  private readonly git: GitServer;
  private readonly tokens: Map<string, StandInUser>;
  private server!: Server;
  private port = 0;
  private keyDir = '';
  private readonly pulls: PullRequest[] = [];
  private readonly locks = new Map<string, Promise<unknown>>();
  private readonly handlers: Record<string, Handler>;
  private readonly interceptors = new Map<string, () => Promise<void>>();
  /** Requests sent while a Retry-After (or rate-limit reset) given to their token was pending. */
  readonly rateLimitViolations: string[] = [];
  /** Answer a dispatch carrying return_run_details with 422, as GitHub Enterprise Server before 3.21 does. */
  rejectRunDetails = false;
  /** Called at the start of every request (e.g. to move a test clock on). */
  onRequest: (() => void) | undefined;
  private readonly clock: { now(): number };
  private readonly secondMs: number;
  private rateLimit: { limit: number; windowSeconds: number };
  private readonly rates = new Map<string, RateState>();
  private readonly scriptedLimits = new Map<string, ScriptedLimit[]>();
  private readonly faults = new Map<string, { status: number; message: string }>();
  private readonly runList: StandInRun[] = [];
  private readonly scripts = new Map<string, RunScript | ((run: StandInRun) => RunScript)>();
  private nextRunId = 20_000_000_001;

  private constructor(git: GitServer, tokens: Record<string, StandInUser>, options: StandInOptions = {}) {
    this.git = git;
    this.tokens = new Map(Object.entries(tokens));
    this.clock = options.clock ?? { now: () => Date.now() };
    this.secondMs = options.secondMs ?? 1000;
    this.rateLimit = options.rateLimit ?? { limit: 5000, windowSeconds: 3600 };
    this.handlers = {
      'git/get-ref': (c) => this.getRef(c.params),
      'git/create-ref': (c) => this.createRef(c.params, c.body),
      'git/update-ref': (c) => this.updateRef(c.params, c.body),
      'git/create-blob': (c) => this.createBlob(c.params, c.body),
      'git/create-tree': (c) => this.createTree(c.params, c.body),
      'git/create-commit': (c) => this.createCommit(c.params, c.body, c.user),
      'git/get-commit': (c) => this.getCommit(c.params),
      'pulls/list': (c) => this.listPulls(c.params, c.query),
      'pulls/create': (c) => this.createPull(c.params, c.body, c.user),
      'pulls/get': (c) => this.getPull(c.params),
      'pulls/update': (c) => this.updatePull(c.params, c.body),
      'issues/add-labels': (c) => this.addLabels(c.params, c.body),
      'repos/get': (c) => this.getRepository(c.params),
      'repos/get-content': (c) => this.getContent(c.params, c.query),
      'actions/get-workflow': (c) => this.getWorkflow(c.params),
      'actions/create-workflow-dispatch': (c) => this.createDispatch(c.params, c.body, c.user),
      'actions/list-workflow-runs': (c) => this.listRuns(c.params, c.query),
      'actions/get-workflow-run': (c) => this.getRun(c.params),
      'actions/list-jobs-for-workflow-run': (c) => this.listJobs(c.params, c.query),
      'actions/cancel-workflow-run': (c) => this.cancelRun(c.params),
    };
  }

  /** Serves the repositories of `git` ("owner/name" repos) to callers holding one of `tokens`. */
  static async start(
    git: GitServer,
    tokens: Record<string, StandInUser>,
    options: StandInOptions = {},
  ): Promise<GitHubStandIn> {
    const s = new GitHubStandIn(git, tokens, options);
    s.keyDir = await mkdtemp(join(tmpdir(), 'kube-actions-gh-signing-'));
    await run('ssh-keygen', [
      '-q',
      '-t',
      'ed25519',
      '-N',
      '',
      '-C',
      SIGNER_EMAIL,
      '-f',
      join(s.keyDir, 'key'),
    ]);
    const pub = (await run('cat', [join(s.keyDir, 'key.pub')])).stdout.trim();
    await writeFile(join(s.keyDir, 'allowed_signers'), `${SIGNER_EMAIL} namespaces="git" ${pub}\n`);
    s.server = createServer((req, res) => void s.handle(req, res));
    await new Promise<void>((resolve) => s.server.listen(0, '127.0.0.1', resolve));
    s.port = (s.server.address() as { port: number }).port;
    return s;
  }

  /** GITHUB_API_URL for clients. */
  get apiURL(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** The file `git verify-commit` needs (gpg.ssh.allowedSignersFile) to check the stand-in's signatures. */
  get allowedSignersFile(): string {
    return join(this.keyDir, 'allowed_signers');
  }

  /**
   * Runs `action` once, just before the next `operationId` call is handled: lets a test move a
   * branch between a client's read and its write, deterministically.
   */
  beforeNext(operationId: string, action: () => Promise<void>): void {
    this.interceptors.set(operationId, action);
  }

  pullRequests(): readonly PullRequest[] {
    return this.pulls;
  }

  /** What runs of `workflowFile` in `repository` ("owner/name") will do: one script, or one per run. */
  setRunScript(
    repository: string,
    workflowFile: string,
    script: RunScript | ((run: StandInRun) => RunScript),
  ): void {
    this.scripts.set(`${repository}/${workflowFile}`, script);
  }

  /** Every run dispatched so far, oldest first. */
  runs(): readonly StandInRun[] {
    return this.runList;
  }

  /**
   * Starts a run as another dispatch would (someone else's, e.g. to make a search ambiguous),
   * without an API request.
   */
  async startRun(
    repository: string,
    workflowFile: string,
    ref: string,
    inputs: Record<string, unknown> = {},
  ): Promise<StandInRun> {
    const [owner, repo] = repository.split('/') as [string, string];
    const params = { owner, repo };
    const path = `.github/workflows/${workflowFile}`;
    const text = await this.fileAt(params, ref, path);
    if (text === undefined) throw new Error(`${path} does not exist at ${ref} of ${repository}`);
    return this.newRun(params, path, text, ref, inputs, this.tokens.values().next().value!);
  }

  /** Answers the next `operationId` request (of any token) as rate-limited. */
  rateLimitNext(operationId: string, limit: Partial<ScriptedLimit> = {}): void {
    const list = this.scriptedLimits.get(operationId) ?? [];
    list.push({
      status: limit.status ?? 403,
      kind: limit.kind ?? 'secondary',
      retryAfterSeconds: limit.retryAfterSeconds ?? 1,
    });
    this.scriptedLimits.set(operationId, list);
  }

  /** Sets the primary budget per token, starting a new window for every token. */
  setRateLimit(limit: number, windowSeconds: number): void {
    this.rateLimit = { limit, windowSeconds };
    this.rates.clear();
  }

  /**
   * Answers the next `operationId` request with `status` and `message`, as a failing proxy or
   * load balancer would: outside the contract, so not checked against the description.
   */
  failNext(operationId: string, status: number, message = 'Bad Gateway'): void {
    this.faults.set(operationId, { status, message });
  }

  async stop(): Promise<void> {
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    await rm(this.keyDir, { recursive: true, force: true });
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', this.apiURL);
    const method = req.method ?? 'GET';
    const match = matchOperation(method, url.pathname);
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const raw = Buffer.concat(chunks).toString('utf8');
    this.onRequest?.();
    const headers: Record<string, string> = {};
    const rate = this.rateOf(req);
    const send = (status: number, body?: unknown) => {
      res.writeHead(status, {
        'Content-Type': 'application/json; charset=utf-8',
        Date: new Date(this.clock.now()).toUTCString(),
        ...this.rateHeaders(rate),
        ...headers,
      });
      res.end(body === undefined ? '' : JSON.stringify(body));
    };
    const record: StandInRequest = {
      method,
      operationId: match?.operationId ?? '(undocumented)',
      params: match?.params ?? {},
      body: undefined,
      status: 0,
    };
    this.requests.push(record);
    if (!match) {
      this.violations.push(`${method} ${url.pathname} is not an operation of GitHub's REST API`);
      record.status = 404;
      return send(404, { message: 'Not Found', documentation_url: 'https://docs.github.com/rest' });
    }
    const reply = (status: number, body?: unknown) => {
      record.status = status;
      const problems = responseErrors(match, method, status, body);
      if (problems) {
        const violation = `${match.operationId} ${status}: ${problems}`;
        this.violations.push(violation);
        return send(500, {
          message: `stand-in response does not match GitHub's OpenAPI description: ${violation}`,
        });
      }
      send(status, body);
    };
    const user = this.authenticate(req);
    if (!user)
      return reply(401, {
        message: 'Bad credentials',
        documentation_url: 'https://docs.github.com/rest',
        status: '401',
      });
    const limited = this.rateLimited(rate, `${method} ${match.operationId}`, headers);
    if (limited) return reply(limited.status, limited.body);
    const fault = this.faults.get(match.operationId);
    if (fault) {
      this.faults.delete(match.operationId);
      record.status = fault.status;
      return send(fault.status, { message: fault.message });
    }
    let body: Record<string, unknown> = {};
    if (raw !== '') {
      try {
        body = JSON.parse(raw) as Record<string, unknown>;
      } catch {
        return reply(400, {
          message: 'Problems parsing JSON',
          documentation_url: 'https://docs.github.com/rest',
        });
      }
    }
    record.body = body;
    const invalid = method === 'GET' ? '' : requestBodyErrors(match, method, body);
    if (invalid) return reply(422, this.errorBody(`Invalid request.\n\n${invalid}`));
    const handler = this.handlers[match.operationId];
    if (!handler) {
      this.violations.push(`${match.operationId} is documented but the stand-in does not implement it`);
      record.status = 501;
      return send(501, { message: `the GitHub stand-in does not implement ${match.operationId}` });
    }
    try {
      const intercept = this.interceptors.get(match.operationId);
      this.interceptors.delete(match.operationId);
      await intercept?.();
      const repoPath = this.repoPath(match);
      if (repoPath === undefined) throw new HttpError(404, 'Not Found');
      // One writer per repository at a time, as GitHub serializes ref updates.
      const result = await this.serialized(repoPath, () =>
        handler({ user, params: match.params, query: url.searchParams, body }),
      );
      reply(result.status, result.body);
    } catch (err) {
      if (err instanceof HttpError) return reply(err.status, this.errorBody(err.message, err.errors));
      // A bug of the stand-in, not an answer GitHub would give.
      this.violations.push(`${match.operationId} failed in the stand-in: ${String(err)}`);
      record.status = 500;
      send(500, { message: `the GitHub stand-in failed: ${String(err)}` });
    }
  }

  private errorBody(message: string, errors?: unknown[]) {
    return {
      message,
      ...(errors ? { errors } : {}),
      documentation_url: 'https://docs.github.com/rest',
      status: '',
    };
  }

  // ---- rate limits ---------------------------------------------------------------------------

  private rateOf(req: IncomingMessage): RateState {
    const key = (req.headers.authorization ?? '').split(' ')[1] ?? '';
    let state = this.rates.get(key);
    const now = Date.now();
    if (!state || now >= state.windowStart + this.rateLimit.windowSeconds * this.secondMs) {
      state = {
        windowStart: now,
        used: 0,
        blockedUntil: state?.blockedUntil ?? 0,
        blockedBy: state?.blockedBy ?? '',
      };
      this.rates.set(key, state);
    }
    state.used++;
    return state;
  }

  /** Seconds (of this stand-in's scale) from now until `when` (real ms), rounded up. */
  private secondsUntil(when: number): number {
    return Math.max(0, Math.ceil((when - Date.now()) / this.secondMs));
  }

  private rateHeaders(state: RateState): Record<string, string> {
    const windowEnd = state.windowStart + this.rateLimit.windowSeconds * this.secondMs;
    const exhausted = state.used >= this.rateLimit.limit || state.blockedBy === 'primary';
    const resetAt = state.blockedBy === 'primary' ? Math.max(windowEnd, state.blockedUntil) : windowEnd;
    return {
      'x-ratelimit-limit': String(this.rateLimit.limit),
      'x-ratelimit-remaining': String(exhausted ? 0 : this.rateLimit.limit - state.used),
      'x-ratelimit-reset': String(Math.floor(Date.now() / 1000) + this.secondsUntil(resetAt)),
      'x-ratelimit-used': String(Math.min(state.used, this.rateLimit.limit)),
      'x-ratelimit-resource': 'core',
    };
  }

  private rateLimited(
    state: RateState,
    what: string,
    headers: Record<string, string>,
  ): { status: number; body: unknown } | undefined {
    const now = Date.now();
    const secondary = (status: number, seconds: number) => {
      headers['Retry-After'] = String(seconds);
      return {
        status,
        body: { message: SECONDARY_MESSAGE, documentation_url: 'https://docs.github.com/rest' },
      };
    };
    const primary = () => ({
      status: 403,
      body: {
        message:
          'API rate limit exceeded for user. (But here is the good news: Authenticated requests get a higher rate limit.)',
        documentation_url: 'https://docs.github.com/rest/overview/rate-limits-for-the-rest-api',
      },
    });
    if (now < state.blockedUntil) {
      this.rateLimitViolations.push(
        `${what} arrived ${state.blockedUntil - now} ms before the wait given by a ${state.blockedBy} rate limit was over`,
      );
      return state.blockedBy === 'primary'
        ? primary()
        : secondary(403, this.secondsUntil(state.blockedUntil));
    }
    if (state.blockedBy === 'primary') state.blockedBy = '';
    const scripted = this.scriptedLimits.get(what.split(' ')[1]!)?.shift();
    if (scripted) {
      state.blockedUntil = now + scripted.retryAfterSeconds * this.secondMs;
      state.blockedBy = scripted.kind;
      return scripted.kind === 'primary' ? primary() : secondary(scripted.status, scripted.retryAfterSeconds);
    }
    if (state.used > this.rateLimit.limit) {
      state.blockedUntil = state.windowStart + this.rateLimit.windowSeconds * this.secondMs;
      state.blockedBy = 'primary';
      return primary();
    }
    return undefined;
  }

  private authenticate(req: IncomingMessage): StandInUser | undefined {
    const [scheme, token] = (req.headers.authorization ?? '').split(' ');
    if (!token || !/^(token|bearer)$/i.test(scheme ?? '')) return undefined;
    return this.tokens.get(token);
  }

  private repoPath(match: MatchedOperation): string | undefined {
    const { owner, repo } = match.params;
    if (!owner || !repo || !/^[\w.-]+$/.test(owner) || !/^[\w.-]+$/.test(repo)) return undefined;
    return join(this.git.root, owner, `${repo}.git`);
  }

  private async serialized<T>(key: string, task: () => Promise<T>): Promise<T> {
    const previous = this.locks.get(key) ?? Promise.resolve();
    const next = previous.then(task, task);
    this.locks.set(
      key,
      next.catch(() => undefined),
    );
    return next;
  }

  private async gitIn(
    params: Record<string, string>,
    args: string[],
    options: { input?: Buffer | string; env?: NodeJS.ProcessEnv } = {},
  ): Promise<string> {
    const cwd = join(this.git.root, params.owner!, `${params.repo}.git`);
    return new Promise((resolve, reject) => {
      const child = spawn('git', args, { cwd, env: { ...GIT_ENV, ...options.env } });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      child.on('error', reject);
      child.on('close', (code) => {
        if (code === 0) resolve(stdout);
        else if (/not a git repository|No such file/i.test(stderr)) reject(new HttpError(404, 'Not Found'));
        else reject(new GitFailure(`git ${args[0]}: ${stderr.trim()}`));
      });
      // git may exit without reading its input (e.g. rev-parse): not an error of ours.
      child.stdin.on('error', () => undefined);
      child.stdin.end(options.input ?? '');
    });
  }

  private async resolve(
    params: Record<string, string>,
    rev: string,
    type: string,
  ): Promise<string | undefined> {
    try {
      return (await this.gitIn(params, ['rev-parse', '--verify', '--quiet', `${rev}^{${type}}`])).trim();
    } catch (err) {
      if (err instanceof GitFailure) return undefined;
      throw err;
    }
  }

  // ---- URLs and objects shaped like GitHub's ------------------------------------------------

  private api(params: Record<string, string>, rest = ''): string {
    return `${this.apiURL}/repos/${params.owner}/${params.repo}${rest}`;
  }

  private html(params: Record<string, string>, rest = ''): string {
    return `${this.git.baseUrl}/${params.owner}/${params.repo}${rest}`;
  }

  private userObject(user: StandInUser) {
    // Bot logins hold brackets ("app[bot]"), which GitHub percent-encodes in URLs.
    const login = encodeURIComponent(user.login);
    const u = `${this.apiURL}/users/${login}`;
    return {
      login: user.login,
      id: user.id,
      node_id: nodeId('U', user.id),
      avatar_url: `${this.git.baseUrl}/avatars/${login}`,
      gravatar_id: '',
      url: u,
      html_url: `${this.git.baseUrl}/${login}`,
      followers_url: `${u}/followers`,
      following_url: `${u}/following{/other_user}`,
      gists_url: `${u}/gists{/gist_id}`,
      starred_url: `${u}/starred{/owner}{/repo}`,
      subscriptions_url: `${u}/subscriptions`,
      organizations_url: `${u}/orgs`,
      repos_url: `${u}/repos`,
      events_url: `${u}/events{/privacy}`,
      received_events_url: `${u}/received_events`,
      type: user.type,
      site_admin: false,
    };
  }

  private repositoryObject(params: Record<string, string>) {
    const a = this.api(params);
    const id = idOf(`${params.owner}/${params.repo}`);
    const owner = this.userObject({ login: params.owner!, id: idOf(params.owner!), type: 'User' });
    const now = new Date(0).toISOString();
    return {
      id,
      node_id: nodeId('R', id),
      name: params.repo!,
      full_name: `${params.owner}/${params.repo}`,
      owner,
      private: true,
      html_url: this.html(params),
      description: null,
      fork: false,
      url: a,
      archive_url: `${a}/{archive_format}{/ref}`,
      assignees_url: `${a}/assignees{/user}`,
      blobs_url: `${a}/git/blobs{/sha}`,
      branches_url: `${a}/branches{/branch}`,
      collaborators_url: `${a}/collaborators{/collaborator}`,
      comments_url: `${a}/comments{/number}`,
      commits_url: `${a}/commits{/sha}`,
      compare_url: `${a}/compare/{base}...{head}`,
      contents_url: `${a}/contents/{+path}`,
      contributors_url: `${a}/contributors`,
      deployments_url: `${a}/deployments`,
      downloads_url: `${a}/downloads`,
      events_url: `${a}/events`,
      forks_url: `${a}/forks`,
      git_commits_url: `${a}/git/commits{/sha}`,
      git_refs_url: `${a}/git/refs{/sha}`,
      git_tags_url: `${a}/git/tags{/sha}`,
      git_url: `git://127.0.0.1/${params.owner}/${params.repo}.git`,
      issue_comment_url: `${a}/issues/comments{/number}`,
      issue_events_url: `${a}/issues/events{/number}`,
      issues_url: `${a}/issues{/number}`,
      keys_url: `${a}/keys{/key_id}`,
      labels_url: `${a}/labels{/name}`,
      languages_url: `${a}/languages`,
      merges_url: `${a}/merges`,
      milestones_url: `${a}/milestones{/number}`,
      notifications_url: `${a}/notifications{?since,all,participating}`,
      pulls_url: `${a}/pulls{/number}`,
      releases_url: `${a}/releases{/id}`,
      ssh_url: `git@127.0.0.1:${params.owner}/${params.repo}.git`,
      stargazers_url: `${a}/stargazers`,
      statuses_url: `${a}/statuses/{sha}`,
      subscribers_url: `${a}/subscribers`,
      subscription_url: `${a}/subscription`,
      tags_url: `${a}/tags`,
      teams_url: `${a}/teams`,
      trees_url: `${a}/git/trees{/sha}`,
      clone_url: this.git.url(`${params.owner}/${params.repo}`),
      mirror_url: null,
      hooks_url: `${a}/hooks`,
      svn_url: this.html(params),
      homepage: null,
      language: null,
      forks: 0,
      forks_count: 0,
      stargazers_count: 0,
      watchers_count: 0,
      watchers: 0,
      size: 0,
      default_branch: 'main',
      open_issues: 0,
      open_issues_count: 0,
      has_issues: true,
      has_projects: false,
      has_wiki: false,
      has_pages: false,
      has_downloads: false,
      archived: false,
      disabled: false,
      license: null,
      pushed_at: now,
      created_at: now,
      updated_at: now,
    };
  }

  private refObject(params: Record<string, string>, ref: string, sha: string) {
    return {
      ref,
      node_id: nodeId('REF', idOf(ref)),
      url: this.api(params, `/git/${ref}`),
      object: { type: 'commit', sha, url: this.api(params, `/git/commits/${sha}`) },
    };
  }

  // ---- refs ------------------------------------------------------------------------------------

  private async getRef(params: Record<string, string>) {
    const ref = `refs/${params.ref}`;
    const sha = await this.resolve(params, ref, 'commit');
    if (!sha || !params.ref!.startsWith('heads/')) throw new HttpError(404, 'Not Found');
    return { status: 200, body: this.refObject(params, ref, sha) };
  }

  private async createRef(params: Record<string, string>, body: Record<string, unknown>) {
    const ref = String(body.ref);
    const sha = String(body.sha);
    if (!/^refs\/[^/]+\/.+/.test(ref))
      throw new HttpError(422, 'Reference name must start with refs/ and have at least two slashes.');
    if (!(await this.resolve(params, sha, 'commit'))) throw new HttpError(422, 'Object does not exist');
    if (await this.resolve(params, ref, 'commit')) throw new HttpError(422, 'Reference already exists');
    // An empty old value: create only if it does not exist.
    await this.gitIn(params, ['update-ref', ref, sha, '']);
    return { status: 201, body: this.refObject(params, ref, sha) };
  }

  private async updateRef(params: Record<string, string>, body: Record<string, unknown>) {
    const ref = `refs/${params.ref}`;
    const sha = String(body.sha);
    const current = await this.resolve(params, ref, 'commit');
    if (!current) throw new HttpError(422, 'Reference does not exist');
    if (!(await this.resolve(params, sha, 'commit'))) throw new HttpError(422, 'Object does not exist');
    if (body.force !== true && !(await this.isAncestor(params, current, sha))) {
      throw new HttpError(422, 'Update is not a fast forward');
    }
    await this.gitIn(params, ['update-ref', ref, sha, current]);
    return { status: 200, body: this.refObject(params, ref, sha) };
  }

  private async isAncestor(params: Record<string, string>, ancestor: string, of: string): Promise<boolean> {
    try {
      await this.gitIn(params, ['merge-base', '--is-ancestor', ancestor, of]);
      return true;
    } catch (err) {
      if (err instanceof GitFailure) return false;
      throw err;
    }
  }

  // ---- blobs, trees, commits -------------------------------------------------------------

  private async createBlob(params: Record<string, string>, body: Record<string, unknown>) {
    const encoding = (body.encoding as string | undefined) ?? 'utf-8';
    if (encoding !== 'utf-8' && encoding !== 'base64')
      throw new HttpError(422, `encoding must be utf-8 or base64`);
    const content = Buffer.from(String(body.content), encoding === 'base64' ? 'base64' : 'utf8');
    const sha = (await this.gitIn(params, ['hash-object', '-w', '--stdin'], { input: content })).trim();
    return { status: 201, body: { url: this.api(params, `/git/blobs/${sha}`), sha } };
  }

  private async createTree(params: Record<string, string>, body: Record<string, unknown>) {
    const scratch = await mkdtemp(join(tmpdir(), 'kube-actions-gh-index-'));
    const env = { GIT_INDEX_FILE: join(scratch, 'index') };
    try {
      if (body.base_tree) {
        const base = await this.resolve(params, body.base_tree as string, 'tree');
        if (!base) throw new HttpError(422, `base_tree ${body.base_tree as string} is not a valid tree`);
        await this.gitIn(params, ['read-tree', base], { env });
      } else {
        await this.gitIn(params, ['read-tree', '--empty'], { env });
      }
      for (const entry of body.tree as {
        path: string;
        mode: string;
        type: string;
        sha?: string | null;
        content?: string;
      }[]) {
        if (entry.type !== 'blob')
          throw new HttpError(
            422,
            `the stand-in only builds trees of blobs (got ${entry.type} at ${entry.path})`,
          );
        if (
          entry.path.startsWith('/') ||
          entry.path.split('/').some((p) => p === '' || p === '.' || p === '..')
        ) {
          throw new HttpError(422, `tree.path ${entry.path} is invalid`);
        }
        if (entry.sha === null) {
          // Mode 0 removes the entry; --index-info works without a work tree (bare repository).
          await this.gitIn(params, ['update-index', '--index-info'], {
            env,
            input: `0 ${'0'.repeat(40)}\t${entry.path}\n`,
          });
          continue;
        }
        let sha = entry.sha;
        if (entry.content !== undefined) {
          sha = (await this.gitIn(params, ['hash-object', '-w', '--stdin'], { input: entry.content })).trim();
        } else if (!sha || !(await this.resolve(params, sha, 'blob'))) {
          throw new HttpError(422, `tree.sha ${sha} is not a valid blob`);
        }
        await this.gitIn(
          params,
          ['update-index', '--add', '--cacheinfo', `${entry.mode},${sha},${entry.path}`],
          { env },
        );
      }
      const sha = (await this.gitIn(params, ['write-tree'], { env })).trim();
      return { status: 201, body: await this.treeObject(params, sha) };
    } finally {
      await rm(scratch, { recursive: true, force: true });
    }
  }

  private async treeObject(params: Record<string, string>, sha: string) {
    const entries = (await this.gitIn(params, ['ls-tree', '-l', sha])).split('\n').filter(Boolean);
    return {
      sha,
      url: this.api(params, `/git/trees/${sha}`),
      truncated: false,
      tree: entries.map((line) => {
        const [meta, path] = line.split('\t') as [string, string];
        const [mode, type, objectSha, size] = meta.split(/\s+/) as [string, string, string, string];
        return {
          path,
          mode,
          type,
          sha: objectSha,
          ...(type === 'blob' ? { size: Number(size) } : {}),
          url: this.api(params, `/git/${type === 'blob' ? 'blobs' : 'trees'}/${objectSha}`),
        };
      }),
    };
  }

  private async createCommit(
    params: Record<string, string>,
    body: Record<string, unknown>,
    user: StandInUser,
  ) {
    const tree = await this.resolve(params, String(body.tree), 'tree');
    if (!tree) throw new HttpError(422, 'Tree SHA does not exist');
    const parents = (body.parents as string[] | undefined) ?? [];
    for (const p of parents) {
      if (!(await this.resolve(params, p, 'commit')))
        throw new HttpError(422, 'Parent SHA does not exist or is not a commit object');
    }
    type Person = { name: string; email: string; date?: string };
    const author = body.author as Person | undefined;
    const committer = (body.committer as Person | undefined) ?? author;
    const self = { name: user.login, email: `${user.id}+${user.login}@users.noreply.github.com` };
    const env: NodeJS.ProcessEnv = {
      GIT_AUTHOR_NAME: (author ?? self).name,
      GIT_AUTHOR_EMAIL: (author ?? self).email,
      ...(author?.date ? { GIT_AUTHOR_DATE: author.date } : {}),
      // GitHub commits as itself ("web-flow") when it signs, as the given committer otherwise.
      GIT_COMMITTER_NAME: committer ? committer.name : 'GitHub',
      GIT_COMMITTER_EMAIL: committer ? committer.email : SIGNER_EMAIL,
      ...(committer?.date ? { GIT_COMMITTER_DATE: committer.date } : {}),
    };
    // GitHub signs only commits it authors itself: no author, committer or signature given.
    const sign = !body.author && !body.committer && !body.signature;
    const signing = sign ? ['-c', 'gpg.format=ssh', '-c', `user.signingKey=${join(this.keyDir, 'key')}`] : [];
    const args = [
      ...signing,
      'commit-tree',
      tree,
      ...parents.flatMap((p) => ['-p', p]),
      ...(sign ? ['-S'] : []),
      '-F',
      '-',
    ];
    const sha = (await this.gitIn(params, args, { input: String(body.message), env })).trim();
    return { status: 201, body: await this.commitObject(params, sha) };
  }

  private async getCommit(params: Record<string, string>) {
    const sha = await this.resolve(params, params.commit_sha!, 'commit');
    if (!sha) throw new HttpError(404, 'Not Found');
    return { status: 200, body: await this.commitObject(params, sha) };
  }

  private async commitObject(params: Record<string, string>, sha: string) {
    const raw = await this.gitIn(params, ['cat-file', 'commit', sha]);
    const headerEnd = raw.indexOf('\n\n');
    const headers = raw.slice(0, headerEnd);
    const message = raw.slice(headerEnd + 2);
    const field = (name: string) =>
      headers
        .split('\n')
        .filter((l) => l.startsWith(`${name} `))
        .map((l) => l.slice(name.length + 1));
    const person = (line: string) => {
      const m = /^(.*) <(.*)> (\d+) ([+-]\d{4})$/.exec(line)!;
      return {
        name: m[1]!,
        email: m[2]!,
        date: new Date(Number(m[3]) * 1000).toISOString().replace('.000Z', 'Z'),
      };
    };
    // gpgsig is a multi-line header: continuation lines start with a space.
    const gpgsig = /^gpgsig .*\n(?: .*\n)*/m;
    const signature =
      gpgsig.exec(`${headers}\n`)?.[0].slice('gpgsig '.length).replace(/\n /g, '\n').trimEnd() ?? null;
    const verified = signature !== null && (await this.verifies(params, sha));
    const tree = field('tree')[0]!;
    return {
      sha,
      node_id: nodeId('C', idOf(sha)),
      url: this.api(params, `/git/commits/${sha}`),
      html_url: this.html(params, `/commit/${sha}`),
      author: person(field('author')[0]!),
      committer: person(field('committer')[0]!),
      tree: { sha: tree, url: this.api(params, `/git/trees/${tree}`) },
      message,
      parents: field('parent').map((p) => ({
        sha: p,
        url: this.api(params, `/git/commits/${p}`),
        html_url: this.html(params, `/commit/${p}`),
      })),
      verification: {
        verified,
        reason: signature === null ? 'unsigned' : verified ? 'valid' : 'invalid',
        signature,
        payload: signature === null ? null : raw.replace(gpgsig, ''),
        verified_at: verified ? new Date().toISOString() : null,
      },
    };
  }

  private async verifies(params: Record<string, string>, sha: string): Promise<boolean> {
    try {
      await this.gitIn(params, [
        '-c',
        `gpg.ssh.allowedSignersFile=${this.allowedSignersFile}`,
        'verify-commit',
        sha,
      ]);
      return true;
    } catch (err) {
      if (err instanceof GitFailure) return false;
      throw err;
    }
  }

  // ---- pull requests ----------------------------------------------------------------------

  private pullsOf(params: Record<string, string>): PullRequest[] {
    return this.pulls.filter((p) => p.owner === params.owner && p.repo === params.repo);
  }

  private async listPulls(params: Record<string, string>, query: URLSearchParams) {
    const state = query.get('state') ?? 'open';
    const head = query.get('head');
    const base = query.get('base');
    const found = this.pullsOf(params).filter(
      (p) =>
        (state === 'all' || p.state === state) &&
        (!head || head === `${p.owner}:${p.head}`) &&
        (!base || base === p.base),
    );
    const perPage = Number(query.get('per_page') ?? 30);
    const bodies = await Promise.all(found.slice(0, perPage).map((p) => this.pullObject(p, false)));
    return { status: 200, body: bodies };
  }

  private async createPull(params: Record<string, string>, body: Record<string, unknown>, user: StandInUser) {
    const head = String(body.head).replace(new RegExp(`^${params.owner}:`), '');
    const base = String(body.base);
    const headSha = await this.resolve(params, `refs/heads/${head}`, 'commit');
    const baseSha = await this.resolve(params, `refs/heads/${base}`, 'commit');
    const invalid = (field: string) =>
      new HttpError(422, 'Validation Failed', [{ resource: 'PullRequest', field, code: 'invalid' }]);
    if (!headSha) throw invalid('head');
    if (!baseSha) throw invalid('base');
    if (this.pullsOf(params).some((p) => p.state === 'open' && p.head === head && p.base === base)) {
      throw new HttpError(422, 'Validation Failed', [
        {
          resource: 'PullRequest',
          code: 'custom',
          message: `A pull request already exists for ${params.owner}:${head}.`,
        },
      ]);
    }
    if (await this.isAncestor(params, headSha, baseSha)) {
      throw new HttpError(422, 'Validation Failed', [
        { resource: 'PullRequest', code: 'custom', message: `No commits between ${base} and ${head}` },
      ]);
    }
    const now = new Date().toISOString().replace(/\.\d+Z$/, 'Z');
    const pull: PullRequest = {
      number: this.pulls.length + 1,
      owner: params.owner!,
      repo: params.repo!,
      head,
      base,
      title: typeof body.title === 'string' ? body.title : head,
      body: typeof body.body === 'string' ? body.body : null,
      draft: body.draft === true,
      state: 'open',
      user,
      labels: [],
      createdAt: now,
      updatedAt: now,
    };
    this.pulls.push(pull);
    return { status: 201, body: await this.pullObject(pull, true) };
  }

  private findPull(params: Record<string, string>): PullRequest {
    const pull = this.pullsOf(params).find(
      (p) => p.number === Number(params.pull_number ?? params.issue_number),
    );
    if (!pull) throw new HttpError(404, 'Not Found');
    return pull;
  }

  private async getPull(params: Record<string, string>) {
    return { status: 200, body: await this.pullObject(this.findPull(params), true) };
  }

  private async updatePull(params: Record<string, string>, body: Record<string, unknown>) {
    const pull = this.findPull(params);
    if (typeof body.title === 'string') pull.title = body.title;
    if (typeof body.body === 'string') pull.body = body.body;
    if (body.state === 'closed' && pull.state === 'open')
      pull.closedHeadSha = await this.resolve(params, `refs/heads/${pull.head}`, 'commit');
    if (body.state === 'open') delete pull.closedHeadSha;
    if (body.state === 'open' || body.state === 'closed') pull.state = body.state;
    pull.updatedAt = new Date().toISOString().replace(/\.\d+Z$/, 'Z');
    return { status: 200, body: await this.pullObject(pull, true) };
  }

  private addLabels(params: Record<string, string>, body: Record<string, unknown>) {
    const pull = this.findPull(params);
    const labels = (body.labels as (string | { name: string })[]).map((l) =>
      typeof l === 'string' ? l : l.name,
    );
    for (const l of labels) if (!pull.labels.includes(l)) pull.labels.push(l);
    return Promise.resolve({ status: 200, body: pull.labels.map((l) => this.labelObject(params, l)) });
  }

  private labelObject(params: Record<string, string>, name: string) {
    return {
      id: idOf(name),
      node_id: nodeId('L', idOf(name)),
      url: this.api(params, `/labels/${encodeURIComponent(name)}`),
      name,
      description: '',
      color: 'ededed',
      default: false,
    };
  }

  private async pullObject(pull: PullRequest, full: boolean) {
    const params = { owner: pull.owner, repo: pull.repo };
    const n = pull.number;
    const a = this.api(params);
    const headSha =
      pull.closedHeadSha ??
      (await this.resolve(params, `refs/heads/${pull.head}`, 'commit')) ??
      '0'.repeat(40);
    const baseSha = (await this.resolve(params, `refs/heads/${pull.base}`, 'commit')) ?? '0'.repeat(40);
    const repository = this.repositoryObject(params);
    const side = (ref: string, sha: string) => ({
      label: `${pull.owner}:${ref}`,
      ref,
      sha,
      user: repository.owner,
      repo: repository,
    });
    const link = (href: string) => ({ href });
    const id = idOf(`${pull.owner}/${pull.repo}#${n}`);
    const simple = {
      url: `${a}/pulls/${n}`,
      id,
      node_id: nodeId('PR', id),
      html_url: this.html(params, `/pull/${n}`),
      diff_url: this.html(params, `/pull/${n}.diff`),
      patch_url: this.html(params, `/pull/${n}.patch`),
      issue_url: `${a}/issues/${n}`,
      commits_url: `${a}/pulls/${n}/commits`,
      review_comments_url: `${a}/pulls/${n}/comments`,
      review_comment_url: `${a}/pulls/comments{/number}`,
      comments_url: `${a}/issues/${n}/comments`,
      statuses_url: `${a}/statuses/${headSha}`,
      number: n,
      state: pull.state,
      locked: false,
      title: pull.title,
      user: this.userObject(pull.user),
      body: pull.body,
      labels: pull.labels.map((l) => this.labelObject(params, l)),
      milestone: null,
      created_at: pull.createdAt,
      updated_at: pull.updatedAt,
      closed_at: null,
      merged_at: null,
      merge_commit_sha: null,
      assignee: null,
      draft: pull.draft,
      head: side(pull.head, headSha),
      base: side(pull.base, baseSha),
      _links: {
        self: link(`${a}/pulls/${n}`),
        html: link(this.html(params, `/pull/${n}`)),
        issue: link(`${a}/issues/${n}`),
        comments: link(`${a}/issues/${n}/comments`),
        review_comments: link(`${a}/pulls/${n}/comments`),
        review_comment: link(`${a}/pulls/comments{/number}`),
        commits: link(`${a}/pulls/${n}/commits`),
        statuses: link(`${a}/statuses/${headSha}`),
      },
      author_association: 'CONTRIBUTOR',
      auto_merge: null,
    };
    if (!full) return simple;
    return {
      ...simple,
      merged: false,
      mergeable: null,
      mergeable_state: 'unknown',
      merged_by: null,
      comments: 0,
      review_comments: 0,
      maintainer_can_modify: false,
      commits: 1,
      additions: 0,
      deletions: 0,
      changed_files: 0,
    };
  }

  // ---- repositories and contents ----------------------------------------------------------------

  private getRepository(params: Record<string, string>) {
    return Promise.resolve({
      status: 200,
      body: {
        ...this.repositoryObject(params),
        has_discussions: false,
        network_count: 0,
        subscribers_count: 0,
      },
    });
  }

  /** The commit a branch, tag or full ref names (GitHub's `ref` parameters take all three). */
  private async commitOf(params: Record<string, string>, ref: string): Promise<string | undefined> {
    const candidates = ref.startsWith('refs/') ? [ref] : [`refs/heads/${ref}`, `refs/tags/${ref}`];
    for (const c of candidates) {
      const sha = await this.resolve(params, c, 'commit');
      if (sha) return sha;
    }
    return /^[0-9a-f]{40}$/.test(ref) ? this.resolve(params, ref, 'commit') : undefined;
  }

  private async fileAt(
    params: Record<string, string>,
    ref: string,
    path: string,
  ): Promise<string | undefined> {
    const commit = await this.commitOf(params, ref);
    if (!commit) return undefined;
    const blob = await this.blobAt(params, commit, path);
    return blob ? this.gitIn(params, ['cat-file', 'blob', blob]) : undefined;
  }

  /** The blob at `path` in `commit` (`<rev>:<path>` takes no ^{type} suffix: it would be read as part of the path). */
  private async blobAt(
    params: Record<string, string>,
    commit: string,
    path: string,
  ): Promise<string | undefined> {
    try {
      const sha = (
        await this.gitIn(params, ['rev-parse', '--verify', '--quiet', `${commit}:${path}`])
      ).trim();
      return (await this.gitIn(params, ['cat-file', '-t', sha])).trim() === 'blob' ? sha : undefined;
    } catch (err) {
      if (err instanceof GitFailure) return undefined;
      throw err;
    }
  }

  private async getContent(params: Record<string, string>, query: URLSearchParams) {
    const path = params.path!;
    const ref = query.get('ref') ?? 'main';
    const commit = await this.commitOf(params, ref);
    const blob = commit && (await this.blobAt(params, commit, path));
    if (!blob) throw new HttpError(404, 'Not Found');
    const content = Buffer.from(await this.gitIn(params, ['cat-file', 'blob', blob]), 'utf8');
    const self = this.api(params, `/contents/${path}?ref=${encodeURIComponent(ref)}`);
    const html = this.html(params, `/blob/${ref}/${path}`);
    const git = this.api(params, `/git/blobs/${blob}`);
    return {
      status: 200,
      body: {
        type: 'file',
        encoding: 'base64',
        size: content.length,
        name: path.split('/').pop()!,
        path,
        // GitHub wraps the base64 text at 60 characters.
        content: (content.toString('base64').match(/.{1,60}/g) ?? []).join('\n') + '\n',
        sha: blob,
        url: self,
        git_url: git,
        html_url: html,
        download_url: `${this.git.baseUrl}/raw/${params.owner}/${params.repo}/${ref}/${path}`,
        _links: { self, git, html },
      },
    };
  }

  // ---- workflows, dispatches, runs, jobs ------------------------------------------------------

  /** `deploy.yml`, or a numeric id: the path it names in the default branch. */
  private async workflowPath(params: Record<string, string>, workflowId: string): Promise<string> {
    if (/^\d+$/.test(workflowId)) {
      const files = (
        await this.gitIn(params, ['ls-tree', '--name-only', 'refs/heads/main', '.github/workflows/'])
      )
        .split('\n')
        .filter(Boolean);
      const path = files.find((f) => idOf(f) === Number(workflowId));
      if (!path) throw new HttpError(404, 'Not Found');
      return path;
    }
    return `.github/workflows/${workflowId}`;
  }

  private workflowObject(params: Record<string, string>, path: string, text: string) {
    const id = idOf(path);
    const doc = safeYAML(text);
    const name = typeof doc?.name === 'string' ? doc.name : path;
    const file = path.split('/').pop()!;
    return {
      id,
      node_id: nodeId('W', id),
      name,
      path,
      state: 'active',
      created_at: new Date(0).toISOString(),
      updated_at: new Date(0).toISOString(),
      url: this.api(params, `/actions/workflows/${id}`),
      html_url: this.html(params, `/blob/main/${path}`),
      badge_url: this.html(params, `/workflows/${encodeURIComponent(file)}/badge.svg`),
    };
  }

  private async getWorkflow(params: Record<string, string>) {
    const path = await this.workflowPath(params, params.workflow_id!);
    const text = await this.fileAt(params, 'main', path);
    if (text === undefined) throw new HttpError(404, 'Not Found');
    return { status: 200, body: this.workflowObject(params, path, text) };
  }

  private async createDispatch(
    params: Record<string, string>,
    body: Record<string, unknown>,
    user: StandInUser,
  ) {
    if (this.rejectRunDetails && 'return_run_details' in body) {
      throw new HttpError(422, 'Invalid request.\n\n"return_run_details" is not a permitted key.');
    }
    const path = await this.workflowPath(params, params.workflow_id!);
    // GitHub looks the workflow up on the default branch, then reads it at the ref.
    if ((await this.fileAt(params, 'main', path)) === undefined) throw new HttpError(404, 'Not Found');
    const ref = String(body.ref);
    if (!(await this.commitOf(params, ref))) throw new HttpError(422, `No ref found for: ${ref}`);
    const text = await this.fileAt(params, ref, path);
    if (text === undefined) throw new HttpError(404, 'Not Found');
    // GitHub's own checks of the inputs, made independently of the client's.
    const trigger = dispatchTrigger(safeYAML(text));
    if (!trigger) throw new HttpError(422, "Workflow does not have 'workflow_dispatch' trigger");
    const inputs = (body.inputs ?? {}) as Record<string, unknown>;
    const unexpected = Object.keys(inputs).filter((k) => !(k in trigger));
    if (unexpected.length)
      throw new HttpError(422, `Unexpected inputs provided: ${JSON.stringify(unexpected)}`);
    for (const [name, def] of Object.entries(trigger)) {
      if (def.required === true && def.default === undefined && !(name in inputs)) {
        throw new HttpError(422, `Required input '${name}' not provided`);
      }
      const value = inputs[name];
      if (value === undefined) continue;
      if (def.type === 'choice' && !(def.options ?? []).map(String).includes(scalar(value))) {
        throw new HttpError(
          422,
          `Provided value '${scalar(value)}' for input '${name}' not in the list of allowed values`,
        );
      }
      if (def.type === 'boolean' && !['true', 'false'].includes(scalar(value))) {
        throw new HttpError(422, `Provided value '${scalar(value)}' for input '${name}' is not a boolean`);
      }
    }
    const run = await this.newRun(params, path, text, ref, inputs, user);
    if (body.return_run_details === true) {
      return {
        status: 200,
        body: {
          workflow_run_id: run.id,
          run_url: this.api(params, `/actions/runs/${run.id}`),
          html_url: this.html(params, `/actions/runs/${run.id}`),
        },
      };
    }
    return { status: 204 };
  }

  private async newRun(
    params: Record<string, string>,
    path: string,
    text: string,
    ref: string,
    inputs: Record<string, unknown>,
    actor: StandInUser,
  ): Promise<StandInRun> {
    const doc = safeYAML(text);
    const trigger = dispatchTrigger(doc) ?? {};
    const values: Record<string, string> = {};
    for (const [name, def] of Object.entries(trigger)) {
      const v = inputs[name] ?? def.default;
      if (v !== undefined) values[name] = scalar(v);
    }
    const workflowName = typeof doc?.name === 'string' ? doc.name : path;
    const headBranch = ref.replace(/^refs\/(?:heads|tags)\//, '');
    const runName = typeof doc?.['run-name'] === 'string' ? doc['run-name'] : undefined;
    const file = path.split('/').pop()!;
    const run: StandInRun = {
      id: this.nextRunId++,
      owner: params.owner!,
      repo: params.repo!,
      workflowPath: path,
      workflowId: idOf(path),
      workflowName,
      headBranch,
      headSha: (await this.commitOf(params, ref))!,
      displayTitle: runName
        ? renderRunName(runName, values, { workflow: workflowName, ref_name: headBranch, actor: actor.login })
        : workflowName,
      runNumber:
        this.runList.filter(
          (r) => r.owner === params.owner && r.repo === params.repo && r.workflowPath === path,
        ).length + 1,
      inputs,
      actor,
      createdMs: this.clock.now(),
      script: DEFAULT_SCRIPT,
    };
    const script = this.scripts.get(`${params.owner}/${params.repo}/${file}`);
    run.script = typeof script === 'function' ? script(run) : (script ?? DEFAULT_SCRIPT);
    this.runList.push(run);
    return run;
  }

  private findRun(params: Record<string, string>): StandInRun {
    const run = this.runList.find(
      (r) => r.owner === params.owner && r.repo === params.repo && r.id === Number(params.run_id),
    );
    if (!run) throw new HttpError(404, 'Not Found');
    return run;
  }

  private async runObject(run: StandInRun) {
    const params = { owner: run.owner, repo: run.repo };
    const view = project(run, this.clock.now());
    const a = this.api(params, `/actions/runs/${run.id}`);
    const commit = await this.gitIn(params, ['cat-file', 'commit', run.headSha]);
    const tree = /^tree (\w+)/m.exec(commit)![1]!;
    const person = (field: string) => {
      const m = new RegExp(`^${field} (.*) <(.*)> (\\d+)`, 'm').exec(commit)!;
      return { name: m[1]!, email: m[2]!, time: Number(m[3]) };
    };
    const author = person('author');
    const repository = this.repositoryObject(params);
    return {
      id: run.id,
      name: run.workflowName,
      node_id: nodeId('WFR', run.id),
      check_suite_id: run.id + 1,
      check_suite_node_id: nodeId('CS', run.id + 1),
      head_branch: run.headBranch,
      head_sha: run.headSha,
      path: `${run.workflowPath}@${run.headBranch}`,
      display_title: run.displayTitle,
      run_number: run.runNumber,
      run_attempt: 1,
      event: 'workflow_dispatch',
      status: view.status,
      conclusion: view.conclusion,
      workflow_id: run.workflowId,
      url: a,
      html_url: this.html(params, `/actions/runs/${run.id}`),
      pull_requests: [],
      created_at: iso(run.createdMs),
      updated_at: iso(view.updatedMs),
      run_started_at: iso(run.createdMs),
      actor: this.userObject(run.actor),
      triggering_actor: this.userObject(run.actor),
      jobs_url: `${a}/jobs`,
      logs_url: `${a}/logs`,
      check_suite_url: this.api(params, `/check-suites/${run.id + 1}`),
      artifacts_url: `${a}/artifacts`,
      cancel_url: `${a}/cancel`,
      rerun_url: `${a}/rerun`,
      previous_attempt_url: null,
      workflow_url: this.api(params, `/actions/workflows/${run.workflowId}`),
      head_commit: {
        id: run.headSha,
        tree_id: tree,
        message: commit.slice(commit.indexOf('\n\n') + 2).trimEnd(),
        timestamp: iso(author.time * 1000),
        author: { name: author.name, email: author.email },
        committer: { name: person('committer').name, email: person('committer').email },
      },
      repository,
      head_repository: repository,
      head_repository_id: repository.id,
      referenced_workflows: [],
    };
  }

  private async listRuns(params: Record<string, string>, query: URLSearchParams) {
    const path = await this.workflowPath(params, params.workflow_id!);
    const now = this.clock.now();
    const created = createdFilter(query.get('created'));
    const found = this.runList
      .filter(
        (r) =>
          r.owner === params.owner &&
          r.repo === params.repo &&
          r.workflowPath === path &&
          now >= r.createdMs + (r.script.listedAfterSeconds ?? 0) * 1000 &&
          (!query.get('event') || query.get('event') === 'workflow_dispatch') &&
          (!query.get('branch') || query.get('branch') === r.headBranch) &&
          (!query.get('head_sha') || query.get('head_sha') === r.headSha) &&
          (!query.get('status') || query.get('status') === project(r, now).status) &&
          created(Math.floor(r.createdMs / 1000) * 1000),
      )
      .sort((a, b) => b.createdMs - a.createdMs || b.id - a.id);
    const perPage = Math.min(100, Number(query.get('per_page') ?? 30));
    const page = Number(query.get('page') ?? 1);
    const slice = found.slice((page - 1) * perPage, page * perPage);
    const runs = await Promise.all(slice.map((r) => this.runObject(r)));
    return {
      status: 200,
      body: { total_count: found.length, workflow_runs: runs },
    };
  }

  private async getRun(params: Record<string, string>) {
    return { status: 200, body: await this.runObject(this.findRun(params)) };
  }

  private listJobs(params: Record<string, string>, query: URLSearchParams) {
    const run = this.findRun(params);
    const p = { owner: run.owner, repo: run.repo };
    const view = project(run, this.clock.now());
    const jobs = view.jobs.map((j) => ({
      id: j.id,
      run_id: run.id,
      workflow_name: run.workflowName,
      head_branch: run.headBranch,
      run_url: this.api(p, `/actions/runs/${run.id}`),
      run_attempt: 1,
      node_id: nodeId('CR', j.id),
      head_sha: run.headSha,
      url: this.api(p, `/actions/jobs/${j.id}`),
      html_url: this.html(p, `/actions/runs/${run.id}/job/${j.id}`),
      status: j.status,
      conclusion: j.conclusion,
      created_at: iso(j.createdMs),
      started_at: iso(j.startedMs),
      completed_at: j.completedMs === undefined ? null : iso(j.completedMs),
      name: j.name,
      steps: j.steps.map((s) => ({
        name: s.name,
        status: s.status,
        conclusion: s.conclusion,
        number: s.number,
        started_at: s.startedMs === undefined ? null : iso(s.startedMs),
        completed_at: s.completedMs === undefined ? null : iso(s.completedMs),
      })),
      check_run_url: this.api(p, `/check-runs/${j.id}`),
      labels: ['ubuntu-24.04'],
      runner_id: j.status === 'queued' ? null : 1,
      runner_name: j.status === 'queued' ? null : 'GitHub Actions 1',
      runner_group_id: j.status === 'queued' ? null : 1,
      runner_group_name: j.status === 'queued' ? null : 'GitHub Actions',
    }));
    const perPage = Math.min(100, Number(query.get('per_page') ?? 30));
    const page = Number(query.get('page') ?? 1);
    return Promise.resolve({
      status: 200,
      body: { total_count: jobs.length, jobs: jobs.slice((page - 1) * perPage, page * perPage) },
    });
  }

  private cancelRun(params: Record<string, string>) {
    const run = this.findRun(params);
    const now = this.clock.now();
    if (project(run, now).status === 'completed') {
      throw new HttpError(409, 'Cannot cancel a workflow run that is completed.');
    }
    run.cancelledMs = now;
    return Promise.resolve({ status: 202, body: {} });
  }
}

class GitFailure extends Error {}

/** A stable positive id for a name (GitHub ids are integers). */
function idOf(name: string): number {
  let h = 0;
  for (const c of name) h = (Math.imul(h, 31) + c.charCodeAt(0)) | 0;
  return (h >>> 0) % 1_000_000_000;
}

function nodeId(prefix: string, id: number): string {
  return `${prefix}_${Buffer.from(String(id)).toString('base64url')}`;
}

/** An input value as text (GitHub takes strings; a number or boolean reads as JSON does). */
function scalar(value: unknown): string {
  return typeof value === 'string' ? value : JSON.stringify(value);
}

function iso(ms: number): string {
  return new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');
}

function safeYAML(text: string): Record<string, unknown> | undefined {
  try {
    const doc: unknown = parseYAML(text);
    return typeof doc === 'object' && doc !== null && !Array.isArray(doc)
      ? (doc as Record<string, unknown>)
      : undefined;
  } catch {
    return undefined;
  }
}

interface DeclaredInput {
  type?: string;
  required?: boolean;
  default?: unknown;
  options?: unknown[];
}

/** The declared inputs of a workflow's workflow_dispatch trigger, or undefined without one. */
function dispatchTrigger(
  doc: Record<string, unknown> | undefined,
): Record<string, DeclaredInput> | undefined {
  const on = doc?.on;
  if (on === 'workflow_dispatch' || (Array.isArray(on) && on.includes('workflow_dispatch'))) return {};
  if (typeof on !== 'object' || on === null || !('workflow_dispatch' in on)) return undefined;
  const trigger = (on as Record<string, unknown>).workflow_dispatch as {
    inputs?: Record<string, DeclaredInput>;
  } | null;
  return trigger?.inputs ?? {};
}

/** A run-name with its `${{ inputs.x }}` / `${{ github.event.inputs.x }}` / `${{ github.x }}` filled in. */
function renderRunName(
  runName: string,
  inputs: Record<string, string>,
  github: Record<string, string>,
): string {
  return runName.replace(/\$\{\{\s*([\s\S]*?)\s*\}\}/g, (_, expr: string) => {
    const input = /^(?:github\.event\.)?inputs(?:\.([\w-]+)|\[\s*['"]([\w-]+)['"]\s*\])$/.exec(expr);
    if (input) return inputs[input[1] ?? input[2]!] ?? '';
    const context = /^github\.(\w+)$/.exec(expr);
    if (context) return github[context[1]!] ?? '';
    return /^'(.*)'$/.exec(expr)?.[1] ?? '';
  });
}

/** The `created` filter of run lists: `>=T`, `<=T`, `>T`, `<T`, `A..B` or a date (UTC day). */
function createdFilter(value: string | null): (ms: number) => boolean {
  if (!value) return () => true;
  const range = /^(.+)\.\.(.+)$/.exec(value);
  if (range) return (ms) => ms >= Date.parse(range[1]!) && ms <= Date.parse(range[2]!);
  const cmp = /^(>=|<=|>|<)(.+)$/.exec(value);
  if (cmp) {
    const t = Date.parse(cmp[2]!);
    return {
      '>=': (ms: number) => ms >= t,
      '<=': (ms: number) => ms <= t,
      '>': (ms: number) => ms > t,
      '<': (ms: number) => ms < t,
    }[cmp[1] as '>=' | '<=' | '>' | '<'];
  }
  const day = Date.parse(value);
  return (ms) => ms >= day && ms < day + 86_400_000;
}

interface StepState {
  name: string;
  number: number;
  status: 'queued' | 'in_progress' | 'completed';
  conclusion: string | null;
  startedMs?: number;
  completedMs?: number;
}

interface JobState {
  id: number;
  name: string;
  status: 'queued' | 'in_progress' | 'completed';
  conclusion: string | null;
  createdMs: number;
  startedMs: number;
  completedMs?: number;
  steps: StepState[];
}

/**
 * A run as it stands at `now`: queued, then its jobs one after another (each queued, then its
 * steps), then completed. A cancellation completes whatever is unfinished as cancelled.
 */
function project(
  run: StandInRun,
  now: number,
): { status: string; conclusion: string | null; updatedMs: number; jobs: JobState[] } {
  const script = run.script;
  const cancelled = run.cancelledMs !== undefined && run.cancelledMs <= now ? run.cancelledMs : undefined;
  const at = cancelled ?? now;
  const created = run.createdMs;
  let cursor = created + (script.queuedSeconds ?? 0) * 1000;
  const jobs: JobState[] = [];
  let failed = false;
  let updated = created;
  const scripted = script.jobs ?? [];
  for (const [i, job] of scripted.entries()) {
    if (at < cursor) break;
    const id = run.id * 100 + i + 1;
    if (failed) {
      jobs.push({
        id,
        name: job.name,
        status: 'completed',
        conclusion: 'skipped',
        createdMs: cursor,
        startedMs: cursor,
        completedMs: cursor,
        steps: [],
      });
      continue;
    }
    const createdMs = cursor;
    const startedMs = cursor + (job.queuedSeconds ?? 0) * 1000;
    const state: JobState = {
      id,
      name: job.name,
      status: 'queued',
      conclusion: null,
      createdMs,
      startedMs,
      steps: [],
    };
    jobs.push(state);
    updated = Math.max(updated, createdMs);
    if (at < startedMs) {
      if (cancelled !== undefined)
        Object.assign(state, { status: 'completed', conclusion: 'cancelled', completedMs: cancelled });
      break;
    }
    state.status = 'in_progress';
    updated = Math.max(updated, startedMs);
    let t = startedMs;
    let jobFailed = false;
    let running = true;
    for (const [n, step] of job.steps.entries()) {
      const last = i === scripted.length - 1 && n === job.steps.length - 1;
      const seconds = script.hang && last ? Infinity : (step.seconds ?? 1);
      const s: StepState = { name: step.name, number: n + 1, status: 'queued', conclusion: null };
      state.steps.push(s);
      if (jobFailed) {
        Object.assign(s, { status: 'completed', conclusion: 'skipped', startedMs: t, completedMs: t });
        continue;
      }
      if (!running || at < t) {
        running = false;
        if (cancelled !== undefined)
          Object.assign(s, { status: 'completed', conclusion: 'skipped', startedMs: at, completedMs: at });
        continue;
      }
      s.startedMs = t;
      s.status = 'in_progress';
      const end = t + seconds * 1000;
      if (at < end) {
        running = false;
        updated = Math.max(updated, t);
        if (cancelled !== undefined)
          Object.assign(s, { status: 'completed', conclusion: 'cancelled', completedMs: cancelled });
        continue;
      }
      Object.assign(s, { status: 'completed', conclusion: step.conclusion ?? 'success', completedMs: end });
      updated = Math.max(updated, end);
      if (step.conclusion === 'failure') jobFailed = true;
      t = end;
    }
    if (!running) {
      if (cancelled !== undefined)
        Object.assign(state, { status: 'completed', conclusion: 'cancelled', completedMs: cancelled });
      break;
    }
    Object.assign(state, {
      status: 'completed',
      conclusion: jobFailed ? 'failure' : 'success',
      completedMs: t,
    });
    failed ||= jobFailed;
    cursor = t;
  }
  const allDone =
    jobs.length === scripted.length && jobs.every((j) => j.status === 'completed') && at >= cursor;
  if (cancelled !== undefined && (!allDone || jobs.some((j) => j.conclusion === 'cancelled'))) {
    return { status: 'completed', conclusion: 'cancelled', updatedMs: cancelled, jobs };
  }
  if (!allDone) {
    return {
      status: at < created + (script.queuedSeconds ?? 0) * 1000 ? 'queued' : 'in_progress',
      conclusion: null,
      updatedMs: updated,
      jobs,
    };
  }
  return {
    status: 'completed',
    conclusion: script.conclusion ?? (failed ? 'failure' : 'success'),
    updatedMs: Math.max(updated, cursor),
    jobs,
  };
}
