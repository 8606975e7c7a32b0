// Small text helpers shared by the CLI's human output: ages like kubectl's and aligned columns.

/** kubectl's short age: 42s, 5m, 3h, 2d (empty when unknown). */
export function age(since: string | undefined, now = Date.now()): string {
  if (!since) return '';
  const s = Math.max(0, Math.floor((now - Date.parse(since)) / 1000));
  if (s < 120) return `${s}s`;
  if (s < 7200) return `${Math.floor(s / 60)}m`;
  if (s < 172800) return `${Math.floor(s / 3600)}h`;
  return `${Math.floor(s / 86400)}d`;
}

/** Left-aligned columns three spaces apart; the first row sets the column count. */
export function columns(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => [...(r[i] ?? '')].length)));
  return (
    rows
      .map((r) =>
        r
          .map((c, i) => (i === r.length - 1 ? c : c + ' '.repeat(widths[i]! + 3 - [...c].length)))
          .join('')
          .trimEnd(),
      )
      .join('\n') + '\n'
  );
}
