// The controllers' Prometheus metrics, on prom-client: a Registry of our own (prom-client's
// global default registry and its process collectors are never used), with the small surface the
// controllers need — counters, gauges and histograms with every declared label given on each
// use, and one metric per name however many controllers or queues ask for it.
import * as prom from 'prom-client';

export type Labels = Record<string, string>;

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
  readonly labelNames: readonly string[];
  abstract readonly type: MetricType;
  private readonly children = new Map<string, Child>();

  constructor(options: MetricOptions) {
    this.name = options.name;
    this.labelNames = [...(options.labelNames ?? [])];
    // Prometheus reserves these for itself; prom-client does not check.
    const reserved = this.labelNames.find((l) => l.startsWith('__'));
    if (reserved) throw new Error(`invalid label name "${reserved}" for metric ${options.name}`);
  }

  protected abstract child(labels: Labels): Child;
  protected abstract clear(): void;

  /**
   * The series for one label set; every declared label must be given, and no other (prom-client
   * accepts a partial set, which would split one series into several by accident).
   */
  with(labels: Labels = {}): Child {
    const given = Object.keys(labels);
    if (given.length !== this.labelNames.length || !this.labelNames.every((l) => l in labels)) {
      throw new Error(
        `metric ${this.name} takes labels [${this.labelNames.join(', ')}], got [${given.join(', ')}]`,
      );
    }
    const key = this.labelNames.map((l) => labels[l]).join('\u0000');
    let child = this.children.get(key);
    if (!child) {
      // In declared order: prom-client prints a series' labels in the order it first saw them.
      const ordered: Labels = {};
      for (const l of this.labelNames) ordered[l] = labels[l]!;
      child = this.child(ordered);
      this.children.set(key, child);
    }
    return child;
  }

  /** Forgets every series (e.g. in tests, or when the labelled thing is gone). */
  reset(): void {
    this.children.clear();
    this.clear();
  }
}

export interface CounterChild {
  inc(by?: number): void;
}

export class Counter extends Metric<CounterChild> {
  readonly type = 'counter' as const;
  private readonly metric: prom.Counter;

  constructor(options: MetricOptions, registry: prom.Registry) {
    super(options);
    this.metric = new prom.Counter({ ...options, labelNames: this.labelNames, registers: [registry] });
  }

  protected child(labels: Labels): CounterChild {
    const series = this.metric.labels(labels);
    return {
      inc: (by = 1) => {
        if (!(by >= 0)) throw new Error('a counter can only increase');
        series.inc(by);
      },
    };
  }

  protected clear(): void {
    this.metric.reset();
  }

  /** Increments the series for `labels` (none for an unlabelled counter). */
  inc(labels: Labels = {}, by = 1): void {
    this.with(labels).inc(by);
  }
}

export interface GaugeChild {
  set(value: number): void;
  inc(by?: number): void;
  dec(by?: number): void;
}

export class Gauge extends Metric<GaugeChild> {
  readonly type = 'gauge' as const;
  private readonly metric: prom.Gauge;

  constructor(options: MetricOptions, registry: prom.Registry) {
    super(options);
    this.metric = new prom.Gauge({ ...options, labelNames: this.labelNames, registers: [registry] });
  }

  protected child(labels: Labels): GaugeChild {
    const series = this.metric.labels(labels);
    return { set: (v) => series.set(v), inc: (by = 1) => series.inc(by), dec: (by = 1) => series.dec(by) };
  }

  protected clear(): void {
    this.metric.reset();
  }

  set(labels: Labels, value: number): void {
    this.with(labels).set(value);
  }
}

export interface HistogramChild {
  observe(value: number): void;
}

export class Histogram extends Metric<HistogramChild> {
  readonly type = 'histogram' as const;
  readonly buckets: readonly number[];
  private readonly metric: prom.Histogram;

  constructor(options: HistogramOptions, registry: prom.Registry) {
    super(options);
    const buckets = [...(options.buckets ?? DEFAULT_BUCKETS)].filter((b) => b !== Infinity);
    for (let i = 1; i < buckets.length; i++) {
      if (!(buckets[i]! > buckets[i - 1]!)) throw new Error(`histogram ${options.name}: buckets must ascend`);
    }
    this.buckets = buckets;
    this.metric = new prom.Histogram({
      name: options.name,
      help: options.help,
      labelNames: this.labelNames,
      buckets,
      registers: [registry],
    });
  }

  protected child(labels: Labels): HistogramChild {
    const series = this.metric.labels(labels);
    return { observe: (v) => series.observe(v) };
  }

  protected clear(): void {
    this.metric.reset();
  }

  observe(labels: Labels, value: number): void {
    this.with(labels).observe(value);
  }
}

type AnyMetric = Counter | Gauge | Histogram;

/**
 * Holds metrics by name. Registering the same name again returns the existing metric when type
 * and labels match, so several controllers or queues can share one series family.
 */
export class Registry {
  private readonly registry = new prom.Registry();
  private readonly metrics = new Map<string, AnyMetric>();

  static readonly contentType: string = prom.Registry.PROMETHEUS_CONTENT_TYPE;

  counter(options: MetricOptions): Counter {
    return this.register(options, 'counter', () => new Counter(options, this.registry));
  }

  gauge(options: MetricOptions): Gauge {
    return this.register(options, 'gauge', () => new Gauge(options, this.registry));
  }

  histogram(options: HistogramOptions): Histogram {
    return this.register(options, 'histogram', () => new Histogram(options, this.registry));
  }

  get(name: string): AnyMetric | undefined {
    return this.metrics.get(name);
  }

  /** The whole registry in the Prometheus text format. */
  render(): Promise<string> {
    return this.registry.metrics();
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
