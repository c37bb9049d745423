// Time ranges as the server reads them: relative ("15m", "24h"), RFC 3339, or "now".

export interface Range {
  start: string;
  end?: string;
}

export const RELATIVE = ["5m", "15m", "1h", "6h", "24h", "7d", "30d"];

const UNIT_MS: Record<string, number> = { s: 1e3, m: 60e3, h: 3600e3, d: 86400e3, w: 7 * 86400e3 };

export function durationMs(text: string): number | null {
  const m = /^(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)$/.exec(text.trim());
  if (!m) return null;
  return m[2] === "ms" ? Number(m[1]) : Number(m[1]) * UNIT_MS[m[2]];
}

// The range in epoch milliseconds, now being `now`.
export function resolve(r: Range, now = Date.now()): [number, number] {
  const at = (t: string | undefined, fallback: number) => {
    if (!t || t === "now") return fallback;
    const d = durationMs(t);
    if (d !== null) return now - d;
    const ms = Date.parse(t);
    return Number.isNaN(ms) ? fallback : ms;
  };
  return [at(r.start, now - 3600e3), at(r.end, now)];
}

export function isRelative(r: Range): boolean {
  return durationMs(r.start) !== null && (!r.end || r.end === "now");
}

// A bucket span near a twentieth... of the range, rounded to a readable size.
const SPANS: [string, number][] = [
  ["1s", 1e3], ["5s", 5e3], ["10s", 10e3], ["30s", 30e3], ["1m", 60e3], ["5m", 300e3], ["10m", 600e3],
  ["30m", 1800e3], ["1h", 3600e3], ["3h", 3 * 3600e3], ["6h", 6 * 3600e3], ["12h", 12 * 3600e3], ["1d", 86400e3],
];

export function spanFor(ms: number, buckets = 60): [string, number] {
  const want = ms / buckets;
  return SPANS.find(([, s]) => s >= want) ?? SPANS[SPANS.length - 1];
}

export function iso(ms: number): string {
  return new Date(ms).toISOString();
}

// A time as the answers carry it (RFC 3339 text or nanoseconds), in local time to the ms.
export function formatTime(t: unknown): string {
  const ms = typeof t === "number" ? t / 1e6 : typeof t === "string" ? Date.parse(t) : NaN;
  if (Number.isNaN(ms)) return String(t ?? "");
  const d = new Date(ms);
  const pad = (n: number, w = 2) => String(n).padStart(w, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(
    d.getSeconds(),
  )}.${pad(d.getMilliseconds(), 3)}`;
}

// The window of a live query: the range's length.
export function windowOf(r: Range): string {
  if (isRelative(r)) return r.start;
  const [a, b] = resolve(r);
  return `${Math.max(1, Math.round((b - a) / 1000))}s`;
}
