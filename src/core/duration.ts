// Durations as Kubernetes and Argo write them (Go's time.ParseDuration forms): "90s", "3m",
// "1h30m", "500ms". Undefined for anything else, so callers can say which input was wrong.
const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

export function parseDurationMs(text: string | undefined): number | undefined {
  const s = (text ?? '').trim();
  if (s === '') return undefined;
  if (s === '0') return 0;
  const re = /(\d+(?:\.\d+)?)(ms|s|m|h)/gy;
  let total = 0;
  let end = 0;
  for (let m = re.exec(s); m; m = re.exec(s)) {
    total += Number(m[1]) * UNITS[m[2]!]!;
    end = re.lastIndex;
  }
  return end === s.length ? total : undefined;
}

/** The longest delay a Node timer holds: longer ones fire after 1 ms, so every wait is capped here. */
export const MAX_TIMER_MS = 2 ** 31 - 1;
