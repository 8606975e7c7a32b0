// The Git push webhook as `kube-actions controller` serves it (the bundled CLI as a process, the
// real control plane, the loopback git server): every refusal has its status and a body saying
// why, and nothing refused, replayed or unrelated refreshes an Application.
//
// Whether a request refreshed anything is read from the controller's own metrics, not waited
// for: a refresh enqueues the Application's reconcile (workqueue_adds_total{name="application"})
// before the webhook answers, so a count unchanged once the response is in means the request
// refreshed nothing, with no sleep. Each test that relies on this also shows the count moving, and
// the Application syncing, for the request that should refresh.
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { randomBytes } from 'node:crypto';
import { connect, type Socket } from 'node:net';
import { KubeClient } from '../../src/core/kube/client.ts';
import { signature } from '../../src/controller/sync/webhook.ts';
import { APPLICATION, REFRESH_ANNOTATION, type Application } from '../../src/controller/sync/types.ts';
import { startControllerProcess, type ControllerProcess } from '../cluster/controller-process.ts';
import { installCRDs } from '../cluster/crds.ts';
import { GitServer } from '../cluster/git-server.ts';
import { pushWebhook } from '../cluster/push-webhook.ts';
import { eventually, useTestNamespace } from '../cluster/testing.ts';

const ns = useTestNamespace('webhook');
/** For a second controller without a secret: it must not see (or reconcile) `ns`'s Application. */
const empty = useTestNamespace('webhook-nosecret');
const SECRET = 'webhook-responses-secret';
/** The cap the controller is started with (--webhook-max-body): small, so the tests can cross it. */
const MAX_BODY = 1024;
/** Requests the webhook reads at once (DEFAULT_MAX_IN_FLIGHT; there is no flag for it). */
const MAX_IN_FLIGHT = 16;

let server: GitServer;
let client: KubeClient;
let controller: ControllerProcess;

const cm = (v: string) => `apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: web\ndata:\n  v: "${v}"\n`;

beforeAll(async () => {
  await installCRDs(ns.kc);
  server = await GitServer.start();
  client = new KubeClient(ns.kc);
  await server.createRepo('fleet', { 'apps/web/cm.yaml': cm('1') });
  // The poll interval is an hour: within a test only the webhook can make the controller look at git.
  controller = await startControllerProcess(
    [
      'controller',
      `--namespace=${ns.name}`,
      `--controller-namespace=${ns.name}`,
      '--leader-elect=false',
      '--poll-interval=1h',
      `--webhook-max-body=${MAX_BODY}`,
    ],
    { env: { KUBE_ACTIONS_WEBHOOK_SECRET: SECRET } },
  );
  await client.create(APPLICATION, {
    apiVersion: 'kube-actions.dev/v1alpha1',
    kind: 'Application',
    metadata: { name: 'web', namespace: ns.name },
    spec: {
      source: { repoURL: server.url('fleet'), targetRevision: 'main', path: 'apps/web' },
      destination: { namespace: ns.name },
      syncPolicy: { automated: { prune: true, selfHeal: true } },
    },
  });
  await settledAt(await server.revParse('fleet'));
});

afterAll(async () => {
  await controller?.stop();
  await client?.close();
  await server?.stop();
});

const endpoint = () => `http://127.0.0.1:${controller.webhookPort}/api/webhook`;

async function metric(name: string, labels: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${controller.metricsPort}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name}{${labels}} `));
  return line === undefined ? 0 : Number(line.split(' ').at(-1));
}

/** Reconciles of Applications enqueued so far: every refresh is one, counted before the webhook answers. */
const refreshes = () => metric('workqueue_adds_total', 'name="application"');

async function app(): Promise<Application> {
  return client.get<Application & { metadata: object }>(APPLICATION, ns.name, 'web');
}

/**
 * Waits until the Application is synced to `revision` and the controller is idle: nothing queued,
 * no reconcile running, no reconcile enqueued between two looks (the last sync's own watch events
 * are in). From then on a refresh can only come from what a test sends.
 */
async function settledAt(revision: string): Promise<void> {
  let last = -1;
  await eventually(
    `the application synced to ${revision.slice(0, 12)} and the controller idle`,
    async () => {
      const a = await app();
      const synced =
        a.status?.sync?.status === 'Synced' &&
        a.status.sync.revision === revision &&
        a.status.operationState?.phase === 'Succeeded';
      const [adds, depth, active] = await Promise.all([
        refreshes(),
        metric('workqueue_depth', 'name="application"'),
        metric('controller_runtime_active_workers', 'controller="application"'),
      ]);
      const quiet = adds === last && depth === 0 && active === 0;
      last = adds;
      return synced && quiet ? true : undefined;
    },
    60_000,
  ).catch((err: unknown) => {
    throw new Error(`${(err as Error).message}\ncontroller logs:\n${controller.logs.slice(-30).join('\n')}`, {
      cause: err,
    });
  });
}

interface Reply {
  status: number;
  headers: Headers;
  /** The JSON body's `message`: why. */
  message: string;
}

async function post(
  body: string | Buffer,
  headers: Record<string, string>,
  url = endpoint(),
): Promise<Reply> {
  const res = await fetch(url, { method: 'POST', body, headers });
  const text = await res.text();
  return {
    status: res.status,
    headers: res.headers,
    message: (JSON.parse(text) as { message: string }).message,
  };
}

/** A signed GitHub push of `branch` (of `repo`, default fleet), as GitHub sends it. */
function push(options: { branch?: string; repo?: string; secret?: string } = {}) {
  return pushWebhook({
    repoURL: server.url(options.repo ?? 'fleet'),
    secret: options.secret ?? SECRET,
    branch: options.branch ?? 'main',
  });
}

/** Another event signed as GitHub signs them: only the X-GitHub-Event header differs. */
function signed(body: string, headers: Record<string, string>): Record<string, string> {
  return {
    'content-type': 'application/json',
    'x-github-delivery': randomBytes(8).toString('hex'),
    'x-hub-signature-256': signature(SECRET, Buffer.from(body)),
    ...headers,
  };
}

interface RawReply {
  status: number;
  headers: Record<string, string>;
  message: string;
  /** The server ended the connection (FIN) while the client had not finished its request. */
  closedByServer: boolean;
}

/**
 * One request over a raw socket, for what fetch cannot do: declare a length and send nothing, or
 * stream a body that never ends. `send` writes the request; the reply is read until the server
 * closes the connection.
 */
function raw(send: (socket: Socket) => void): Promise<RawReply> {
  return new Promise((resolve, reject) => {
    const socket = connect(controller.webhookPort, '127.0.0.1');
    const chunks: Buffer[] = [];
    let closedByServer = false;
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error('no reply within 10 s (the server waited for the rest of the body?)'));
    }, 10_000);
    socket.on('connect', () => send(socket));
    socket.on('data', (d: Buffer) => chunks.push(d));
    socket.on('end', () => (closedByServer = true));
    socket.on('error', () => undefined);
    socket.on('close', () => {
      clearTimeout(timer);
      const text = Buffer.concat(chunks).toString('utf8');
      const [head = '', ...rest] = text.split('\r\n\r\n');
      const [statusLine = '', ...lines] = head.split('\r\n');
      const headers = Object.fromEntries(
        lines.map((l) => [l.slice(0, l.indexOf(':')).toLowerCase(), l.slice(l.indexOf(':') + 1).trim()]),
      );
      let body = rest.join('\r\n\r\n');
      if (/chunked/i.test(headers['transfer-encoding'] ?? '')) body = dechunk(body);
      try {
        resolve({
          status: Number(statusLine.split(' ')[1]),
          headers,
          message: (JSON.parse(body) as { message: string }).message,
          closedByServer,
        });
      } catch {
        reject(new Error(`not a webhook reply: ${JSON.stringify(text)}`));
      }
    });
  });
}

/** A chunked HTTP body's data (sizes in hex, each chunk followed by CRLF, a zero-size one last). */
function dechunk(body: string): string {
  let out = '';
  for (let at = 0; ;) {
    const eol = body.indexOf('\r\n', at);
    const size = parseInt(body.slice(at, eol), 16);
    if (!(size > 0)) return out;
    out += body.slice(eol + 2, eol + 2 + size);
    at = eol + 2 + size + 2;
  }
}

function requestHead(headers: Record<string, string>): string {
  const lines = Object.entries(headers).map(([k, v]) => `${k}: ${v}`);
  return `POST /api/webhook HTTP/1.1\r\nhost: 127.0.0.1\r\n${lines.join('\r\n')}\r\n\r\n`;
}

describe('the webhook refuses, with the reason in the body', () => {
  test('405 for anything but POST; 404 off /api/webhook', async () => {
    for (const method of ['GET', 'PUT', 'DELETE']) {
      const res = await fetch(endpoint(), { method });
      expect([method, res.status, ((await res.json()) as { message: string }).message]).toEqual([
        method,
        405,
        'webhooks are POSTed',
      ]);
    }
    const { body, headers } = push();
    const elsewhere = await fetch(endpoint().replace('/api/webhook', '/api/hooks'), {
      method: 'POST',
      body,
      headers,
    });
    expect([elsewhere.status, await elsewhere.text()]).toEqual([404, 'not found\n']);
  });

  test('401 for an unsigned push, a forged signature and the old SHA-1 signature; none refreshes', async () => {
    const before = await refreshes();
    const { body, headers } = push();
    const { 'x-hub-signature-256': _, ...unsigned } = headers;
    const cases = {
      unsigned,
      forged: { ...headers, 'x-hub-signature-256': signature('not-the-secret', Buffer.from(body)) },
      // Signed, but over another body: the signature must be of these very bytes.
      'signed for another body': {
        ...headers,
        'x-hub-signature-256': signature(SECRET, Buffer.from(body.replace('main', 'evil'))),
      },
      'sha1 only': { ...unsigned, 'x-hub-signature': 'sha1=' + '0'.repeat(40) },
    };
    for (const [what, h] of Object.entries(cases)) {
      const res = await post(body, h);
      expect([what, res.status, res.message]).toEqual([what, 401, 'missing or invalid X-Hub-Signature-256']);
    }
    expect(await refreshes()).toBe(before);
  });

  test('413 for a declared length over --webhook-max-body: answered before any of the body is sent', async () => {
    const { headers } = push();
    const res = await raw((socket) =>
      // Headers only: were the body awaited, there would be no reply at all.
      socket.write(requestHead({ ...headers, 'content-length': String(MAX_BODY + 1) })),
    );
    expect(res).toMatchObject({
      status: 413,
      message: `payload too large (limit ${MAX_BODY} bytes)`,
      headers: { connection: 'close' },
      closedByServer: true,
    });
  });

  test('413 for a streamed body crossing the cap: refused at the byte over it, without waiting for the end', async () => {
    const before = await refreshes();
    const { headers } = push();
    const res = await raw((socket) => {
      socket.write(requestHead({ ...headers, 'transfer-encoding': 'chunked' }));
      // Exactly the cap, then one byte more; the body is never terminated (no zero-length chunk),
      // so a server that read on to its end would never answer.
      socket.write(`${MAX_BODY.toString(16)}\r\n${' '.repeat(MAX_BODY)}\r\n`);
      setTimeout(() => socket.write('1\r\n \r\n'), 100);
    });
    // It answered mid-body and hung up: nothing past the cap is read.
    expect(res).toMatchObject({
      status: 413,
      message: `payload too large (limit ${MAX_BODY} bytes)`,
      headers: { connection: 'close' },
      closedByServer: true,
    });
    expect(await refreshes()).toBe(before);
  });

  test('a signed push of exactly --webhook-max-body bytes is read and handled', async () => {
    const { body, headers } = push({ branch: 'exactly-at-the-cap' });
    // JSON allows trailing white space: the same push, padded to the cap.
    const padded = body + ' '.repeat(MAX_BODY - Buffer.byteLength(body));
    expect(Buffer.byteLength(padded)).toBe(MAX_BODY);
    const res = await post(padded, {
      ...headers,
      'x-hub-signature-256': signature(SECRET, Buffer.from(padded)),
    });
    expect([res.status, res.message]).toEqual([200, 'refreshed 0 application(s)']);
  });

  test('400 for a signed body that is not JSON, and for JSON that is not a push', async () => {
    const before = await refreshes();
    const notJSON = 'ref=refs/heads/main&repository=fleet';
    const a = await post(notJSON, signed(notJSON, { 'x-github-event': 'push' }));
    expect([a.status, a.message]).toEqual([400, 'the body is not JSON']);
    const notPush = JSON.stringify({ zen: 'Design for failure.', hook_id: 1 });
    const b = await post(notPush, signed(notPush, { 'x-github-event': 'push' }));
    expect([b.status, b.message]).toEqual([400, 'not a push event payload']);
    expect(await refreshes()).toBe(before);
  });

  test('200 pong for GitHub’s ping (sent when the webhook is created)', async () => {
    const ping = JSON.stringify({ zen: 'Keep it logically awesome.', hook_id: 42 });
    const res = await post(ping, signed(ping, { 'x-github-event': 'ping' }));
    expect([res.status, res.message]).toEqual([200, 'pong']);
  });

  // Argo CD answers 400 to a GitHub event it does not handle (go-playground/webhooks:
  // "event not defined to be parsed"): a hook subscribed to more than pushes shows as failing in
  // GitHub's delivery log, which tells its owner to subscribe to pushes only.
  test('400 for a signed GitHub event other than push, naming it', async () => {
    const before = await refreshes();
    const issue = JSON.stringify({
      action: 'opened',
      issue: { number: 1 },
      repository: { clone_url: server.url('fleet') },
    });
    const res = await post(issue, signed(issue, { 'x-github-event': 'issues' }));
    expect(res.status).toBe(400);
    expect(res.message).toMatch(/\bissues\b/);
    expect(await refreshes()).toBe(before);
  });

  // Argo CD takes GitHub, GitLab, Bitbucket (Cloud and Server), Azure DevOps and Gogs webhooks, told
  // apart by their headers, and answers 400 "Unknown webhook event" to anything else. This
  // controller verifies GitHub's X-Hub-Signature-256 only, so another provider's webhook must get a
  // 400 that says it is not supported, not a 401 about a GitHub header its sender never sends.
  test.each([
    [
      'GitLab',
      { 'x-gitlab-event': 'Push Hook', 'x-gitlab-token': SECRET },
      {
        object_kind: 'push',
        ref: 'refs/heads/main',
        project: { git_http_url: 'http://gitlab.example/fleet.git' },
      },
    ],
    [
      'Bitbucket Cloud',
      { 'x-event-key': 'repo:push', 'x-hook-uuid': '{5d3f8a5e-1c1e-4b6a-9a70-2b0c5e1f0a11}' },
      { push: { changes: [] }, repository: { full_name: 'acme/fleet' } },
    ],
    [
      'Bitbucket Server',
      { 'x-event-key': 'repo:refs_changed', 'x-request-id': '9c6f3e0e' },
      { eventKey: 'repo:refs_changed', changes: [{ ref: { id: 'refs/heads/main' } }] },
    ],
  ])('400 for a %s webhook, saying it is not supported', async (provider, providerHeaders, payload) => {
    const before = await refreshes();
    const body = JSON.stringify(payload);
    const headers: Record<string, string> = { 'content-type': 'application/json', ...providerHeaders };
    // Bitbucket Server signs as GitHub's legacy header does (X-Hub-Signature: sha256=...).
    if (provider === 'Bitbucket Server') headers['x-hub-signature'] = signature(SECRET, Buffer.from(body));
    const res = await post(body, headers);
    expect([provider, res.status]).toEqual([provider, 400]);
    expect(res.message).toMatch(new RegExp(provider.split(' ')[0]!));
    expect(res.message).toMatch(/not supported|unsupported|only GitHub/i);
    expect(await refreshes()).toBe(before);
  });

  test('503 with Retry-After while as many requests as it reads at once are in flight', async () => {
    const { headers } = push();
    // Requests that declare a body and never send it: each stays in flight until its socket goes.
    const held = await Promise.all(
      Array.from(
        { length: MAX_IN_FLIGHT },
        () =>
          new Promise<Socket>((resolve) => {
            const socket = connect(controller.webhookPort, '127.0.0.1', () => {
              socket.write(requestHead({ ...headers, 'content-length': '100' }));
              resolve(socket);
            });
            socket.on('error', () => undefined);
          }),
      ),
    );
    try {
      const busy = await eventually('a 503 while the webhook is full', async () => {
        const { body, headers: h } = push({ branch: 'while-busy' });
        const res = await post(body, h);
        return res.status === 503 ? res : undefined;
      });
      expect(busy.message).toBe('too many webhook requests at once');
      expect(busy.headers.get('retry-after')).toBe('1');
    } finally {
      for (const socket of held) socket.destroy();
    }
    // Room again once they are gone.
    await eventually('the webhook to take requests again', async () => {
      const { body, headers: h } = push({ branch: 'after-busy' });
      return (await post(body, h)).status === 200 ? true : undefined;
    });
  });

  test('403 from a controller started without a secret: every request, signed or not', async () => {
    const bare = await startControllerProcess(
      [
        'controller',
        `--namespace=${empty.name}`,
        `--controller-namespace=${empty.name}`,
        '--leader-elect=false',
      ],
      { env: { KUBE_ACTIONS_WEBHOOK_SECRET: '' } },
    );
    try {
      const { body, headers } = push();
      const res = await post(body, headers, `http://127.0.0.1:${bare.webhookPort}/api/webhook`);
      expect([res.status, res.message]).toEqual([403, 'the webhook is disabled: no secret is configured']);
    } finally {
      await bare.stop();
    }
  });
});

describe('the webhook acts on a push only once, and only for the branches followed', () => {
  test('a replayed X-GitHub-Delivery is acknowledged and not acted on; the same push as a new delivery is', async () => {
    const v2 = await server.commitFiles('fleet', { 'apps/web/cm.yaml': cm('2') }, 'v2');
    const first = push();
    const before = await refreshes();
    const res = await post(first.body, first.headers);
    expect([res.status, res.message]).toEqual([200, 'refreshed 1 application(s)']);
    expect(await refreshes()).toBeGreaterThan(before);
    await settledAt(v2);

    // v3 is in git, and only a refresh would find it: the replay must not be one.
    const v3 = await server.commitFiles('fleet', { 'apps/web/cm.yaml': cm('3') }, 'v3');
    const idle = await refreshes();
    const delivery = first.headers['x-github-delivery']!;
    const replay = await post(first.body, first.headers);
    expect([replay.status, replay.message]).toEqual([200, `delivery ${delivery} already handled`]);
    expect(await refreshes()).toBe(idle);
    expect((await app()).status?.sync?.revision).toBe(v2);

    // The very same push under a fresh delivery id is a new event: it refreshes, and v3 is applied.
    const again = await post(first.body, {
      ...first.headers,
      'x-github-delivery': randomBytes(8).toString('hex'),
    });
    expect([again.status, again.message]).toEqual([200, 'refreshed 1 application(s)']);
    expect(await refreshes()).toBeGreaterThan(idle);
    await settledAt(v3);
  });

  test('a signed push of a branch no Application follows (or of another repository) refreshes nothing; then one of main is acted on', async () => {
    const v4 = await server.commitFiles('fleet', { 'apps/web/cm.yaml': cm('4') }, 'v4');
    const idle = await refreshes();
    for (const unfollowed of [push({ branch: 'feature/x' }), push({ repo: 'elsewhere' })]) {
      const res = await post(unfollowed.body, unfollowed.headers);
      expect([res.status, res.message]).toEqual([200, 'refreshed 0 application(s)']);
    }
    // Nothing enqueued, nothing asked of the Application (no refresh annotation), and it is still
    // at v3 although v4 is in git.
    expect(await refreshes()).toBe(idle);
    const still = await app();
    expect(still.metadata.annotations?.[REFRESH_ANNOTATION]).toBeUndefined();
    expect(still.status?.sync?.revision).not.toBe(v4);

    const followed = push();
    const res = await post(followed.body, followed.headers);
    expect([res.status, res.message]).toEqual([200, 'refreshed 1 application(s)']);
    expect(await refreshes()).toBeGreaterThan(idle);
    await settledAt(v4);
    const configMap = await client.get<{ metadata?: object; data?: Record<string, string> }>(
      { apiVersion: 'v1', resource: 'configmaps' },
      ns.name,
      'web',
    );
    expect(configMap.data).toEqual({ v: '4' });
  });
});
