// Running git for the GitOps library: isolated from the user's and system's git config, never
// prompting, and with credentials passed as an HTTP header through GIT_CONFIG_* environment
// variables, so a token never appears in process arguments, remote URLs or files on disk, and is
// scrubbed from any error text.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface GitCredentials {
  /** For basic auth; GitHub accepts any user name with a token ("x-access-token" by convention). */
  username?: string;
  token: string;
}

export class GitError extends Error {
  override name = 'GitError';
  readonly stderr: string;
  constructor(message: string, stderr: string) {
    super(message);
    this.stderr = stderr;
  }
}

/** How long one git command may take: Argo CD's default for git and its tools. */
export const DEFAULT_GIT_TIMEOUT_MS = 90_000;

export interface RunOptions {
  input?: string;
  env?: NodeJS.ProcessEnv;
  /** Kills the command when aborted (a reconcile that is cancelled, a replica losing its lease). */
  signal?: AbortSignal;
}

export class Git {
  readonly cwd: string;
  private readonly env: NodeJS.ProcessEnv;
  private readonly secrets: string[];
  private readonly timeoutMs: number;

  constructor(
    cwd: string,
    options: { credentials?: GitCredentials; author?: { name: string; email: string }; timeoutMs?: number } = {},
  ) {
    this.cwd = cwd;
    this.timeoutMs = options.timeoutMs ?? DEFAULT_GIT_TIMEOUT_MS;
    const author = options.author ?? { name: 'kube-actions', email: 'kube-actions@users.noreply.github.com' };
    const env: NodeJS.ProcessEnv = {
      PATH: process.env.PATH,
      HOME: process.env.HOME,
      GIT_CONFIG_NOSYSTEM: '1',
      GIT_CONFIG_GLOBAL: '/dev/null',
      GIT_TERMINAL_PROMPT: '0',
      GIT_ASKPASS: '/bin/false',
      // Network transports only: no file://, ext:: or local paths (a URL must not read our disk).
      GIT_ALLOW_PROTOCOL: 'https:http:ssh:git',
      GIT_AUTHOR_NAME: author.name,
      GIT_AUTHOR_EMAIL: author.email,
      GIT_COMMITTER_NAME: author.name,
      GIT_COMMITTER_EMAIL: author.email,
    };
    this.secrets = [];
    if (options.credentials) {
      const { username = 'x-access-token', token } = options.credentials;
      const basic = Buffer.from(`${username}:${token}`).toString('base64');
      env.GIT_CONFIG_COUNT = '1';
      env.GIT_CONFIG_KEY_0 = 'http.extraHeader';
      env.GIT_CONFIG_VALUE_0 = `Authorization: Basic ${basic}`;
      this.secrets.push(token, basic);
    }
    this.env = env;
  }

  /** Replaces every secret in `text` with ***. */
  redact(text: string): string {
    return this.secrets.reduce((t, s) => (s ? t.split(s).join('***') : t), text);
  }

  async run(args: string[], options: RunOptions = {}): Promise<string> {
    return (await this.exec(args, options)).toString('utf8');
  }

  /** Like run, for binary output (e.g. `cat-file blob`). */
  async runBuffer(args: string[], options: RunOptions = {}): Promise<Buffer> {
    return this.exec(args, options);
  }

  private async exec(args: string[], options: RunOptions): Promise<Buffer> {
    options.signal?.throwIfAborted();
    try {
      const env = options.env ? { ...this.env, ...options.env } : this.env;
      const child = run('git', args, {
        cwd: this.cwd,
        env,
        maxBuffer: 64 * 1024 * 1024,
        encoding: 'buffer',
        // A stalled server must not hold a lock (and in time every worker) forever.
        timeout: this.timeoutMs,
        killSignal: 'SIGKILL',
        ...(options.signal ? { signal: options.signal } : {}),
      });
      if (options.input !== undefined) child.child.stdin?.end(options.input);
      return (await child).stdout;
    } catch (err) {
      const e = err as Error & { stderr?: Buffer | string; killed?: boolean; signal?: string; name?: string };
      if (options.signal?.aborted) throw new GitError(`git ${args[0]} was cancelled`, '');
      if (e.killed && e.signal === 'SIGKILL') {
        throw new GitError(`git ${args[0]} timed out after ${Math.round(this.timeoutMs / 1000)} s`, '');
      }
      const stderr = this.redact((e.stderr ?? '').toString().trim());
      throw new GitError(`git ${args[0]} failed: ${stderr || this.redact(e.message)}`, stderr);
    }
  }
}

/** Whether a failed push was refused because the branch moved (retry), not for another reason. */
export function isPushRace(err: unknown): boolean {
  return (
    err instanceof GitError &&
    /\[rejected\]|non-fast-forward|fetch first|cannot lock ref|failed to update ref|incorrect old value/i.test(err.stderr)
  );
}

/** Whether git failed because the server refused the credentials (or there were none). */
export function isAuthFailure(err: unknown): boolean {
  return (
    err instanceof GitError &&
    /Authentication failed|could not read Username|HTTP 401|HTTP 403|returned error: 40[13]|Permission.*denied/i.test(err.stderr)
  );
}
