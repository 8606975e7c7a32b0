// What a metric provider does, and the HTTP client the web and prometheus providers share.
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { AnalysisRun, Measurement, Metric } from '../types.ts';

export interface ProviderContext {
  run: AnalysisRun;
  /** The metric with its arguments substituted, secrets included: never write it anywhere. */
  metric: Metric;
  /** Aborted when the controller stops. */
  signal: AbortSignal;
  /**
   * Job metrics: secret arguments stand as `$(VAR)` in `metric`, and these entries (for every
   * container of the Job) define VAR from the Secret.
   */
  secretEnv?: { name: string; valueFrom: { secretKeyRef: { name: string; key: string } } }[];
  now: () => Date;
}

export interface Provider {
  /** Takes a measurement: completed, or Running (in flight) to be resumed later. */
  run(ctx: ProviderContext): Promise<Measurement>;
  /** Looks at an in-flight measurement again. */
  resume(ctx: ProviderContext, measurement: Measurement): Promise<Measurement>;
  /** Ends an in-flight measurement early (the run is terminating). */
  terminate(ctx: ProviderContext, measurement: Measurement): Promise<Measurement>;
  /** Removes what measurements beyond `limit` left behind (a job metric's Jobs). */
  garbageCollect(ctx: ProviderContext, limit: number): Promise<void>;
  /** Shown in the metric's result (e.g. the resolved query), computed from the public metric. */
  metadata?(metric: Metric): Record<string, string> | undefined;
}

/**
 * A provider whose measurement completes within run() (web, prometheus): one found in flight was
 * interrupted by a restart, terminating ends it as is, and nothing is left behind to collect.
 */
export abstract class InlineProvider implements Provider {
  abstract run(ctx: ProviderContext): Promise<Measurement>;

  resume(ctx: ProviderContext, measurement: Measurement): Promise<Measurement> {
    return Promise.resolve(errorMeasurement(measurement, new Error('measurement interrupted'), ctx.now()));
  }

  terminate(ctx: ProviderContext, measurement: Measurement): Promise<Measurement> {
    return Promise.resolve({ ...measurement, phase: 'Successful', finishedAt: ctx.now().toISOString() });
  }

  garbageCollect(): Promise<void> {
    return Promise.resolve();
  }
}

export function errorMeasurement(m: Measurement, err: unknown, now: Date): Measurement {
  return {
    ...m,
    phase: 'Error',
    message: err instanceof Error ? err.message : String(err),
    finishedAt: now.toISOString(),
  };
}

export interface HttpResponse {
  status: number;
  body: string;
}

export interface HttpRequestOptions {
  method: string;
  headers?: Record<string, string>;
  body?: string;
  timeoutMs: number;
  signal: AbortSignal;
  /** Skip TLS certificate verification. */
  insecure?: boolean;
  /** Larger responses are an error; default 10 MiB. */
  maxBytes?: number;
}

/** One HTTP(S) request with a deadline; rejects on network errors, timeouts and oversized bodies. */
export function sendHttp(url: string, options: HttpRequestOptions): Promise<HttpResponse> {
  let target: URL;
  try {
    target = new URL(url);
  } catch {
    return Promise.reject(new Error(`invalid URL ${JSON.stringify(url)}`));
  }
  if (target.protocol !== 'http:' && target.protocol !== 'https:') {
    return Promise.reject(new Error(`unsupported URL scheme ${JSON.stringify(target.protocol)}`));
  }
  const maxBytes = options.maxBytes ?? 10 * 1024 * 1024;
  const signal = AbortSignal.any([options.signal, AbortSignal.timeout(Math.max(1, options.timeoutMs))]);
  return new Promise<HttpResponse>((resolve, reject) => {
    const send = target.protocol === 'https:' ? httpsRequest : httpRequest;
    const req = send(
      target,
      {
        method: options.method,
        headers: {
          ...(options.body !== undefined ? { 'content-length': Buffer.byteLength(options.body) } : {}),
          ...options.headers,
        },
        signal,
        ...(target.protocol === 'https:' && options.insecure ? { rejectUnauthorized: false } : {}),
      },
      (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (chunk: Buffer) => {
          size += chunk.length;
          if (size > maxBytes) {
            req.destroy(new Error(`response larger than ${maxBytes} bytes`));
            return;
          }
          chunks.push(chunk);
        });
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }),
        );
        res.on('error', reject);
      },
    );
    req.on('error', (err: Error) => {
      if (signal.aborted && !options.signal.aborted) {
        reject(new Error(`request timed out after ${options.timeoutMs / 1000}s`));
      } else {
        reject(err);
      }
    });
    if (options.body !== undefined) req.write(options.body);
    req.end();
  });
}

export function headerMap(
  headers: Array<{ key: string; value: string }> | undefined,
): Record<string, string> {
  const out: Record<string, string> = {};
  for (const h of headers ?? []) if (h?.key) out[h.key.toLowerCase()] = String(h.value ?? '');
  return out;
}
