// HTTP traffic from the host to pods and Services the harness created (addresses in
// 198.18.0.0/15), one connection per request and bounded in count, for the e2e proofs.
import { request } from 'node:http';

/** One request on a new connection (a kept-alive one would stay with one pod). */
export function ask(host: string, port = 80): Promise<{ status: number; body: string }> {
  return new Promise((resolveAnswer) => {
    const req = request({ host, port, path: '/', agent: false, timeout: 3000 }, (res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => resolveAnswer({ status: res.statusCode ?? 0, body: body.trim() }));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', () => resolveAnswer({ status: 0, body: '' }));
    req.end();
  });
}

/** Answers to `n` requests, counted by body (`v1`, `v2`, or `failed`). */
export async function sample(host: string, n: number): Promise<Record<string, number>> {
  const counts: Record<string, number> = {};
  for (let i = 0; i < n; i++) {
    const { status, body } = await ask(host);
    const key = status === 200 ? body : 'failed';
    counts[key] = (counts[key] ?? 0) + 1;
  }
  return counts;
}

export interface Load {
  /** Ends the load; resolves with the answers counted by body (as sample). */
  stop(): Promise<Record<string, number>>;
}

/**
 * Requests to `host` in the background, one every `intervalMs` (unpaced, a loop here sends
 * a thousand a second and would spend its budget at once), until stopped, or until `maxRequests`
 * were sent or `maxMs` passed, whichever comes first: bounded in count and in time.
 */
export function load(host: string, limits: { intervalMs: number; maxRequests: number; maxMs: number }): Load {
  const counts: Record<string, number> = {};
  let stopped = false;
  const deadline = Date.now() + limits.maxMs;
  const loop = (async () => {
    for (let i = 0; i < limits.maxRequests && !stopped && Date.now() < deadline; i++) {
      const next = Date.now() + limits.intervalMs;
      const { status, body } = await ask(host);
      const key = status === 200 ? body : status === 0 ? 'failed' : String(status);
      counts[key] = (counts[key] ?? 0) + 1;
      await new Promise((r) => setTimeout(r, Math.max(0, next - Date.now())));
    }
  })();
  return {
    async stop() {
      stopped = true;
      await loop;
      return counts;
    },
  };
}
