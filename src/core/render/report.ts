// A render described for people: a one-line title, a text listing for logs and a table for the
// GitHub job summary (first row is the header, as @actions/core's summary.addTable expects).
import type { RenderToPathResult } from './index.ts';

export interface RenderReport {
  title: string;
  text: string;
  table: Array<Array<string | { data: string; header: true }>>;
}

export function describeRender(result: RenderToPathResult): RenderReport {
  const { plan, render } = result;
  const rows: Array<[string, string]> = [
    ...plan.added.map((f): [string, string] => [f, 'added']),
    ...plan.changed.map((f): [string, string] => [f, 'changed']),
    ...plan.removed.map((f): [string, string] => [f, 'removed']),
  ];
  const title = result.changed
    ? `Rendered ${render.objects.length} objects (${render.type}): ${plan.added.length} added, ${plan.changed.length} changed, ${plan.removed.length} removed`
    : `Rendered ${render.objects.length} objects (${render.type}): no changes`;
  const images = render.imageChanges.map((c) => `  ${c.object} ${c.container}: ${c.from} -> ${c.to}`);
  const text = [
    title,
    ...rows.map(([f, s]) => `  ${s.padEnd(8)} ${f}`),
    ...(images.length ? ['images:', ...images] : []),
  ].join('\n');
  return {
    title,
    text,
    table: [
      [
        { data: 'file', header: true },
        { data: 'change', header: true },
      ],
      ...rows.map(([f, s]) => [f, s]),
    ],
  };
}
