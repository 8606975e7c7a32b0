// The web metric (Argo's webmetric): an HTTP request whose JSON response is narrowed by
// `jsonPath`; the first value found is `result`. A response that is not JSON is Successful with
// the body as its value (as in Argo); a non-2xx status or an unreachable server is an Error.
import { evaluateConditions } from '../expression.ts';
import { parseJsonPath } from '../jsonpath.ts';
import type { Measurement } from '../types.ts';
import { errorMeasurement, headerMap, InlineProvider, sendHttp, type ProviderContext } from './provider.ts';

const METHODS = new Set(['GET', 'POST', 'PUT']);

export class WebProvider extends InlineProvider {
  async run(ctx: ProviderContext): Promise<Measurement> {
    const started = ctx.now();
    const m: Measurement = { phase: 'Running', startedAt: started.toISOString() };
    const web = ctx.metric.provider.web!;
    try {
      const method = (web.method || 'GET').toUpperCase();
      if (!METHODS.has(method))
        throw new Error(`unsupported method ${JSON.stringify(web.method)} (GET, POST or PUT)`);
      const hasJson = web.jsonBody !== undefined && web.jsonBody !== null;
      if (web.body && hasJson) {
        throw new Error('use either Body or JSONBody; both cannot exists for WebMetric payload');
      }
      if ((web.body || hasJson) && method === 'GET') {
        throw new Error('Body/JSONBody can only be used with POST or PUT WebMetric Method types');
      }
      const jsonPath = parseJsonPath(web.jsonPath ?? '');
      const headers = headerMap(web.headers);
      if (hasJson) headers['content-type'] = 'application/json';
      const timeoutSeconds = web.timeoutSeconds && web.timeoutSeconds > 0 ? web.timeoutSeconds : 10;
      const rsp = await sendHttp(web.url, {
        method,
        headers,
        body: hasJson ? JSON.stringify(web.jsonBody) : web.body || undefined,
        timeoutMs: timeoutSeconds * 1000,
        signal: ctx.signal,
        insecure: web.insecure === true,
      });
      if (rsp.status < 200 || rsp.status >= 300)
        throw new Error(`received non 2xx response code: ${rsp.status}`);
      let data: unknown;
      try {
        data = JSON.parse(rsp.body);
      } catch {
        return {
          ...m,
          phase: 'Successful',
          value: rsp.body.slice(0, 1024),
          finishedAt: ctx.now().toISOString(),
        };
      }
      let found: unknown[];
      try {
        found = jsonPath.find(data);
      } catch (err) {
        throw new Error(`Could not find JSONPath in body: ${(err as Error).message}`, { cause: err });
      }
      if (found.length === 0) throw new Error('result of web metric produced no value');
      const result = found[0];
      const phase = evaluateConditions(ctx.metric, result);
      return {
        ...m,
        phase,
        value: JSON.stringify(result ?? null).slice(0, 1024),
        finishedAt: ctx.now().toISOString(),
      };
    } catch (err) {
      if (ctx.signal.aborted) throw err;
      return errorMeasurement(m, err, ctx.now());
    }
  }
}
