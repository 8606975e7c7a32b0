// A minimal Prometheus registry (counters, gauges, histograms with labels) rendered in the text
// exposition format 0.0.4. The controllers need a handful of series; a dependency such as
// prom-client would bring a global default registry and process collectors we do not want.

export type Labels = Record<string, string>;

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

export const DEFAULT_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

export interface MetricOptions {
  name: string;
  help: string;
  labelNames?: readonly string[];
}

export interface HistogramOptions extends MetricOptions {
  /** Upper bounds, ascending; +Inf is implicit. */
  buckets?: readonly number[];
}

type MetricType = 'counter' | 'gauge' | 'histogram';

abstract class Metric<Child> {
  readonly name: string;
  readonly help: string;
  readonly labelNames: readonly string[];
  abstract readonly type: MetricType;
  /** Children by serialized label set, in creation order (stable output). */
  protected readonly children = new Map<string, { labels: Labels; child: Child }>();

  constructor(options: MetricOptions) {
    if (!METRIC_NAME.test(options.name)) throw new Error(`invalid metric name "${options.name}"`);
    for (const label of options.labelNames ?? []) {
      if (!LABEL_NAME.test(label) || label.startsWith('__')) {
        throw new Error(`invalid label name "${label}" for metric ${options.name}`);
      }
    }
    this.name = options.name;
    this.help = options.help;
    this.labelNames = [...(options.labelNames ?? [])];
  }

  protected abstract create(): Child;

  /** The series for one label set; every declared label must be given, and no other. */
  with(labels: Labels = {}): Child {
    const given = Object.keys(labels);
    if (given.length !== this.labelNames.length || !this.labelNames.every((l) => l in labels)) {
      throw new Error(
        `metric ${this.name} takes labels [${this.labelNames.join(', ')}], got [${given.join(', ')}]`,
      );
    }
    const key = this.labelNames.map((l) => labels[l]).join('\u0000');
    let entry = this.children.get(key);
    if (!entry) {
      const ordered: Labels = {};
      for (const l of this.labelNames) ordered[l] = labels[l]!;
      entry = { labels: ordered, child: this.create() };
      this.children.set(key, entry);
    }
    return entry.child;
  }

  /** Forgets every series (e.g. in tests, or when the labelled thing is gone). */
  reset(): void {
    this.children.clear();
  }

  render(): string {
    const lines = [`# HELP ${this.name} ${escapeHelp(this.help)}`, `# TYPE ${this.name} ${this.type}`];
    for (const { labels, child } of this.children.values()) lines.push(...this.renderChild(labels, child));
    return lines.join('\n');
  }

  protected abstract renderChild(labels: Labels, child: Child): string[];
}

export class CounterChild {
  private value = 0;
  inc(by = 1): void {
    if (by < 0 || Number.isNaN(by)) throw new Error('a counter can only increase');
    this.value += by;
  }
  get(): number {
    return this.value;
  }
}

export class Counter extends Metric<CounterChild> {
  readonly type = 'counter' as const;
  protected create(): CounterChild {
    return new CounterChild();
  }
  /** Increments the series for `labels` (none for an unlabelled counter). */
  inc(labels: Labels = {}, by = 1): void {
    this.with(labels).inc(by);
  }
  get(labels: Labels = {}): number {
    return this.with(labels).get();
  }
  protected renderChild(labels: Labels, child: CounterChild): string[] {
    return [`${this.name}${formatLabels(labels)} ${formatValue(child.get())}`];
  }
}

export class GaugeChild {
  private value = 0;
  set(value: number): void {
    this.value = value;
  }
  inc(by = 1): void {
    this.value += by;
  }
  dec(by = 1): void {
    this.value -= by;
  }
  get(): number {
    return this.value;
  }
}

export class Gauge extends Metric<GaugeChild> {
  readonly type = 'gauge' as const;
  protected create(): GaugeChild {
    return new GaugeChild();
  }
  set(labels: Labels, value: number): void {
    this.with(labels).set(value);
  }
  get(labels: Labels = {}): number {
    return this.with(labels).get();
  }
  protected renderChild(labels: Labels, child: GaugeChild): string[] {
    return [`${this.name}${formatLabels(labels)} ${formatValue(child.get())}`];
  }
}

export class HistogramChild {
  readonly bounds: readonly number[];
  /** Non-cumulative counts per bucket; the last slot is +Inf. */
  private readonly counts: number[];
  private sum = 0;
  private count = 0;

  constructor(bounds: readonly number[]) {
    this.bounds = bounds;
    this.counts = new Array<number>(bounds.length + 1).fill(0);
  }

  observe(value: number): void {
    let i = this.bounds.findIndex((b) => value <= b);
    if (i < 0) i = this.bounds.length;
    this.counts[i]!++;
    this.sum += value;
    this.count++;
  }

  snapshot(): { buckets: Array<[number, number]>; sum: number; count: number } {
    let cumulative = 0;
    const buckets: Array<[number, number]> = [];
    for (let i = 0; i <= this.bounds.length; i++) {
      cumulative += this.counts[i]!;
      buckets.push([this.bounds[i] ?? Infinity, cumulative]);
    }
    return { buckets, sum: this.sum, count: this.count };
  }
}

export class Histogram extends Metric<HistogramChild> {
  readonly type = 'histogram' as const;
  readonly buckets: readonly number[];

  constructor(options: HistogramOptions) {
    super(options);
    if (this.labelNames.includes('le')) throw new Error(`histogram ${options.name} cannot use label "le"`);
    const buckets = [...(options.buckets ?? DEFAULT_BUCKETS)].filter((b) => b !== Infinity);
    for (let i = 1; i < buckets.length; i++) {
      if (!(buckets[i]! > buckets[i - 1]!)) throw new Error(`histogram ${options.name}: buckets must ascend`);
    }
    this.buckets = buckets;
  }

  protected create(): HistogramChild {
    return new HistogramChild(this.buckets);
  }

  observe(labels: Labels, value: number): void {
    this.with(labels).observe(value);
  }

  protected renderChild(labels: Labels, child: HistogramChild): string[] {
    const { buckets, sum, count } = child.snapshot();
    const lines = buckets.map(
      ([le, n]) => `${this.name}_bucket${formatLabels({ ...labels, le: formatValue(le) })} ${n}`,
    );
    lines.push(`${this.name}_sum${formatLabels(labels)} ${formatValue(sum)}`);
    lines.push(`${this.name}_count${formatLabels(labels)} ${count}`);
    return lines;
  }
}

type AnyMetric = Counter | Gauge | Histogram;

/**
 * Holds metrics by name. Registering the same name again returns the existing metric when type
 * and labels match, so several controllers or queues can share one series family.
 */
export class Registry {
  private readonly metrics = new Map<string, AnyMetric>();

  static readonly contentType = 'text/plain; version=0.0.4; charset=utf-8';

  counter(options: MetricOptions): Counter {
    return this.register(options, 'counter', () => new Counter(options));
  }

  gauge(options: MetricOptions): Gauge {
    return this.register(options, 'gauge', () => new Gauge(options));
  }

  histogram(options: HistogramOptions): Histogram {
    return this.register(options, 'histogram', () => new Histogram(options));
  }

  get(name: string): AnyMetric | undefined {
    return this.metrics.get(name);
  }

  /** The whole registry in the Prometheus text format, ending with a newline. */
  render(): string {
    const parts = [...this.metrics.values()].map((m) => m.render());
    return parts.length ? `${parts.join('\n')}\n` : '';
  }

  private register<M extends AnyMetric>(options: MetricOptions, type: MetricType, make: () => M): M {
    const existing = this.metrics.get(options.name);
    if (existing) {
      const labels = options.labelNames ?? [];
      if (
        existing.type !== type ||
        existing.labelNames.length !== labels.length ||
        !labels.every((l, i) => existing.labelNames[i] === l)
      ) {
        throw new Error(`metric ${options.name} is already registered with another type or labels`);
      }
      return existing as M;
    }
    const metric = make();
    this.metrics.set(options.name, metric);
    return metric;
  }
}

function escapeHelp(text: string): string {
  return text.replace(/\\/g, '\\\\').replace(/\n/g, '\\n');
}

function escapeLabelValue(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

function formatLabels(labels: Labels): string {
  const entries = Object.entries(labels);
  if (entries.length === 0) return '';
  return `{${entries.map(([k, v]) => `${k}="${escapeLabelValue(v)}"`).join(',')}}`;
}

function formatValue(value: number): string {
  if (value === Infinity) return '+Inf';
  if (value === -Infinity) return '-Inf';
  if (Number.isNaN(value)) return 'NaN';
  return String(value);
}
