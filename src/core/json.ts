// JSON with a canonical key order, for comparing objects and hashing them: two objects equal in
// content serialise identically whatever order their keys were written in.

export function sortKeys(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(sortKeys);
  if (typeof v !== 'object' || v === null) return v;
  return Object.fromEntries(
    Object.keys(v)
      .sort()
      .map((k) => [k, sortKeys((v as Record<string, unknown>)[k])]),
  );
}

export function stableJSON(v: unknown): string {
  return JSON.stringify(sortKeys(v));
}
