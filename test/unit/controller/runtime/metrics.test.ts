import { describe, expect, test } from '@jest/globals';
import { Registry } from '../../../../src/core/metrics.ts';

describe('Registry', () => {
  test('renders counters, gauges and histograms in the Prometheus text format, as prom-client renders it', async () => {
    const registry = new Registry();
    const requests = registry.counter({
      name: 'requests_total',
      help: 'Requests.',
      labelNames: ['verb', 'code'],
    });
    requests.inc({ verb: 'get', code: '200' });
    requests.inc({ code: '200', verb: 'get' }, 2); // label order does not matter
    requests.inc({ verb: 'list', code: '500' });
    registry.gauge({ name: 'depth', help: 'Queue depth.' }).set({}, 7);
    const latency = registry.histogram({
      name: 'latency_seconds',
      help: 'Latency.',
      labelNames: ['verb'],
      buckets: [0.1, 1],
    });
    latency.observe({ verb: 'get' }, 0.05);
    latency.observe({ verb: 'get' }, 0.5);
    latency.observe({ verb: 'get' }, 3);

    expect(await registry.render()).toBe(
      [
        '# HELP requests_total Requests.',
        '# TYPE requests_total counter',
        'requests_total{verb="get",code="200"} 3',
        'requests_total{verb="list",code="500"} 1',
        '',
        '# HELP depth Queue depth.',
        '# TYPE depth gauge',
        'depth 7',
        '',
        '# HELP latency_seconds Latency.',
        '# TYPE latency_seconds histogram',
        'latency_seconds_bucket{le="0.1",verb="get"} 1',
        'latency_seconds_bucket{le="1",verb="get"} 2',
        'latency_seconds_bucket{le="+Inf",verb="get"} 3',
        'latency_seconds_sum{verb="get"} 3.55',
        'latency_seconds_count{verb="get"} 3',
        '',
      ].join('\n'),
    );
  });

  test('escapes label values and help text', async () => {
    const registry = new Registry();
    registry
      .counter({ name: 'odd_total', help: 'A \\ backslash\nand a newline.', labelNames: ['v'] })
      .inc({ v: 'quote " backslash \\ newline \n end' });
    expect(await registry.render()).toBe(
      [
        '# HELP odd_total A \\\\ backslash\\nand a newline.',
        '# TYPE odd_total counter',
        'odd_total{v="quote \\" backslash \\\\ newline \\n end"} 1',
        '',
      ].join('\n'),
    );
  });

  test('gauges go up and down; children are reused per label set', async () => {
    const registry = new Registry();
    const gauge = registry.gauge({ name: 'workers', help: 'w', labelNames: ['c'] });
    const child = gauge.with({ c: 'x' });
    child.inc();
    child.inc(2);
    child.dec();
    expect(await registry.render()).toContain('workers{c="x"} 2');
    expect(gauge.with({ c: 'x' })).toBe(child);
    gauge.reset();
    expect(await registry.render()).toBe('# HELP workers w\n# TYPE workers gauge\n');
  });

  test('registering a name again returns the same metric, unless type or labels differ', () => {
    const registry = new Registry();
    const a = registry.counter({ name: 'shared_total', help: 'h', labelNames: ['x'] });
    expect(registry.counter({ name: 'shared_total', help: 'h', labelNames: ['x'] })).toBe(a);
    expect(registry.get('shared_total')).toBe(a);
    expect(() => registry.gauge({ name: 'shared_total', help: 'h', labelNames: ['x'] })).toThrow(
      /already registered/,
    );
    expect(() => registry.counter({ name: 'shared_total', help: 'h', labelNames: ['y'] })).toThrow(
      /already registered/,
    );
  });

  test('rejects invalid names, wrong label sets, decreasing counters and bad buckets', () => {
    const registry = new Registry();
    expect(() => registry.counter({ name: 'bad-name', help: 'h' })).toThrow(/invalid metric name/i);
    expect(() => registry.counter({ name: 'ok', help: 'h', labelNames: ['bad-label'] })).toThrow(
      /invalid label/i,
    );
    expect(() => registry.counter({ name: 'ok2', help: 'h', labelNames: ['__reserved'] })).toThrow(
      /invalid label/i,
    );
    const c = registry.counter({ name: 'c_total', help: 'h', labelNames: ['a'] });
    expect(() => c.inc({})).toThrow(/takes labels \[a\]/);
    expect(() => c.inc({ a: '1', b: '2' })).toThrow(/takes labels/);
    expect(() => c.inc({ a: '1' }, -1)).toThrow(/only increase/);
    expect(() => registry.histogram({ name: 'h1', help: 'h', labelNames: ['le'] })).toThrow(
      /\ble\b.*reserved/,
    );
    expect(() => registry.histogram({ name: 'h2', help: 'h', buckets: [1, 1] })).toThrow(/ascend/);
  });

  test('uses default buckets, renders special values, and an empty registry renders nothing', async () => {
    expect((await new Registry().render()).trim()).toBe('');
    const registry = new Registry();
    const h = registry.histogram({ name: 'd', help: 'h' });
    h.observe({}, 0.001);
    expect(h.buckets).toEqual([0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]);
    expect(await registry.render()).toContain('d_bucket{le="0.005"} 1');
    registry.gauge({ name: 'g', help: 'h' }).set({}, Infinity);
    registry.gauge({ name: 'n', help: 'h' }).set({}, NaN);
    expect(await registry.render()).toContain('\ng +Inf\n');
    expect(await registry.render()).toMatch(/\nn nan\n/i); // prom-client writes "Nan", which Prometheus parses
    expect(Registry.contentType).toContain('version=0.0.4');
  });
});
