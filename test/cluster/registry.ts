// An OCI registry on loopback: Debian's `docker-registry` (CNCF distribution) with htpasswd
// (bcrypt) basic auth and filesystem storage, started and stopped per test run.
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { freePort } from './ports.ts';
import { logTail, startComponent, stopProcessGroup, type ComponentProcess } from './process.ts';

const run = promisify(execFile);

export interface RegistryOptions {
  /** Require these credentials; anonymous access when omitted. */
  auth?: { username: string; password: string };
}

export class OciRegistry {
  readonly dir: string;
  /** `127.0.0.1:PORT`, the registry part of an image reference. */
  readonly host: string;
  readonly auth: RegistryOptions['auth'];
  private readonly process: ComponentProcess;

  private constructor(dir: string, host: string, proc: ComponentProcess, auth: RegistryOptions['auth']) {
    this.dir = dir;
    this.host = host;
    this.process = proc;
    this.auth = auth;
  }

  get url(): string {
    return `http://${this.host}`;
  }

  /** Authorization header value for the configured credentials (none when anonymous). */
  authorization(): string | undefined {
    if (!this.auth) return undefined;
    return `Basic ${Buffer.from(`${this.auth.username}:${this.auth.password}`).toString('base64')}`;
  }

  static async start(options: RegistryOptions = {}): Promise<OciRegistry> {
    const dir = await mkdtemp(join(tmpdir(), 'kube-actions-registry-'));
    const port = await freePort();
    const host = `127.0.0.1:${port}`;
    const config = [
      'version: 0.1',
      'log: { level: warn, accesslog: { disabled: true } }',
      `storage: { filesystem: { rootdirectory: ${join(dir, 'data')} }, delete: { enabled: true } }`,
      `http: { addr: "${host}", secret: "${randomBytes(16).toString('hex')}" }`,
    ];
    if (options.auth) {
      // distribution accepts only bcrypt entries.
      const { stdout } = await run('htpasswd', ['-Bbn', options.auth.username, options.auth.password]);
      await writeFile(join(dir, 'htpasswd'), stdout);
      config.push(`auth: { htpasswd: { realm: kube-actions-test, path: ${join(dir, 'htpasswd')} } }`);
    }
    await mkdir(join(dir, 'data'));
    await writeFile(join(dir, 'config.yml'), config.join('\n') + '\n');
    const proc = startComponent('docker-registry', 'docker-registry', ['serve', join(dir, 'config.yml')], {
      logDir: dir,
      attached: true,
    });
    const registry = new OciRegistry(dir, host, proc, options.auth);
    const deadline = Date.now() + 20_000;
    for (;;) {
      // GET /v2/ answers 200 (anonymous) or 401 (auth required) once the registry serves.
      const status = await fetch(`${registry.url}/v2/`).then(
        (r) => r.status,
        () => 0,
      );
      if (status === 200 || status === 401) return registry;
      if (Date.now() > deadline) {
        await registry.stop();
        throw new Error(`docker-registry did not start:\n${logTail(proc.logFile)}`);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  async stop(): Promise<void> {
    await stopProcessGroup(this.process.pid);
    await rm(this.dir, { recursive: true, force: true });
  }
}
