// Dashboards: kept on the server; listed, renamed, deleted, exported and imported as JSON.
// Each widget is a query drawn as a chart, a table or one value, live or refreshed; the
// dashboard's range applies to every widget; clicking a chart's point opens its events.
import { useEffect, useRef, useState } from "preact/hooks";
import { documents, live, runQuery, type Answer, type Dashboard, type DocumentSummary, type Widget, type WidgetKind } from "./api";
import { Aggregate, Table, boxField, boxes, filterOf, shapeOf, timeSeries } from "./answer";
import { BoxChart, BucketChart, Sparkline, TimeChart } from "./charts";
import { TimePicker } from "./timepicker";
import { durationMs, iso, resolve, windowOf, type Range } from "./time";
import { searchHash } from "./search";
import { metrics } from "./metrics";

const KINDS: WidgetKind[] = ["line", "area", "bars", "table", "single", "histogram", "boxplot"];

function download(name: string, doc: unknown) {
  const a = document.createElement("a");
  a.href = URL.createObjectURL(new Blob([JSON.stringify(doc, null, 2)], { type: "application/json" }));
  a.download = `${name.replace(/[^A-Za-z0-9_.-]+/g, "_")}.json`;
  a.click();
  URL.revokeObjectURL(a.href);
}

export function DashboardList() {
  const [items, setItems] = useState<DocumentSummary[]>([]);
  const [error, setError] = useState<string | null>(null);
  const load = () => documents.list("dashboards").then(setItems).catch((e) => setError(e.message));
  useEffect(() => {
    load();
  }, []);
  const act = (p: Promise<unknown>) => p.then(load).catch((e) => setError(e.message));
  return (
    <div class="page">
      <h2>Dashboards</h2>
      <div class="toolbar">
        <button class="primary" onClick={() => { const name = prompt("Name of the new dashboard:"); if (name) act(documents.create("dashboards", { name, start: "1h", widgets: [] })); }}>New dashboard</button>
        <label class="button">
          Import JSON…
          <input type="file" accept="application/json" hidden onChange={async (e) => {
            const f = (e.target as HTMLInputElement).files?.[0];
            if (!f) return;
            try {
              act(documents.create("dashboards", JSON.parse(await f.text())));
            } catch (err) {
              setError(`${f.name}: ${(err as Error).message}`);
            }
          }} />
        </label>
      </div>
      {error && <p class="error" role="alert">{error}</p>}
      <table class="rows" id="dashboards">
        <thead><tr><th>name</th><th>widgets</th><th /></tr></thead>
        <tbody>
          {items.map((d) => (
            <tr>
              <td><a href={`#/dashboards/${d.id}`}>{d.name}</a></td>
              <td class="num">{String(d.widgets ?? "")}</td>
              <td>
                <button onClick={async () => { const name = prompt("New name:", d.name); if (!name) return; const doc = await documents.get<Dashboard>("dashboards", d.id); act(documents.replace("dashboards", d.id, { ...doc, name })); }}>Rename</button>
                <button onClick={async () => download(d.name, await documents.get("dashboards", d.id))}>Export</button>
                <button onClick={() => confirm(`Delete dashboard ${d.name}?`) && act(documents.remove("dashboards", d.id))}>Delete</button>
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      {items.length === 0 && <p class="muted">No dashboards yet.</p>}
    </div>
  );
}

function Single({ answer, trend }: { answer: Answer; trend: number[] }) {
  const col = answer.columns.find((c) => typeof answer.rows[0]?.[c] === "number");
  const value = col ? (answer.rows[0][col] as number) : null;
  const prev = trend.length > 1 ? trend[trend.length - 2] : null;
  const delta = value !== null && prev !== null ? value - prev : null;
  return (
    <div class="single">
      <div class="value" data-value={value ?? ""}>{value === null ? "–" : value.toLocaleString()}</div>
      <div class="unit">{col ?? ""}</div>
      {delta !== null && <div class={delta > 0 ? "trend up" : delta < 0 ? "trend down" : "trend"}>{delta > 0 ? "▲" : delta < 0 ? "▼" : "="} {Math.abs(delta).toLocaleString()} since the last update</div>}
      <Sparkline values={trend} />
    </div>
  );
}

function WidgetView({ widget, range, onRemove }: { widget: Widget; range: Range; onRemove: () => void }) {
  const [answer, setAnswer] = useState<Answer | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [status, setStatus] = useState("");
  const [updates, setUpdates] = useState(0);
  const trend = useRef<number[]>([]);
  const rangeMs = resolve(range);

  useEffect(() => {
    setAnswer(null);
    setError(null);
    trend.current = [];
    const got = (a: Answer) => {
      const col = a.columns.find((c) => typeof a.rows[0]?.[c] === "number");
      if (col) trend.current = [...trend.current, a.rows[0][col] as number].slice(-60);
      setAnswer(a);
      setUpdates((n) => n + 1);
      metrics.widgetUpdates += 1;
    };
    if (widget.live) {
      // Half-second updates: a widget shows new events well within 2 s of their acknowledgement.
      return live(widget.repository, widget.query, windowOf(range), {
        status: (s, d) => setStatus(s === "open" ? "live" : `${s}${d ? `: ${d}` : ""}`),
        message: (m) => {
          if (m.type === "snapshot" || m.type === "update") got({ columns: m.columns ?? [], rows: m.rows ?? [], events: Boolean(m.events), warnings: [] });
          else if (m.type === "events") setAnswer((a) => a && { ...a, rows: [...(m.rows ?? []).reverse(), ...a.rows].slice(0, 200) });
        },
      }, "500ms");
    }
    let ctl = new AbortController();
    const fetchOnce = () => {
      ctl.abort();
      ctl = new AbortController();
      runQuery({ repository: widget.repository, query: widget.query, start: range.start, end: range.end }, {}, ctl.signal)
        .then(got)
        .catch((e) => !ctl.signal.aborted && setError(e.message));
    };
    fetchOnce();
    const every = widget.refresh ? durationMs(widget.refresh) : null;
    const timer = every ? setInterval(fetchOnce, Math.max(1000, every)) : undefined;
    setStatus(every ? `every ${widget.refresh}` : "");
    return () => {
      ctl.abort();
      if (timer) clearInterval(timer);
    };
  }, [widget, range.start, range.end]);

  const drill = (timeMs: number, series: string) => {
    const s = answer ? timeSeries(answer, rangeMs) : null;
    const step = s && s.times.length > 1 ? s.times[1] - s.times[0] : 60e3;
    let q = filterOf(widget.query);
    const seriesField = /series\s*=\s*([A-Za-z0-9_.#@]+)/.exec(widget.query)?.[1];
    if (seriesField && series && !series.startsWith("_")) q = `${q === "*" ? "" : q + " "}${seriesField}=${JSON.stringify(series)}`;
    location.hash = searchHash({ repo: widget.repository, query: q, range: { start: iso(timeMs), end: iso(timeMs + step) } });
  };

  let body = null;
  if (error) body = <p class="error">{error}</p>;
  else if (!answer) body = <p class="muted">loading…</p>;
  else if (widget.kind === "single") body = <Single answer={answer} trend={trend.current} />;
  else if (widget.kind === "table") body = <Table answer={answer} />;
  else if (widget.kind === "histogram" && shapeOf(answer) === "histogram")
    body = <BucketChart lower={answer.rows.map((r) => Number(r._lower))} upper={answer.rows.map((r) => Number(r._upper))} count={answer.rows.map((r) => Number(r._count))} field={/histogram\(\s*([^,\s)]+)/.exec(widget.query)?.[1] ?? "value"} height={200} />;
  else if (widget.kind === "boxplot" && shapeOf(answer) === "boxplot") body = <BoxChart boxes={boxes(answer)} yLabel={boxField(widget.query)} height={200} />;
  else if ((widget.kind === "line" || widget.kind === "area" || widget.kind === "bars") && shapeOf(answer) === "timechart")
    body = <TimeChart data={timeSeries(answer, rangeMs)} kind={widget.kind} yLabel={answer.columns.filter((c) => c !== "_bucket").length > 1 ? "value" : answer.columns.filter((c) => c !== "_bucket")[0] ?? "value"} height={200} onPoint={drill} />;
  else body = <Aggregate answer={answer} query={widget.query} rangeMs={rangeMs} height={200} />;

  return (
    <section class="widget" data-title={widget.title} data-updates={updates}>
      <header>
        <h4>{widget.title}</h4>
        <small class="muted">{widget.repository} · {status}</small>
        <button class="small" title="remove" onClick={onRemove}>✕</button>
      </header>
      <code class="widget-query">{widget.query}</code>
      {body}
    </section>
  );
}

function AddWidget({ onAdd }: { onAdd: (w: Widget) => void }) {
  const [w, setW] = useState<Widget>({ title: "", kind: "line", repository: "main", query: "timechart(span=1m)", live: true });
  const set = (k: keyof Widget) => (e: Event) => {
    const t = e.target as HTMLInputElement;
    setW({ ...w, [k]: t.type === "checkbox" ? t.checked : t.value });
  };
  return (
    <details class="add-widget">
      <summary>Add a widget</summary>
      <form onSubmit={(e) => { e.preventDefault(); onAdd({ ...w, title: w.title || w.query, refresh: w.live ? undefined : w.refresh || undefined }); }}>
        <label>title <input name="title" value={w.title} onInput={set("title")} /></label>
        <label>kind <select name="kind" value={w.kind} onChange={set("kind")}>{KINDS.map((k) => <option value={k}>{k}</option>)}</select></label>
        <label>repository <input name="repository" value={w.repository} onInput={set("repository")} size={8} /></label>
        <label class="wide">query <input name="query" value={w.query} onInput={set("query")} /></label>
        <label><input name="live" type="checkbox" checked={w.live} onChange={set("live")} /> live</label>
        {!w.live && <label>refresh <input name="refresh" value={w.refresh ?? ""} placeholder="30s" onInput={set("refresh")} size={5} /></label>}
        <button class="primary" type="submit">Add</button>
      </form>
    </details>
  );
}

export function DashboardView({ id }: { id: string }) {
  const [doc, setDoc] = useState<Dashboard | null>(null);
  const [error, setError] = useState<string | null>(null);
  useEffect(() => {
    documents.get<Dashboard>("dashboards", id).then(setDoc).catch((e) => setError(e.message));
  }, [id]);
  const save = (d: Dashboard) =>
    documents.replace("dashboards", id, d).then(() => setDoc(d)).catch((e) => setError(e.message));
  if (error) return <p class="error page" role="alert">{error}</p>;
  if (!doc) return <p class="muted page">loading…</p>;
  const range: Range = { start: doc.start ?? "1h", end: doc.end };
  return (
    <div class="page dashboard">
      <div class="toolbar">
        <h2>{doc.name}</h2>
        <TimePicker range={range} onChange={(r) => save({ ...doc, start: r.start, end: r.end })} />
        <button onClick={() => download(doc.name, doc)}>Export</button>
        <a href="#/dashboards">all dashboards</a>
      </div>
      <AddWidget onAdd={(w) => save({ ...doc, widgets: [...doc.widgets, w] })} />
      <div class="grid">
        {doc.widgets.map((w, i) => (
          <WidgetView key={`${i}:${w.query}:${w.kind}`} widget={w} range={range} onRemove={() => save({ ...doc, widgets: doc.widgets.filter((_, j) => j !== i) })} />
        ))}
      </div>
      {doc.widgets.length === 0 && <p class="muted">No widgets yet: add one above.</p>}
    </div>
  );
}
