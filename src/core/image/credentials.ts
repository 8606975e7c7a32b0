// Registry credentials where docker keeps them: explicit ones (action inputs), then
// $DOCKER_CONFIG/config.json (~/.docker/config.json) as docker/login-action writes it: `auths`
// entries, and `credHelpers` / `credsStore` helpers run as `docker-credential-<name> get`.
import { spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { DOCKER_HUB } from './reference.ts';

export interface RegistryCredentials {
  username: string;
  password: string;
  /** An OAuth2 refresh token (docker's `identitytoken`), exchanged at the token realm. */
  identityToken?: string;
}

/** Looks credentials up for a registry host; undefined means anonymous. */
export type CredentialSource = (registry: string) => Promise<RegistryCredentials | undefined>;

interface DockerConfig {
  auths?: Record<string, { auth?: string; username?: string; password?: string; identitytoken?: string }>;
  credHelpers?: Record<string, string>;
  credsStore?: string;
}

/** The keys docker may have stored a registry under (Docker Hub has its legacy URL). */
function configKeys(registry: string): string[] {
  if (registry === DOCKER_HUB || registry === 'index.docker.io' || registry === 'registry-1.docker.io') {
    return ['https://index.docker.io/v1/', 'index.docker.io', 'docker.io', 'registry-1.docker.io'];
  }
  return [
    registry,
    `https://${registry}`,
    `http://${registry}`,
    `https://${registry}/v1/`,
    `https://${registry}/v2/`,
  ];
}

export function dockerConfigPath(env: NodeJS.ProcessEnv = process.env): string {
  return join(env.DOCKER_CONFIG ?? join(homedir(), '.docker'), 'config.json');
}

async function readDockerConfig(path: string): Promise<DockerConfig> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return {};
    throw err;
  }
  try {
    return JSON.parse(text) as DockerConfig;
  } catch {
    // The file holds secrets: say where it is, never what it holds.
    throw new Error(`${path} is not valid JSON`);
  }
}

/** Runs `docker-credential-<helper> get` with the server on stdin, as docker does. */
export async function runCredentialHelper(
  helper: string,
  server: string,
  env: NodeJS.ProcessEnv = process.env,
): Promise<RegistryCredentials | undefined> {
  if (!/^[A-Za-z0-9_.-]+$/.test(helper)) throw new Error(`credential helper name "${helper}" is not valid`);
  const program = `docker-credential-${helper}`;
  const { code, stdout, stderr } = await new Promise<{
    code: number | string;
    stdout: string;
    stderr: string;
  }>((resolve) => {
    const child = spawn(program, ['get'], { stdio: ['pipe', 'pipe', 'pipe'], env });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('error', (e) =>
      resolve({ code: (e as NodeJS.ErrnoException).code ?? 'error', stdout: '', stderr: e.message }),
    );
    child.on('close', (c) => resolve({ code: c ?? 1, stdout: out, stderr: err }));
    child.stdin.end(server);
  });
  if (code === 'ENOENT') throw new Error(`credential helper ${program} is not on PATH`);
  if (code !== 0) {
    // Helpers answer "credentials not found in native keychain" for unknown servers.
    if (/not found/i.test(stdout + stderr)) return undefined;
    throw new Error(
      `credential helper ${program} failed for ${server} (exit ${code}): ${stderr.trim().slice(0, 200)}`,
    );
  }
  let parsed: { Username?: string; Secret?: string };
  try {
    parsed = JSON.parse(stdout) as typeof parsed;
  } catch {
    throw new Error(`credential helper ${program} printed something other than JSON for ${server}`);
  }
  if (!parsed.Secret) return undefined;
  // docker's convention: the username <token> marks an identity (refresh) token.
  if (parsed.Username === '<token>') return { username: '', password: '', identityToken: parsed.Secret };
  return { username: parsed.Username ?? '', password: parsed.Secret };
}

/** Credentials from a docker config.json (default: $DOCKER_CONFIG or ~/.docker). */
export function dockerConfigCredentials(
  path = dockerConfigPath(),
  env: NodeJS.ProcessEnv = process.env,
): CredentialSource {
  let config: Promise<DockerConfig> | undefined;
  return async (registry) => {
    config ??= readDockerConfig(path);
    const { auths = {}, credHelpers = {}, credsStore } = await config;
    const keys = configKeys(registry);
    const helperKey = keys.find((k) => credHelpers[k]);
    if (helperKey) return runCredentialHelper(credHelpers[helperKey]!, helperKey, env);
    const authKey = keys.find((k) => auths[k]);
    const entry = authKey ? auths[authKey]! : undefined;
    if (entry?.identitytoken)
      return { username: entry.username ?? '', password: '', identityToken: entry.identitytoken };
    if (entry?.auth) {
      const decoded = Buffer.from(entry.auth, 'base64').toString('utf8');
      const colon = decoded.indexOf(':');
      if (colon < 0) throw new Error(`${path}: the auth entry for ${authKey} is not base64 of user:password`);
      return { username: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
    }
    if (entry?.username && entry.password) return { username: entry.username, password: entry.password };
    if (credsStore) return runCredentialHelper(credsStore, keys[0]!, env);
    return undefined;
  };
}

/** Explicit credentials for one registry first, then the fallback for every registry. */
export function withExplicitCredentials(
  explicit: { registry: string; credentials: RegistryCredentials } | undefined,
  fallback: CredentialSource,
): CredentialSource {
  if (!explicit) return fallback;
  const hosts = new Set(
    configKeys(explicit.registry).map((k) => k.replace(/^https?:\/\//, '').replace(/\/v[12]\/$/, '')),
  );
  return async (registry) => (hosts.has(registry) ? explicit.credentials : fallback(registry));
}
