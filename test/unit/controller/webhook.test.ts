import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { createServer, request, type Server } from 'node:http';
import {
  normalizeRepoURL,
  parsePushEvent,
  pushMatches,
  signature,
  verifySignature,
  WEBHOOK_SERVER_OPTIONS,
  webhookHandler,
  type PushEvent,
} from '../../../src/controller/sync/webhook.ts';

const SECRET = 'it-is-a-secret';

describe('webhook signature', () => {
  const body = Buffer.from('{"ref":"refs/heads/main"}');

  test('accepts exactly the HMAC-SHA256 of the body under the secret', () => {
    // GitHub's documented example: secret "It's a Secret to Everybody", payload "Hello, World!".
    expect(signature("It's a Secret to Everybody", Buffer.from('Hello, World!'))).toBe(
      'sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17',
    );
    expect(verifySignature(SECRET, body, signature(SECRET, body))).toBe(true);
  });

  test.each([
    ['no header', undefined],
    ['another secret', signature('other', Buffer.from('{"ref":"refs/heads/main"}'))],
    ['another body', signature(SECRET, Buffer.from('{"ref":"refs/heads/evil"}'))],
    ['the old sha1 form', 'sha1=0000'],
    ['a truncated digest', signature(SECRET, Buffer.from('{"ref":"refs/heads/main"}')).slice(0, 20)],
  ])('refuses %s', (_what, header) => {
    expect(verifySignature(SECRET, body, header)).toBe(false);
  });

  test('an empty secret verifies nothing', () => {
    expect(verifySignature('', body, signature('', body))).toBe(false);
  });
});

describe('matching pushes to applications', () => {
  const event: PushEvent = {
    repoURLs: [
      'https://github.com/Acme/GitOps.git',
      'git@github.com:Acme/GitOps.git',
      'https://github.com/Acme/GitOps',
    ],
    ref: 'refs/heads/main',
    defaultBranch: 'main',
  };

  test('the forms of one repository URL compare equal', () => {
    for (const url of [
      'https://github.com/acme/gitops',
      'https://github.com/acme/gitops.git/',
      'git@github.com:acme/gitops.git',
      'ssh://git@github.com/acme/gitops.git',
    ]) {
      expect([url, normalizeRepoURL(url)]).toEqual([
        url,
        expect.stringMatching(/^(git@)?github\.com\/acme\/gitops$/),
      ]);
    }
    expect(normalizeRepoURL('https://github.com/acme/gitops-2')).not.toBe(
      normalizeRepoURL('https://github.com/acme/gitops'),
    );
  });

  test.each([
    ['https://github.com/acme/gitops.git', 'main', true],
    ['https://github.com/acme/gitops', 'HEAD', true],
    ['https://github.com/acme/gitops', '', true],
    ['https://github.com/acme/gitops', 'refs/heads/main', true],
    ['https://github.com/acme/gitops', 'staging', false],
    ['https://github.com/acme/other', 'main', false],
  ])('%s at "%s" → %s', (repoURL, revision, expected) => {
    expect(pushMatches(event, repoURL, revision)).toBe(expected);
  });

  test('a tag push matches an application pinned to that tag', () => {
    expect(
      pushMatches({ ...event, ref: 'refs/tags/v1.2.0' }, 'https://github.com/acme/gitops', 'v1.2.0'),
    ).toBe(true);
    expect(pushMatches({ ...event, ref: 'refs/tags/v1.2.0' }, 'https://github.com/acme/gitops', 'HEAD')).toBe(
      false,
    );
  });

  test('payloads without a ref or repository are not pushes', () => {
    expect(parsePushEvent({ zen: 'Keep it logically awesome.' })).toBeUndefined();
    expect(
      parsePushEvent({
        ref: 'refs/heads/x',
        repository: { clone_url: 'https://h/a/b.git', default_branch: 'x' },
        after: 'abc',
      }),
    ).toEqual({
      repoURLs: ['https://h/a/b.git'],
      ref: 'refs/heads/x',
      defaultBranch: 'x',
      after: 'abc',
    });
  });
});

describe('the webhook endpoint', () => {
  let server: Server;
  let url = '';
  const pushes: PushEvent[] = [];
  beforeAll(async () => {
    const handle = webhookHandler({ secret: SECRET, onPush: (e) => (pushes.push(e), 2) });
    server = createServer((req, res) => void handle(req, res));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    url = `http://127.0.0.1:${(server.address() as { port: number }).port}/`;
  });
  afterAll(() => new Promise<void>((r) => server.close(() => r())));

  const post = (body: string, headers: Record<string, string>) =>
    fetch(url, { method: 'POST', body, headers: { 'Content-Type': 'application/json', ...headers } });

  test('a signed push is handed on; forged and unsigned ones are refused and never reach it', async () => {
    const body = JSON.stringify({
      ref: 'refs/heads/main',
      repository: { clone_url: 'https://github.com/acme/gitops.git' },
    });
    const ok = await post(body, {
      'X-GitHub-Event': 'push',
      'X-Hub-Signature-256': signature(SECRET, Buffer.from(body)),
    });
    expect([ok.status, await ok.json()]).toEqual([200, { message: 'refreshed 2 application(s)' }]);
    const forged = await post(body, {
      'X-GitHub-Event': 'push',
      'X-Hub-Signature-256': signature('guess', Buffer.from(body)),
    });
    expect(forged.status).toBe(401);
    const unsigned = await post(body, { 'X-GitHub-Event': 'push' });
    expect(unsigned.status).toBe(401);
    expect(pushes).toHaveLength(1);
  });

  test('ping answers pong; other events are refused with 400, as Argo CD does', async () => {
    const body = '{}';
    const sig = signature(SECRET, Buffer.from(body));
    expect((await post(body, { 'X-GitHub-Event': 'ping', 'X-Hub-Signature-256': sig })).status).toBe(200);
    expect((await post(body, { 'X-GitHub-Event': 'issues', 'X-Hub-Signature-256': sig })).status).toBe(400);
  });

  test('without a secret the endpoint refuses everything', async () => {
    const handle = webhookHandler({ secret: '', onPush: () => 0 });
    const s = createServer((req, res) => void handle(req, res));
    await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
    try {
      const body = '{}';
      const res = await fetch(`http://127.0.0.1:${(s.address() as { port: number }).port}/`, {
        method: 'POST',
        body,
        headers: { 'X-GitHub-Event': 'push', 'X-Hub-Signature-256': signature('', Buffer.from(body)) },
      });
      expect(res.status).toBe(403);
    } finally {
      await new Promise<void>((r) => s.close(() => r()));
    }
  });
});

describe('the webhook under hostile or repeated requests', () => {
  const push = JSON.stringify({
    ref: 'refs/heads/main',
    repository: { clone_url: 'https://github.com/acme/gitops.git' },
  });

  async function serve(
    options: Partial<Parameters<typeof webhookHandler>[0]> & {
      onPush: (e: PushEvent) => number | Promise<number>;
    },
  ) {
    const handle = webhookHandler({ secret: SECRET, ...options });
    const server = createServer(WEBHOOK_SERVER_OPTIONS, (req, res) => void handle(req, res));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as { port: number }).port;
    return {
      url: `http://127.0.0.1:${port}/`,
      port,
      close: () =>
        new Promise<void>((r) => {
          server.closeAllConnections();
          server.close(() => r());
        }),
    };
  }

  test('without a signature header the body is never read', async () => {
    let reads = 0;
    const s = await serve({ onPush: () => 1 });
    try {
      // A body the server would have to buffer: it answers before the client has finished.
      const res = await new Promise<number>((resolveStatus, reject) => {
        const req = request(s.url, { method: 'POST', headers: { 'x-github-event': 'push' } }, (r) => {
          r.resume();
          resolveStatus(r.statusCode ?? 0);
        });
        req.on('error', reject);
        const chunk = Buffer.alloc(64 * 1024, 'a');
        const pump = () => {
          while (req.write(chunk)) reads++;
          if (reads < 1000) req.once('drain', pump);
        };
        pump();
      });
      expect(res).toBe(401);
      expect(reads).toBeLessThan(1000);
    } finally {
      await s.close();
    }
  });

  test('a body over the cap is refused with 413, by its declared length or as it streams', async () => {
    const pushes: PushEvent[] = [];
    const s = await serve({ onPush: (e) => (pushes.push(e), 1), maxBodyBytes: 1024 });
    try {
      const big = JSON.stringify({ ref: 'refs/heads/main', pad: 'x'.repeat(4096), repository: {} });
      const declared = await fetch(s.url, {
        method: 'POST',
        body: big,
        headers: { 'x-github-event': 'push', 'x-hub-signature-256': signature(SECRET, Buffer.from(big)) },
      });
      expect(declared.status).toBe(413);
      // Chunked: no length to refuse by, so the cap applies while reading.
      const streamed = await new Promise<number>((resolveStatus, reject) => {
        const req = request(
          s.url,
          {
            method: 'POST',
            headers: {
              'x-github-event': 'push',
              'x-hub-signature-256': signature(SECRET, Buffer.from(big)),
              'transfer-encoding': 'chunked',
            },
          },
          (r) => {
            r.resume();
            resolveStatus(r.statusCode ?? 0);
          },
        );
        req.on('error', reject);
        req.end(big);
      });
      expect(streamed).toBe(413);
      expect(pushes).toEqual([]);
    } finally {
      await s.close();
    }
  });

  test('requests over the in-flight limit get 503 with Retry-After; the others are served', async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    let entered = 0;
    let bothInside!: () => void;
    const inside = new Promise<void>((r) => (bothInside = r));
    const s = await serve({
      onPush: async () => {
        if (++entered === 2) bothInside();
        await gate;
        return 1;
      },
      maxInFlight: 2,
    });
    try {
      const send = () =>
        fetch(s.url, {
          method: 'POST',
          body: push,
          headers: { 'x-github-event': 'push', 'x-hub-signature-256': signature(SECRET, Buffer.from(push)) },
        });
      const held = [send(), send()];
      await inside;
      const third = await send();
      expect(third.status).toBe(503);
      expect(third.headers.get('retry-after')).toBe('1');
      release();
      expect((await Promise.all(held)).map((r) => r.status)).toEqual([200, 200]);
      expect((await send()).status).toBe(200);
    } finally {
      await s.close();
    }
  });

  test('a delivery id seen within ten minutes is acknowledged without a second refresh', async () => {
    let clock = 1_000_000;
    const pushes: PushEvent[] = [];
    const s = await serve({ onPush: (e) => (pushes.push(e), 1), now: () => clock });
    try {
      const send = (delivery: string) =>
        fetch(s.url, {
          method: 'POST',
          body: push,
          headers: {
            'x-github-event': 'push',
            'x-github-delivery': delivery,
            'x-hub-signature-256': signature(SECRET, Buffer.from(push)),
          },
        }).then(async (r) => [r.status, ((await r.json()) as { message: string }).message]);
      expect(await send('d-1')).toEqual([200, 'refreshed 1 application(s)']);
      expect(await send('d-1')).toEqual([200, 'delivery d-1 already handled']);
      expect(await send('d-2')).toEqual([200, 'refreshed 1 application(s)']);
      clock += 10 * 60 * 1000;
      expect(await send('d-1')).toEqual([200, 'refreshed 1 application(s)']);
      expect(pushes).toHaveLength(3);
    } finally {
      await s.close();
    }
  });
});
