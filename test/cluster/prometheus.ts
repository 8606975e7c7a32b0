// A real Prometheus (Debian's package) for analysis tests, on loopback. It finds what to scrape the
// way a cluster's Prometheus does: Kubernetes service discovery against the test apiserver (role
// pod), keeping pods annotated `prometheus.io/scrape: "true"` and scraping their IP on the
// `prometheus.io/port` annotation, with the pod's namespace and labels as series labels.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './ports.ts';
import { logTail, startComponent, stopProcessGroup, type ComponentProcess } from './process.ts';

export interface PrometheusOptions {
  /** The cluster to discover pods in. */
  kubeconfig: string;
  /** Only pods of these namespaces (default: all). */
  namespaces?: string[];
  scrapeInterval?: string;
}

export class Prometheus {
  readonly url: string;
  readonly dir: string;
  private readonly process: ComponentProcess;

  private constructor(url: string, dir: string, proc: ComponentProcess) {
    this.url = url;
    this.dir = dir;
    this.process = proc;
  }

  static async start(options: PrometheusOptions): Promise<Prometheus> {
    const dir = await mkdtemp(join(tmpdir(), 'kube-actions-prometheus-'));
    const port = await freePort();
    const interval = options.scrapeInterval ?? '1s';
    const config = {
      global: { scrape_interval: interval, evaluation_interval: interval },
      scrape_configs: [
        {
          job_name: 'pods',
          kubernetes_sd_configs: [
            {
              role: 'pod',
              kubeconfig_file: options.kubeconfig,
              ...(options.namespaces ? { namespaces: { names: options.namespaces } } : {}),
            },
          ],
          relabel_configs: [
            {
              source_labels: ['__meta_kubernetes_pod_annotation_prometheus_io_scrape'],
              action: 'keep',
              regex: 'true',
            },
            { source_labels: ['__meta_kubernetes_pod_phase'], action: 'keep', regex: 'Running' },
            {
              source_labels: [
                '__meta_kubernetes_pod_ip',
                '__meta_kubernetes_pod_annotation_prometheus_io_port',
              ],
              action: 'replace',
              regex: '(.+);(\\d+)',
              replacement: '$1:$2',
              target_label: '__address__',
            },
            { action: 'labelmap', regex: '__meta_kubernetes_pod_label_(.+)' },
            { source_labels: ['__meta_kubernetes_namespace'], target_label: 'namespace' },
            { source_labels: ['__meta_kubernetes_pod_name'], target_label: 'pod' },
          ],
        },
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
    const prometheus = new Prometheus(`http://127.0.0.1:${port}`, dir, proc);
    const deadline = Date.now() + 30_000;
    for (;;) {
      const ready = await fetch(`${prometheus.url}/-/ready`).then(
        (r) => r.ok,
        () => false,
      );
      if (ready) return prometheus;
      if (Date.now() > deadline) {
        await prometheus.stop();
        throw new Error(`prometheus did not become ready:\n${logTail(proc.logFile)}`);
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
    await rm(this.dir, { recursive: true, force: true });
  }
}
