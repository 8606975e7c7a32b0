// The client's transport: a request goes to the dispatcher client-node configured, through
// dispatcher.request() (no fetch, no gzip asked for); one with no dispatcher goes through fetch.
// Against a plain-http server on loopback, so both paths are seen end to end.
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import * as k8s from '../../../src/core/kube/client-node.ts';
import { DispatcherHttpLibrary } from '../../../src/core/kube/client.ts';

let server: Server;
let base = '';
const seen: { method?: string; url?: string; headers: IncomingHttpHeaders; body: string }[] = [];

beforeAll(async () => {
  server = createServer((req, res) => {
    let body = '';
    req.on('data', (chunk: Buffer) => (body += chunk.toString()));
    req.on('end', () => {
      seen.push({ method: req.method, url: req.url, headers: req.headers, body });
      if (req.url?.includes('watch=true')) {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.write('{"type":"ADDED"}\n{"type":');
        setTimeout(() => res.end('"DELETED"}\n'), 10);
        return;
      }
      res.setHeader('set-cookie', ['a=1', 'b=2']);
      res.writeHead(201, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ echoed: body }));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

/** A request context as the client builds it, with the dispatcher client-node gives a cluster. */
async function context(path: string, method: 'GET' | 'POST', withDispatcher: boolean) {
  const ctx = new k8s.RequestContext(`${base}${path}`, method);
  ctx.setHeaderParam('Content-Type', 'application/json');
  if (withDispatcher) {
    const kc = new k8s.KubeConfig();
    kc.loadFromOptions({
      clusters: [{ name: 'c', server: base, skipTLSVerify: true }],
      users: [{ name: 'u', token: 't' }],
      contexts: [{ name: 'x', cluster: 'c', user: 'u' }],
      currentContext: 'x',
    });
    await kc.applySecurityAuthentication(ctx);
    expect(ctx.getDispatcher()).toBeDefined();
  }
  return ctx;
}

describe('DispatcherHttpLibrary', () => {
  const http = new DispatcherHttpLibrary();

  test.each([
    ['the dispatcher', true],
    ['fetch (no dispatcher)', false],
  ])(
    'sends method, path, query, headers and body through %s, and reads the answer',
    async (_, withDispatcher) => {
      seen.length = 0;
      const ctx = await context('/api/v1/namespaces/a/configmaps?dryRun=All', 'POST', withDispatcher);
      ctx.setBody('{"x":1}');
      const rsp = await http.send(ctx).toPromise();
      expect(rsp.httpStatusCode).toBe(201);
      expect(rsp.headers['content-type']).toBe('application/json');
      expect(JSON.parse(await rsp.body.text())).toEqual({ echoed: '{"x":1}' });
      expect(seen).toHaveLength(1);
      const sent = seen[0]!;
      expect(sent).toMatchObject({ method: 'POST', url: '/api/v1/namespaces/a/configmaps?dryRun=All' });
      if (withDispatcher) {
        // A header sent more than once arrives as one, as fetch's Headers joins them.
        expect(rsp.headers['set-cookie']).toBe('a=1, b=2');
        expect(sent.headers.authorization).toBe('Bearer t');
        // The apiserver compresses large answers only when asked; a loopback or in-cluster
        // client should not make it spend CPU on that.
        expect(sent.headers['accept-encoding']).toBeUndefined();
      } else {
        // fetch asks for gzip on its own: one reason the dispatcher path exists.
        expect(sent.headers['accept-encoding']).toContain('gzip');
      }
    },
  );

  test('a streamed answer is iterable chunk by chunk (the watch path)', async () => {
    const ctx = await context('/api/v1/configmaps?watch=true', 'GET', true);
    const rsp = await http.send(ctx).toPromise();
    let text = '';
    for await (const chunk of rsp.body.stream() as unknown as AsyncIterable<Uint8Array>) {
      text += Buffer.from(chunk).toString();
    }
    expect(text.split('\n').filter(Boolean)).toEqual(['{"type":"ADDED"}', '{"type":"DELETED"}']);
  });

  test('an aborted request rejects with its reason', async () => {
    const ctx = await context('/api/v1/configmaps?watch=true', 'GET', true);
    const abort = new AbortController();
    ctx.setSignal(abort.signal);
    const reason = new Error('stop');
    abort.abort(reason);
    await expect(http.send(ctx).toPromise()).rejects.toBe(reason);
  });
});
