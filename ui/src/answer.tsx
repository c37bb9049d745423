// How an answer is shown: events as an expandable list, timechart as a time chart,
// histogram and boxplot as their charts, any other aggregate as a table.
import { useState } from "preact/hooks";
import type { Answer, Row } from "./api";
import { BoxChart, BucketChart, TimeChart, type Box, type TimeSeries } from "./charts";
import { formatTime } from "./time";

export type Shape = "events" | "timechart" | "histogram" | "boxplot" | "table";

export function shapeOf(a: Answer): Shape {
  if (a.events) return "events";
  const c = new Set(a.columns);
  if (c.has("_bucket")) return "timechart";
  if (c.has("_lower") && c.has("_upper") && c.has("_count")) return "histogram";
  if (c.has("_q1") && c.has("_median") && c.has("_q3")) return "boxplot";
  return "table";
}

const num = (v: unknown): number | null => (typeof v === "number" && Number.isFinite(v) ? v : null);

// The rows of a timechart as series over every bucket of the range: a bucket without a row
// is a gap (null), never a made-up zero or an interpolation.
export function timeSeries(a: Answer, rangeMs?: [number, number]): TimeSeries {
  const rows = [...a.rows].sort((x, y) => (num(x._bucket) ?? 0) - (num(y._bucket) ?? 0));
  const names = a.columns.filter((c) => c !== "_bucket");
  const times = rows.map((r) => (num(r._bucket) ?? 0) / 1e6);
  let step = Infinity;
  for (let i = 1; i < times.length; i++) step = Math.min(step, times[i] - times[i - 1]);
  const all: number[] = [];
  if (Number.isFinite(step) && step > 0) {
    const first = rangeMs ? Math.max(times[0] - step * Math.floor((times[0] - rangeMs[0]) / step), times[0] - step * 2000) : times[0];
    const last = rangeMs ? Math.min(times[times.length - 1] + step * Math.floor((rangeMs[1] - times[times.length - 1]) / step), times[times.length - 1] + step * 2000) : times[times.length - 1];
    for (let t = first; t <= last + step / 2; t += step) all.push(t);
  } else all.push(...times);
  const at = new Map(times.map((t, i) => [Math.round(t), rows[i]]));
  return {
    times: all,
    series: names.map((name) => ({ name, values: all.map((t) => num(at.get(Math.round(t))?.[name])) })),
  };
}

export function boxes(a: Answer): Box[] {
  const group = a.columns.find((c) => !c.startsWith("_"));
  return a.rows.map((r, i) => ({
    label: group ? String(r[group] ?? "") : String(i + 1),
    q1: num(r._q1) ?? 0,
    median: num(r._median) ?? 0,
    q3: num(r._q3) ?? 0,
    low: num(r._low_whisker) ?? num(r._min) ?? 0,
    high: num(r._high_whisker) ?? num(r._max) ?? 0,
  }));
}

// The filter stages of a query (those before its first function other than per-event ones):
// what a drill-down searches and what the count histogram counts.
export function filterOf(query: string): string {
  const keep = [];
  for (const stage of query.split("|")) {
    if (/^\s*[A-Za-z]+\(/.test(stage) && !/^\s*(in|eval|select|drop|regex|rename)\(/.test(stage)) break;
    keep.push(stage.trim());
  }
  return keep.filter(Boolean).join(" | ") || "*";
}

// The field a boxplot() reads, for its axis label.
export function boxField(query: string): string {
  return /boxplot\(\s*([^,\s)]+)/.exec(query)?.[1] ?? "value";
}

export function cell(column: string, v: unknown): string {
  if (v === null || v === undefined) return "";
  if (typeof v === "number" && !Number.isInteger(v)) return String(Number(v.toPrecision(6)));
  if (column === "@timestamp" || column === "@ingesttimestamp" || column === "_bucket") return formatTime(v);
  if (typeof v === "object") return JSON.stringify(v);
  return String(v);
}

export function Table({ answer }: { answer: Answer }) {
  return (
    <div class="table-wrap">
      <table class="rows">
        <thead>
          <tr>{answer.columns.map((c) => <th>{c}</th>)}</tr>
        </thead>
        <tbody>
          {answer.rows.map((r) => (
            <tr>{answer.columns.map((c) => <td class={typeof r[c] === "number" ? "num" : ""}>{cell(c, r[c])}</td>)}</tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

export function eventText(r: Row): string {
  if (typeof r["@rawstring"] === "string") return r["@rawstring"] as string;
  const fields = Object.entries(r).filter(([k]) => !k.startsWith("@"));
  return fields.map(([k, v]) => `${k}=${cell(k, v)}`).join(" ");
}

function EventRow({ row }: { row: Row }) {
  const [open, setOpen] = useState(false);
  return (
    <li class={open ? "event open" : "event"}>
      <div class="line" onClick={() => setOpen(!open)}>
        <span class="time">{formatTime(row["@timestamp"])}</span>
        <span class="text">{eventText(row)}</span>
      </div>
      {open && (
        <table class="fields">
          <tbody>
            {Object.keys(row)
              .sort()
              .map((k) => (
                <tr>
                  <th>{k}</th>
                  <td>{cell(k, row[k])}</td>
                </tr>
              ))}
          </tbody>
        </table>
      )}
    </li>
  );
}

export function EventList({ rows }: { rows: Row[] }) {
  return (
    <ul class="events">
      {rows.map((r) => (
        <EventRow key={String(r["@id"] ?? "") + String(r["@timestamp"])} row={r} />
      ))}
    </ul>
  );
}

// Any answer in its shape (events left to the caller, which lists and live-appends them).
export function Aggregate({ answer, query, rangeMs, onPoint, height }: {
  answer: Answer;
  query?: string;
  rangeMs?: [number, number];
  onPoint?: (timeMs: number, series: string) => void;
  height?: number;
}) {
  switch (shapeOf(answer)) {
    case "timechart":
      return <TimeChart data={timeSeries(answer, rangeMs)} kind="line" yLabel={answer.columns.filter((c) => c !== "_bucket").join(", ")} onPoint={onPoint} height={height} />;
    case "histogram": {
      const field = /histogram\(\s*([^,\s)]+)/.exec(query ?? "")?.[1] ?? "value";
      return (
        <BucketChart
          lower={answer.rows.map((r) => num(r._lower) ?? 0)}
          upper={answer.rows.map((r) => num(r._upper) ?? 0)}
          count={answer.rows.map((r) => num(r._count) ?? 0)}
          field={field}
          height={height}
        />
      );
    }
    case "boxplot":
      return (
        <>
          <BoxChart boxes={boxes(answer)} yLabel={boxField(query ?? "")} height={height} />
          <Table answer={answer} />
        </>
      );
    default:
      return <Table answer={answer} />;
  }
}
