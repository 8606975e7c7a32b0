// Summarises the profiles BENCH_PROFILE_DIR collects, for bench/README.md's "where the time and
// memory go", without opening DevTools:
//   node bench/profile-summary.ts DIR/*.cpuprofile   self time by function and by source file
//   node bench/profile-summary.ts DIR/*.heapsnapshot self size by constructor (count, bytes)
// A .cpuprofile is V8's JSON (nodes with callFrame and hitCount, plus timeDeltas per sample); a
// .heapsnapshot is V8's flat node array described by its own snapshot.meta.
import { readFile } from 'node:fs/promises';
import { basename } from 'node:path';

const TOP = Number(process.env.TOP ?? 25);

interface CpuProfile {
  nodes: {
    id: number;
    callFrame: { functionName: string; url: string; lineNumber: number };
    hitCount?: number;
  }[];
  samples: number[];
  timeDeltas: number[];
}

/** `node_modules/<package>` or our source file, so a bundle's frames still say whose code ran. */
function owner(url: string): string {
  if (!url) return '(native / V8)';
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (pkg) return pkg[1]!;
  if (url.startsWith('node:')) return url;
  return url.replace(/^file:\/\//, '').replace(/^.*?\/(src|dist|bench|test)\//, '$1/');
}

function table(rows: [string, number][], total: number, unit: (v: number) => string): void {
  for (const [k, v] of rows.sort((a, b) => b[1] - a[1]).slice(0, TOP))
    console.log(`  ${((v / total) * 100).toFixed(1).padStart(5)}%  ${unit(v).padStart(10)}  ${k}`);
}

function cpu(profile: CpuProfile): void {
  const byNode = new Map(profile.nodes.map((n) => [n.id, n]));
  const selfUs = new Map<number, number>();
  // Sample i took timeDeltas[i + 1] microseconds (the delta to the next sample).
  profile.samples.forEach((id, i) =>
    selfUs.set(id, (selfUs.get(id) ?? 0) + (profile.timeDeltas[i + 1] ?? 0)),
  );
  const total = [...selfUs.values()].reduce((a, b) => a + b, 0);
  const byFunction = new Map<string, number>();
  const byFile = new Map<string, number>();
  let idle = 0;
  for (const [id, us] of selfUs) {
    const { functionName, url, lineNumber } = byNode.get(id)!.callFrame;
    if (functionName === '(idle)') idle += us;
    const fn = `${functionName || '(anonymous)'} ${owner(url)}${url ? `:${lineNumber + 1}` : ''}`;
    byFunction.set(fn, (byFunction.get(fn) ?? 0) + us);
    byFile.set(owner(url), (byFile.get(owner(url)) ?? 0) + us);
  }
  const ms = (v: number) => `${(v / 1000).toFixed(0)} ms`;
  console.log(`  sampled ${ms(total)}, of which idle ${ms(idle)} (${((idle / total) * 100).toFixed(0)}%)`);
  console.log(' self time by function:');
  table([...byFunction], total, ms);
  console.log(' self time by package or source file:');
  table([...byFile], total, ms);
}

interface HeapSnapshot {
  snapshot: { meta: { node_fields: string[]; node_types: (string | string[])[] } };
  nodes: number[];
  strings: string[];
}

function heap(snapshot: HeapSnapshot): void {
  const fields = snapshot.snapshot.meta.node_fields;
  const types = snapshot.snapshot.meta.node_types[0] as string[];
  const width = fields.length;
  const [typeAt, nameAt, sizeAt] = ['type', 'name', 'self_size'].map((f) => fields.indexOf(f));
  const bySize = new Map<string, { count: number; bytes: number }>();
  let total = 0;
  for (let i = 0; i < snapshot.nodes.length; i += width) {
    const type = types[snapshot.nodes[i + typeAt!]!]!;
    const name = snapshot.strings[snapshot.nodes[i + nameAt!]!]!;
    // Strings and code are grouped by type; objects by their constructor.
    const key = type === 'object' || type === 'closure' ? `${type} ${name}` : `(${type})`;
    const bytes = snapshot.nodes[i + sizeAt!]!;
    const e = bySize.get(key) ?? { count: 0, bytes: 0 };
    e.count++;
    e.bytes += bytes;
    bySize.set(key, e);
    total += bytes;
  }
  const mib = (v: number) => `${(v / 1048576).toFixed(1)} MiB`;
  console.log(`  ${mib(total)} in ${(snapshot.nodes.length / width).toLocaleString()} heap objects`);
  console.log(' self size by constructor (count):');
  table(
    [...bySize].map(([k, e]) => [`${k} (${e.count.toLocaleString()})`, e.bytes]),
    total,
    mib,
  );
}

for (const file of process.argv.slice(2)) {
  console.log(`${basename(file)}:`);
  const json = JSON.parse(await readFile(file, 'utf8')) as CpuProfile | HeapSnapshot;
  if (file.endsWith('.cpuprofile')) cpu(json as CpuProfile);
  else heap(json as HeapSnapshot);
}
