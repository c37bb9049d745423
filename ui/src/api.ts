// The server's HTTP and websocket API, with the session's token (kept in sessionStorage only).

export type Row = Record<string, unknown>;

export interface Answer {
  columns: string[];
  rows: Row[];
  events: boolean;
  warnings: string[];
  cancelled?: boolean;
  progress?: Progress;
}

export interface Progress {
  blocks_done: number;
  blocks_total: number;
  events_scanned: number;
  bytes_read: number;
}

export interface SyntaxVerdict {
  ok: boolean;
  error?: string;
  hint?: string | null;
  line?: number;
  column?: number;
  from?: number;
  to?: number;
}

const TOKEN_KEY = "eddy.token";

export function token(): string | null {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function setToken(t: string | null) {
  if (t) sessionStorage.setItem(TOKEN_KEY, t);
  else sessionStorage.removeItem(TOKEN_KEY);
}

// Whoever shows the token prompt listens here; a 401 or 403 calls it.
let onAuthNeeded: (why: string) => void = () => {};
export function whenAuthNeeded(f: (why: string) => void) {
  onAuthNeeded = f;
}

export class ApiError extends Error {
  status: number;
  body: unknown;
  constructor(status: number, message: string, body: unknown) {
    super(message);
    this.status = status;
    this.body = body;
  }
}

function headers(extra: Record<string, string> = {}): Record<string, string> {
  const h: Record<string, string> = { ...extra };
  const t = token();
  if (t) h["Authorization"] = `Bearer ${t}`;
  return h;
}

async function failure(r: Response, quiet = false): Promise<ApiError> {
  const text = await r.text();
  let body: unknown = text;
  let message = text || r.statusText;
  try {
    body = JSON.parse(text);
    const b = body as { error?: unknown; message?: unknown };
    if (typeof b.error === "string") message = b.error;
    else if (typeof b.message === "string") message = b.message;
  } catch {
    // not JSON: the text is the message
  }
  if (!quiet && (r.status === 401 || r.status === 403)) onAuthNeeded(message);
  return new ApiError(r.status, message, body);
}

export async function call<T>(method: string, path: string, body?: unknown, quiet = false): Promise<T> {
  const r = await fetch(path, {
    method,
    headers: headers(body === undefined ? {} : { "Content-Type": "application/json" }),
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (!r.ok) throw await failure(r, quiet);
  if (r.status === 204) return undefined as T;
  return (await r.json()) as T;
}

export function checkSyntax(query: string, signal?: AbortSignal): Promise<SyntaxVerdict> {
  return fetch("/api/v1/query/check", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ query }),
    signal,
  }).then((r) => (r.ok ? r.json() : failure(r).then((e) => Promise.reject(e))));
}

export interface QueryRequest {
  repository: string;
  query: string;
  start: string;
  end?: string;
  limit?: number;
}

export interface QueryEvents {
  progress?: (p: Progress) => void;
  partial?: (a: Answer) => void;
}

// Runs a query over the NDJSON stream: progress and partial answers as they come, then the
// whole answer. Aborting the signal cancels it on the server (the connection closes).
export async function runQuery(req: QueryRequest, on: QueryEvents, signal: AbortSignal): Promise<Answer> {
  const r = await fetch(`/api/v1/repositories/${encodeURIComponent(req.repository)}/query`, {
    method: "POST",
    headers: headers({ "Content-Type": "application/json", Accept: "application/x-ndjson" }),
    body: JSON.stringify({
      query: req.query,
      start: req.start,
      end: req.end,
      limit: req.limit ?? 200,
      partial_every: "100ms",
    }),
    signal,
  });
  if (!r.ok || !r.body) throw await failure(r);
  const answer: Answer = { columns: [], rows: [], events: true, warnings: [] };
  const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffered = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffered += value;
    let nl: number;
    while ((nl = buffered.indexOf("\n")) >= 0) {
      const line = buffered.slice(0, nl);
      buffered = buffered.slice(nl + 1);
      if (!line.trim()) continue;
      const m = JSON.parse(line);
      if (m.progress) on.progress?.(m.progress);
      else if (m.partial) on.partial?.(m.partial);
      else if (m.columns) {
        answer.columns = m.columns;
        answer.events = m.events;
      } else if (m.row) answer.rows.push(m.row);
      else if (m.done) {
        answer.warnings = m.done.warnings ?? [];
        answer.cancelled = m.done.cancelled;
        answer.progress = m.done.progress;
      }
    }
  }
  return answer;
}

export interface LiveMessage {
  type: "snapshot" | "update" | "events" | "skipped" | "stopped";
  columns?: string[];
  rows?: Row[];
  events?: boolean;
  reason?: string;
  window?: { start: number; end: number };
}

export interface LiveHandlers {
  message: (m: LiveMessage) => void;
  status: (s: "connecting" | "open" | "reconnecting" | "stopped", detail?: string) => void;
}

// A live query over the websocket that reconnects with back-off when the connection drops,
// and says so through `status`. Returns the function that closes it for good.
export function live(repository: string, query: string, span: string, h: LiveHandlers, interval = "1s"): () => void {
  let closed = false;
  let socket: WebSocket | null = null;
  let attempt = 0;
  let timer: number | undefined;
  const open = () => {
    const params = new URLSearchParams({ query, window: span, interval });
    const t = token();
    if (t) params.set("token", t);
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    const url = `${proto}//${location.host}/api/v1/repositories/${encodeURIComponent(repository)}/live?${params}`;
    h.status(attempt === 0 ? "connecting" : "reconnecting", attempt ? `attempt ${attempt}` : undefined);
    const s = new WebSocket(url);
    socket = s;
    s.onopen = () => {
      attempt = 0;
      h.status("open");
    };
    s.onmessage = (e) => {
      const m = JSON.parse(e.data as string) as LiveMessage;
      if (m.type === "stopped") {
        closed = true;
        h.status("stopped", m.reason);
      }
      h.message(m);
    };
    s.onclose = () => {
      if (closed) return;
      attempt += 1;
      const wait = Math.min(5000, 250 * 2 ** Math.min(attempt, 5));
      h.status("reconnecting", `connection lost; retrying in ${(wait / 1000).toFixed(1)} s (attempt ${attempt})`);
      timer = window.setTimeout(open, wait);
    };
  };
  open();
  return () => {
    closed = true;
    if (timer) clearTimeout(timer);
    socket?.close();
  };
}

export interface DocumentSummary {
  id: string;
  name: string;
  [k: string]: unknown;
}

export type WidgetKind = "line" | "area" | "bars" | "table" | "single" | "histogram" | "boxplot";

export interface Widget {
  title: string;
  kind: WidgetKind;
  repository: string;
  query: string;
  live?: boolean;
  refresh?: string;
}

export interface Dashboard {
  name: string;
  start?: string;
  end?: string;
  widgets: Widget[];
}

export interface SavedSearch {
  name: string;
  repository: string;
  query: string;
  start?: string;
  end?: string;
}

export const documents = {
  list: (kind: "dashboards" | "searches") =>
    call<{ items: DocumentSummary[] }>("GET", `/api/v1/${kind}`).then((r) => r.items),
  get: <T>(kind: "dashboards" | "searches", id: string) => call<T>("GET", `/api/v1/${kind}/${encodeURIComponent(id)}`),
  create: (kind: "dashboards" | "searches", doc: unknown) =>
    call<{ id: string }>("POST", `/api/v1/${kind}`, doc),
  replace: (kind: "dashboards" | "searches", id: string, doc: unknown) =>
    call<{ id: string }>("PUT", `/api/v1/${kind}/${encodeURIComponent(id)}`, doc),
  remove: (kind: "dashboards" | "searches", id: string) =>
    call<void>("DELETE", `/api/v1/${kind}/${encodeURIComponent(id)}`),
};

// `GET /api/v1/repositories/{repo}/fields`: the fields the repository's events have in a time
// range, with types, how many events have each and the top values of those with few.
export interface FieldSummary {
  name: string;
  events: number;
  types: Record<string, number>;
  distinct: number | null;
  top: { value: string | number | boolean | null; count: number }[];
}

export interface FieldDiscovery {
  events: number;
  sampled: boolean;
  fields: FieldSummary[];
  warnings: string[];
}

export function discoverFields(repository: string, start: string, end?: string): Promise<FieldDiscovery> {
  const p = new URLSearchParams({ start });
  if (end) p.set("end", end);
  return call<FieldDiscovery>("GET", `/api/v1/repositories/${encodeURIComponent(repository)}/fields?${p}`, undefined, true);
}

export async function repositories(): Promise<string[]> {
  try {
    const r = await call<{ repositories: { name: string }[] }>("GET", "/api/v1/repositories", undefined, true);
    return r.repositories.map((x) => x.name);
  } catch {
    // Listing needs an admin token; a reader can still type a name.
    return [];
  }
}
