// A real Prometheus (Debian's package) for analysis tests, on loopback. It finds pods to scrape as
// a cluster's Prometheus does with Kubernetes service discovery (role pod): pods of the given
// namespaces annotated `prometheus.io/scrape: "true"`, scraped on their IP at the
// `prometheus.io/port` annotation, with the pod's namespace, name and labels as series labels.
// Debian builds Prometheus without its Kubernetes discovery (client-go is not packaged), so the
// harness answers Prometheus's HTTP service discovery (http_sd_configs, polled every second) with
// the same targets and labels, listed from the apiserver at each poll. Static targets (host:port
// on loopback) serve tests without real pods.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as k8s from '@kubernetes/client-node';
import { KubeClient } from '../../src/core/kube/client.ts';
import { freePort } from './ports.ts';
import { logTail, startComponent, stopProcessGroup, type ComponentProcess } from './process.ts';

export interface PrometheusOptions {
  /** The cluster to discover pods in (job `pods`), as a kubeconfig file. */
  kubeconfig?: string;
  /** Only pods of these namespaces (required with kubeconfig: tests never scrape others' pods). */
  namespaces?: string[];
  /** host:port targets scraped at /metrics (job `static`). */
  staticTargets?: string[];
  scrapeInterval?: string;
}

interface Pod {
  metadata: {
    name: string;
    namespace: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
  };
  status?: { phase?: string; podIP?: string };
}

/** A Prometheus label name from a Kubernetes label key, as Kubernetes SD's labelmap makes it. */
const labelName = (key: string) => key.replace(/[^a-zA-Z0-9_]/g, '_');

/** The target groups Kubernetes SD (role pod) with the usual relabelling would give for `pods`. */
export function podTargets(pods: Pod[]): { targets: string[]; labels: Record<string, string> }[] {
  return pods
    .filter(
      (p) =>
        p.metadata.annotations?.['prometheus.io/scrape'] === 'true' &&
        p.status?.phase === 'Running' &&
        p.status.podIP &&
        /^\d+$/.test(p.metadata.annotations['prometheus.io/port'] ?? ''),
    )
    .map((p) => ({
      targets: [`${p.status!.podIP}:${p.metadata.annotations!['prometheus.io/port']}`],
      labels: {
        ...Object.fromEntries(Object.entries(p.metadata.labels ?? {}).map(([k, v]) => [labelName(k), v])),
        namespace: p.metadata.namespace,
        pod: p.metadata.name,
      },
    }));
}

export class Prometheus {
  readonly url: string;
  readonly dir: string;
  private readonly process: ComponentProcess;
  private readonly discovery: PodDiscovery | undefined;

  private constructor(url: string, dir: string, proc: ComponentProcess, discovery?: PodDiscovery) {
    this.url = url;
    this.dir = dir;
    this.process = proc;
    this.discovery = discovery;
  }

  static async start(options: PrometheusOptions): Promise<Prometheus> {
    if (options.kubeconfig && !options.namespaces?.length)
      throw new Error('Prometheus.start: pod discovery needs the namespaces to look in');
    const dir = await mkdtemp(join(tmpdir(), 'kube-actions-prometheus-'));
    const port = await freePort();
    const interval = options.scrapeInterval ?? '1s';
    const discovery = options.kubeconfig
      ? await startPodDiscovery(options.kubeconfig, options.namespaces!)
      : undefined;
    const config = {
      global: { scrape_interval: interval, evaluation_interval: interval },
      scrape_configs: [
        ...(options.staticTargets?.length
          ? [{ job_name: 'static', static_configs: [{ targets: options.staticTargets }] }]
          : []),
        ...(discovery
          ? [{ job_name: 'pods', http_sd_configs: [{ url: discovery.url, refresh_interval: '1s' }] }]
          : []),
      ],
    };
    // JSON is YAML: no second serialiser needed.
    await writeFile(join(dir, 'prometheus.yml'), JSON.stringify(config, null, 2));
    const proc = startComponent(
      'prometheus',
      'prometheus',
      [
        `--config.file=${join(dir, 'prometheus.yml')}`,
        `--storage.tsdb.path=${join(dir, 'data')}`,
        `--web.listen-address=127.0.0.1:${port}`,
        '--storage.tsdb.retention.time=1h',
        '--log.level=warn',
      ],
      { logDir: dir, attached: true },
    );
    const prometheus = new Prometheus(`http://127.0.0.1:${port}`, dir, proc, discovery);
    const deadline = Date.now() + 30_000;
    for (;;) {
      const ready = await fetch(`${prometheus.url}/-/ready`).then(
        (r) => r.ok,
        () => false,
      );
      if (ready) return prometheus;
      if (Date.now() > deadline) {
        // The log first: stop() removes the directory holding it.
        const tail = logTail(proc.logFile);
        await prometheus.stop();
        throw new Error(`prometheus did not become ready:\n${tail}`);
      }
      await new Promise((r) => setTimeout(r, 200));
    }
  }

  /** An instant query's vector: each series' labels and value. */
  async query(promql: string): Promise<{ metric: Record<string, string>; value: number }[]> {
    const res = await fetch(`${this.url}/api/v1/query?query=${encodeURIComponent(promql)}`);
    const body = (await res.json()) as {
      status: string;
      error?: string;
      data?: { resultType: string; result: { metric: Record<string, string>; value: [number, string] }[] };
    };
    if (body.status !== 'success') throw new Error(`prometheus query ${promql} failed: ${body.error}`);
    return (body.data?.result ?? []).map((r) => ({ metric: r.metric, value: Number(r.value[1]) }));
  }

  /** The scrape targets Prometheus has, with their health. */
  async targets(): Promise<{ labels: Record<string, string>; health: string; scrapeUrl: string }[]> {
    const res = await fetch(`${this.url}/api/v1/targets?state=active`);
    const body = (await res.json()) as {
      data: { activeTargets: { labels: Record<string, string>; health: string; scrapeUrl: string }[] };
    };
    return body.data.activeTargets;
  }

  async stop(): Promise<void> {
    await stopProcessGroup(this.process.pid);
    await this.discovery?.stop();
    await rm(this.dir, { recursive: true, force: true });
  }
}

interface PodDiscovery {
  url: string;
  stop(): Promise<void>;
}

/** The HTTP SD endpoint: at each poll, the pods of `namespaces` as podTargets gives them. */
async function startPodDiscovery(kubeconfig: string, namespaces: string[]): Promise<PodDiscovery> {
  const kc = new k8s.KubeConfig();
  kc.loadFromFile(kubeconfig);
  const client = new KubeClient(kc);
  const server: Server = createServer((_req, res) => {
    Promise.all(
      namespaces.map((ns) =>
        client.request<{ items: Pod[] }>('GET', `/api/v1/namespaces/${ns}/pods`).then((l) => l.items),
      ),
    ).then(
      (lists) =>
        res
          .writeHead(200, { 'content-type': 'application/json' })
          .end(JSON.stringify(podTargets(lists.flat()))),
      (err: Error) => res.writeHead(500, { 'content-type': 'text/plain' }).end(err.message),
    );
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/`,
    async stop() {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
      await client.close();
    },
  };
}
