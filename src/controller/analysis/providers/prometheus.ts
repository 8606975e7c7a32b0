// The prometheus metric: an instant query against the HTTP API (/api/v1/query). As in Argo
// Rollouts, a scalar becomes a number and a vector an array of its sample values, so conditions
// read `result[0]`; an empty vector is an empty array, which a condition indexing it turns into an
// Error measurement (never a crash). Matrices and strings are not supported.
import { evaluateConditions } from '../expression.ts';
import type { Measurement, Metric } from '../types.ts';
import { errorMeasurement, headerMap, InlineProvider, sendHttp, type ProviderContext } from './provider.ts';

export const RESOLVED_QUERY_KEY = 'ResolvedPrometheusQuery';

export interface PrometheusProviderOptions {
  /** Used when a metric names no address (Argo: ARGO_ROLLOUTS_PROMETHEUS_ADDRESS). */
  defaultAddress?: string;
}

interface ApiResponse {
  status?: string;
  errorType?: string;
  error?: string;
  warnings?: string[];
  data?: { resultType?: string; result?: unknown };
}

/** A Prometheus sample value ("1.5", "NaN", "+Inf") as a number. */
export function parseSampleValue(v: unknown): number {
  if (typeof v === 'number') return v;
  if (typeof v !== 'string') throw new Error(`invalid sample value ${JSON.stringify(v)}`);
  if (v === 'NaN') return NaN;
  if (v === '+Inf' || v === 'Inf') return Infinity;
  if (v === '-Inf') return -Infinity;
  const n = Number(v);
  if (v.trim() === '' || Number.isNaN(n)) throw new Error(`invalid sample value ${JSON.stringify(v)}`);
  return n;
}

/** As Prometheus prints sample values. */
export function formatSampleValue(n: number): string {
  if (n === Infinity) return '+Inf';
  if (n === -Infinity) return '-Inf';
  return String(n);
}

/** `result` and the measurement's value for a query response's data. */
export function prometheusResult(data: ApiResponse['data']): { result: number | number[]; value: string } {
  switch (data?.resultType) {
    case 'scalar': {
      const pair = data.result as [number, string] | undefined;
      if (!Array.isArray(pair)) throw new Error('invalid scalar result');
      const n = parseSampleValue(pair[1]);
      return { result: n, value: formatSampleValue(n) };
    }
    case 'vector': {
      if (!Array.isArray(data.result)) throw new Error('invalid vector result');
      const values = (data.result as Array<{ value?: [number, string] } | null>)
        .filter((s) => s !== null && s !== undefined)
        .map((s) => parseSampleValue(s.value?.[1]));
      return { result: values, value: `[${values.map(formatSampleValue).join(',')}]` };
    }
    default:
      throw new Error(`Prometheus metric type not supported (${data?.resultType ?? 'no result'})`);
  }
}

export class PrometheusProvider extends InlineProvider {
  private readonly options: PrometheusProviderOptions;

  constructor(options: PrometheusProviderOptions = {}) {
    super();
    this.options = options;
  }

  metadata(metric: Metric): Record<string, string> | undefined {
    const query = metric.provider.prometheus?.query;
    return query ? { [RESOLVED_QUERY_KEY]: query } : undefined;
  }

  async run(ctx: ProviderContext): Promise<Measurement> {
    const m: Measurement = { phase: 'Running', startedAt: ctx.now().toISOString() };
    const prom = ctx.metric.provider.prometheus!;
    try {
      const address = prom.address || this.options.defaultAddress;
      if (!address) throw new Error('prometheus address is not configured');
      let base: URL;
      try {
        base = new URL(address);
      } catch {
        throw new Error('prometheus address is not is url format');
      }
      if (!base.host) throw new Error('prometheus address is not is url format');
      const timeout = prom.timeout ?? 30;
      if (timeout < 0) throw new Error('prometheus timeout should not be negative');
      const url = `${base.toString().replace(/\/+$/, '')}/api/v1/query`;
      const params = new URLSearchParams({
        query: prom.query ?? '',
        time: (ctx.now().getTime() / 1000).toFixed(3),
      });
      const common = {
        timeoutMs: (timeout || 30) * 1000,
        signal: ctx.signal,
        insecure: (prom as { insecure?: boolean }).insecure === true,
      };
      const headers = headerMap(prom.headers);
      // POST, as client_golang sends queries (no URL length limit); GET where POST is refused.
      let rsp = await sendHttp(url, {
        ...common,
        method: 'POST',
        headers: { ...headers, 'content-type': 'application/x-www-form-urlencoded' },
        body: params.toString(),
      });
      if (rsp.status === 405)
        rsp = await sendHttp(`${url}?${params.toString()}`, { ...common, method: 'GET', headers });
      let body: ApiResponse | undefined;
      try {
        body = JSON.parse(rsp.body) as ApiResponse;
      } catch {
        body = undefined;
      }
      if (body?.status === 'error' || rsp.status < 200 || rsp.status >= 300) {
        if (body?.error) throw new Error(`${body.errorType ? `${body.errorType}: ` : ''}${body.error}`);
        throw new Error(`server returned HTTP status ${rsp.status}`);
      }
      if (!body) throw new Error('could not parse the response as JSON');
      const { result, value } = prometheusResult(body.data);
      const phase = evaluateConditions(ctx.metric, result);
      const warnings = (body.warnings ?? []).map((w) => `"${w}"`).join(', ');
      return {
        ...m,
        phase,
        value,
        ...(warnings ? { metadata: { warnings } } : {}),
        finishedAt: ctx.now().toISOString(),
      };
    } catch (err) {
      if (ctx.signal.aborted) throw err;
      return errorMeasurement(m, err, ctx.now());
    }
  }
}
