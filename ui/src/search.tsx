// The search page: editor with inline syntax errors, time picker, count histogram, results,
// fields sidebar, live tail, history, saved searches and a shareable URL.
import { useEffect, useLayoutEffect, useRef, useState } from "preact/hooks";
import { checkSyntax, discoverFields, documents, live, runQuery, type Answer, type DocumentSummary, type FieldDiscovery, type Progress, type Row, type SavedSearch, type SyntaxVerdict } from "./api";
import { Aggregate, EventList, filterOf, shapeOf, timeSeries } from "./answer";
import { TimeChart } from "./charts";
import { TimePicker } from "./timepicker";
import { iso, resolve, spanFor, windowOf, type Range } from "./time";
import { metrics } from "./metrics";

export interface SearchState {
  repo: string;
  query: string;
  range: Range;
}

export function searchHash(s: SearchState): string {
  const p = new URLSearchParams({ repo: s.repo, q: s.query, start: s.range.start });
  if (s.range.end) p.set("end", s.range.end);
  return `#/search?${p}`;
}

export function parseSearch(params: URLSearchParams): SearchState {
  return {
    repo: params.get("repo") || "main",
    query: params.get("q") ?? "",
    range: { start: params.get("start") || "1h", end: params.get("end") || undefined },
  };
}

const HISTORY_KEY = "eddy.history";
function history(): string[] {
  try {
    return JSON.parse(localStorage.getItem(HISTORY_KEY) ?? "[]");
  } catch {
    return [];
  }
}
function remember(q: string) {
  if (!q.trim()) return;
  localStorage.setItem(HISTORY_KEY, JSON.stringify([q, ...history().filter((h) => h !== q)].slice(0, 50)));
}

// A value as the query language reads it after `field=`.
export function literal(v: string): string {
  return /^[A-Za-z0-9_.:@\/-]+$/.test(v) && !v.includes("*") ? v : `"${v.replace(/\\/g, "\\\\").replace(/"/g, '\\"')}"`;
}

function fieldName(f: string): string {
  return /^[#@A-Za-z_][A-Za-z0-9_.\-@#]*$/.test(f) ? f : `"${f}"`;
}

// Fields the sidebar leaves out: every event has them, and their values are not for picking.
const BUILT_IN = new Set(["@rawstring", "@id", "@timestamp", "@ingesttimestamp"]);

function Editor({ value, onInput, onRun, onCancel, verdict }: {
  value: string;
  onInput: (v: string) => void;
  onRun: () => void;
  onCancel: () => void;
  verdict: SyntaxVerdict | null;
}) {
  const bad = verdict && !verdict.ok && verdict.from !== undefined ? verdict : null;
  const from = bad?.from ?? 0;
  const to = Math.max(from + 1, bad?.to ?? 0);
  const shown = value.length < to ? value + " ".repeat(to - value.length) : value;
  return (
    <div class="editor">
      <div class="field">
      <div class="backdrop" aria-hidden="true">
        {bad ? (
          <>
            {shown.slice(0, from)}
            <mark class="syntax-error" data-column={bad.column} data-line={bad.line}>
              {shown.slice(from, to)}
            </mark>
            {shown.slice(to)}
          </>
        ) : (
          value
        )}
        {"\n"}
      </div>
      <textarea
        id="query"
        spellcheck={false}
        rows={Math.min(6, value.split("\n").length)}
        value={value}
        placeholder='error | groupBy(host)   — Enter runs, Shift+Enter a new line, Escape cancels'
        onInput={(e) => onInput((e.target as HTMLTextAreaElement).value)}
        onKeyDown={(e) => {
          if (e.key === "Enter" && !e.shiftKey) {
            e.preventDefault();
            onRun();
          } else if (e.key === "Escape") onCancel();
        }}
      />
      </div>
      {bad && (
        <div class="syntax-message" role="alert">
          line {bad.line}, column {bad.column}: {bad.error}
          {bad.hint ? ` — ${bad.hint}` : ""}
        </div>
      )}
    </div>
  );
}

// The repository's fields over the search's range, from the fields API (not only those of the
// events listed): each with how many events have it and, for those with few values, the top ones.
function Fields({ discovery, onPick }: { discovery: FieldDiscovery | null; onPick: (field: string, value: string, exclude: boolean) => void }) {
  const fields = (discovery?.fields ?? []).filter((f) => !BUILT_IN.has(f.name));
  return (
    <aside class="sidebar" id="fields">
      <h3>
        Fields{" "}
        <small id="fields-scope">
          {discovery ? `of ${discovery.events.toLocaleString("en-US")} events in range${discovery.sampled ? " (the newest)" : ""}` : "…"}
        </small>
      </h3>
      {discovery && fields.length === 0 && <p class="muted">No fields in this range.</p>}
      {fields.map((f) => (
        <details open={fields.length <= 8}>
          <summary title={Object.entries(f.types).map(([t, n]) => `${t}: ${n}`).join(", ")}>
            {f.name} <small>{f.events.toLocaleString("en-US")}</small>
          </summary>
          {f.top.length === 0 ? (
            <p class="muted">many distinct values</p>
          ) : (
            <ul>
              {f.top.map(({ value, count }) => {
                const v = String(value);
                return (
                  <li class="value">
                    <button class="include" title={`${f.name}=${v}`} data-field={f.name} data-value={v} onClick={() => onPick(f.name, v, false)}>
                      {v}
                    </button>
                    <small>{count.toLocaleString("en-US")}</small>
                    <button class="exclude" title={`${f.name}!=${v}`} onClick={() => onPick(f.name, v, true)}>
                      ≠
                    </button>
                  </li>
                );
              })}
            </ul>
          )}
        </details>
      ))}
    </aside>
  );
}

// Keeps the reader where they are when events arrive above: once scrolled down, the list is
// moved by the height added on top.
function useKeptScroll(box: { current: HTMLElement | null }, rows: Row[]) {
  const before = useRef({ height: 0, top: 0 });
  useLayoutEffect(() => {
    const el = box.current;
    if (!el) return;
    const added = el.scrollHeight - before.current.height;
    if (before.current.top > 0 && added > 0) el.scrollTop = before.current.top + added;
    before.current = { height: el.scrollHeight, top: el.scrollTop };
  }, [rows]);
  useEffect(() => {
    const el = box.current;
    if (!el) return;
    const onScroll = () => (before.current = { height: el.scrollHeight, top: el.scrollTop });
    el.addEventListener("scroll", onScroll);
    return () => el.removeEventListener("scroll", onScroll);
  }, []);
}

const LIVE_KEEP = 1000;

export function SearchPage({ initial, repositories }: { initial: SearchState; repositories: string[] }) {
  const [repo, setRepo] = useState(initial.repo);
  const [text, setText] = useState(initial.query);
  const [range, setRange] = useState<Range>(initial.range);
  const [verdict, setVerdict] = useState<SyntaxVerdict | null>(null);
  const [running, setRunning] = useState(false);
  const [progress, setProgress] = useState<Progress | null>(null);
  const [answer, setAnswer] = useState<Answer | null>(null);
  const [counts, setCounts] = useState<Answer | null>(null);
  const [fields, setFields] = useState<FieldDiscovery | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [liveOn, setLiveOn] = useState(false);
  const [liveStatus, setLiveStatus] = useState<string>("");
  const [paused, setPaused] = useState(false);
  const [pending, setPending] = useState<Row[]>([]);
  const [saved, setSaved] = useState<DocumentSummary[]>([]);
  const [elapsed, setElapsed] = useState<number | null>(null);
  const abort = useRef<AbortController | null>(null);
  const stopLive = useRef<(() => void) | null>(null);
  const pausedRef = useRef(false);
  const results = useRef<HTMLDivElement>(null);
  const ran = useRef<SearchState>(initial);
  pausedRef.current = paused;

  // The syntax check, as one types.
  useEffect(() => {
    if (!text.trim()) {
      setVerdict(null);
      return;
    }
    const ctl = new AbortController();
    const t = setTimeout(() => checkSyntax(text, ctl.signal).then(setVerdict).catch(() => {}), 120);
    return () => {
      clearTimeout(t);
      ctl.abort();
    };
  }, [text]);

  const loadSaved = () => documents.list("searches").then(setSaved).catch(() => {});
  useEffect(() => {
    loadSaved();
    if (initial.query) run(initial);
    return () => {
      abort.current?.abort();
      stopLive.current?.();
    };
  }, []);

  function cancel() {
    abort.current?.abort();
    abort.current = null;
    setRunning(false);
  }

  function run(s: SearchState = { repo, query: text, range }) {
    cancel();
    stopLive.current?.();
    stopLive.current = null;
    setLiveOn(false);
    setPending([]);
    ran.current = s;
    remember(s.query);
    const hash = searchHash(s);
    if (location.hash !== hash) history_push(hash);
    const ctl = new AbortController();
    abort.current = ctl;
    setRunning(true);
    setError(null);
    setProgress(null);
    setAnswer(null);
    setCounts(null);
    const t0 = performance.now();
    metrics.firstAnswerMs = undefined;
    let first = true;
    const shown = (a: Answer) => {
      setAnswer(a);
      if (first) {
        first = false;
        // On screen: after the render this update causes, at the next frame.
        setTimeout(() => requestAnimationFrame(() => (metrics.firstAnswerMs = performance.now() - t0)));
      }
    };
    const base = { repository: s.repo, start: s.range.start, end: s.range.end };
    runQuery({ ...base, query: s.query || "*", limit: 200 }, { progress: setProgress, partial: shown }, ctl.signal)
      .then((a) => {
        shown(a);
        setElapsed(performance.now() - t0);
      })
      .catch((e) => {
        if (!ctl.signal.aborted) setError(e.message);
      })
      .finally(() => {
        if (abort.current === ctl) {
          abort.current = null;
          setRunning(false);
        }
      });
    // The count over time above the results (its own query, so it counts every event).
    const [a, b] = resolve(s.range);
    const [span] = spanFor(b - a);
    const filter = filterOf(s.query);
    runQuery({ ...base, query: `${filter} | timechart(span=${span})`, limit: 10000 }, {}, ctl.signal)
      .then(setCounts)
      .catch(() => setCounts(null));
    // The sidebar's fields, over the same range (a later run's answer wins).
    setFields(null);
    discoverFields(s.repo, s.range.start, s.range.end)
      .then((f) => ran.current === s && setFields(f))
      .catch(() => ran.current === s && setFields({ events: 0, sampled: false, fields: [], warnings: [] }));
  }

  function history_push(hash: string) {
    history_api().pushState(null, "", hash);
  }

  function toggleLive() {
    if (liveOn) {
      stopLive.current?.();
      stopLive.current = null;
      setLiveOn(false);
      setLiveStatus("");
      return;
    }
    cancel();
    const s = ran.current.query === text ? ran.current : { repo, query: text, range };
    setLiveOn(true);
    setPaused(false);
    setPending([]);
    stopLive.current = live(s.repo, s.query || "*", windowOf(s.range), {
      status: (st, detail) =>
        setLiveStatus(
          st === "open" ? "live" : st === "reconnecting" ? `reconnecting — ${detail ?? ""}` : st === "stopped" ? `stopped: ${detail ?? ""}` : "connecting…",
        ),
      message: (m) => {
        if (m.type === "snapshot" || m.type === "update") {
          setAnswer({ columns: m.columns ?? [], rows: m.rows ?? [], events: Boolean(m.events ?? shapeOfRows(m)), warnings: [] });
          metrics.lastLiveUpdate = Date.now();
        } else if (m.type === "events") {
          const rows = [...(m.rows ?? [])].reverse();
          metrics.lastLiveUpdate = Date.now();
          if (pausedRef.current) setPending((p) => [...rows, ...p].slice(0, LIVE_KEEP));
          else setAnswer((a) => ({ ...(a ?? { columns: m.columns ?? [], warnings: [], events: true }), events: true, rows: [...rows, ...(a?.rows ?? [])].slice(0, LIVE_KEEP) }));
        }
      },
    });
  }

  function resume() {
    setPaused(false);
    setAnswer((a) => (a ? { ...a, rows: [...pending, ...a.rows].slice(0, LIVE_KEEP) } : a));
    setPending([]);
  }

  function pick(field: string, value: string, exclude: boolean) {
    const clause = `${fieldName(field)}${exclude ? "!=" : "="}${literal(value)}`;
    const parts = text.split("|");
    parts[0] = parts[0].trim() && parts[0].trim() !== "*" ? `${parts[0].trim()} ${clause}` : clause;
    const q = parts.length > 1 ? `${parts[0]} |${parts.slice(1).join("|")}` : parts[0];
    setText(q);
    run({ repo, query: q, range });
  }

  async function saveSearch() {
    const name = prompt("Name of the saved search:", text.slice(0, 60));
    if (!name) return;
    const doc: SavedSearch = { name, repository: repo, query: text, start: range.start, end: range.end };
    try {
      await documents.create("searches", doc);
      loadSaved();
    } catch (e) {
      setError((e as Error).message);
    }
  }

  async function openSaved(id: string) {
    const s = await documents.get<SavedSearch>("searches", id);
    const st = { repo: s.repository, query: s.query, range: { start: s.start ?? "1h", end: s.end } };
    setRepo(st.repo);
    setText(st.query);
    setRange(st.range);
    run(st);
  }

  const rangeMs = resolve(ran.current.range);
  const shape = answer ? shapeOf(answer) : null;
  useKeptScroll(results, answer?.rows ?? []);
  const countSeries = counts && shapeOf(counts) === "timechart" ? timeSeries(counts, rangeMs) : null;
  const [, spanMs] = spanFor(rangeMs[1] - rangeMs[0]);

  return (
    <div class="search">
      <div class="toolbar">
        <label>
          repository{" "}
          <input list="repositories" id="repository" value={repo} size={10} onInput={(e) => setRepo((e.target as HTMLInputElement).value)} />
          <datalist id="repositories">{repositories.map((r) => <option value={r} />)}</datalist>
        </label>
        <TimePicker range={range} onChange={(r) => { setRange(r); run({ repo, query: text, range: r }); }} />
        <button id="run" class="primary" onClick={() => run()} disabled={running}>Run</button>
        <button id="cancel" onClick={cancel} disabled={!running}>Cancel</button>
        <button id="live" class={liveOn ? "on" : ""} onClick={toggleLive} aria-pressed={liveOn}>{liveOn ? "■ Live" : "▶ Live"}</button>
        {liveOn && <button id="pause" onClick={() => (paused ? resume() : setPaused(true))}>{paused ? `Resume (${pending.length} new)` : "Pause"}</button>}
        <button onClick={saveSearch}>Save</button>
        <details class="menu">
          <summary>Saved ({saved.length})</summary>
          <ul id="saved-searches">
            {saved.map((s) => (
              <li>
                <a href="javascript:void 0" onClick={() => openSaved(s.id)}>{s.name}</a>
                <button class="small" title="delete" onClick={() => documents.remove("searches", s.id).then(loadSaved)}>✕</button>
              </li>
            ))}
          </ul>
        </details>
        <details class="menu">
          <summary>History</summary>
          <ul>
            {history().slice(0, 20).map((h) => (
              <li><a href="javascript:void 0" onClick={() => { setText(h); run({ repo, query: h, range }); }}>{h}</a></li>
            ))}
          </ul>
        </details>
      </div>
      <Editor value={text} onInput={setText} onRun={() => run()} onCancel={cancel} verdict={verdict} />
      <div class="status" id="status">
        {running && (
          <span class="progress">
            running… {progress ? `${progress.blocks_done}/${progress.blocks_total} blocks, ${progress.events_scanned.toLocaleString()} events read` : ""}
          </span>
        )}
        {!running && answer && !liveOn && (
          <span id="count">
            {answer.events ? `${answer.rows.length} events` : `${answer.rows.length} rows`}
            {countSeries && answer.events ? ` of ${countSeries.series[0]?.values.reduce<number>((a, v) => a + (v ?? 0), 0).toLocaleString()} in range` : ""}
            {elapsed !== null ? ` · ${Math.round(elapsed)} ms` : ""}
          </span>
        )}
        {liveOn && <span id="live-status" class={liveStatus.startsWith("reconnecting") ? "warn" : ""}>{liveStatus}</span>}
        {answer?.warnings.map((w) => <span class="warn">{w}</span>)}
        {error && <span class="error" role="alert">{error}</span>}
      </div>
      {countSeries && shape === "events" && !liveOn && (
        <div id="histogram">
          <TimeChart
            data={countSeries}
            kind="bars"
            height={140}
            yLabel={`events / ${spanFor(rangeMs[1] - rangeMs[0])[0]}`}
            onSelect={(from, to) => {
              const r = { start: iso(from), end: iso(Math.max(to, from + spanMs / 10)) };
              setRange(r);
              run({ repo, query: text, range: r });
            }}
          />
        </div>
      )}
      <div class="body">
        {shape === "events" && <Fields discovery={fields} onPick={pick} />}
        <div class="results" ref={results} id="results">
          {answer && shape === "events" && <EventList rows={answer.rows} />}
          {answer && shape !== "events" && <Aggregate answer={answer} query={ran.current.query} rangeMs={rangeMs} />}
          {answer && answer.rows.length === 0 && <p class="muted">No results in this range.</p>}
        </div>
      </div>
    </div>
  );
}

function shapeOfRows(m: { columns?: string[] }): boolean {
  return !(m.columns ?? []).some((c) => c.startsWith("_"));
}

function history_api(): History {
  return window.history;
}
