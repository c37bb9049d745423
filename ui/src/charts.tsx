// Every chart is uPlot. The rules: the data points are drawn, gaps (null) stay gaps, both axes
// are labelled (with units) and carry grid rules.
import { useEffect, useRef } from "preact/hooks";
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";

export const PALETTE = ["#2563eb", "#dc2626", "#16a34a", "#d97706", "#7c3aed", "#0891b2", "#db2777", "#65a30d", "#475569", "#ea580c"];

const GRID = { stroke: "rgba(0,0,0,0.12)", width: 1 };
const TICKS = { stroke: "rgba(0,0,0,0.3)", width: 1 };

function axis(label: string, extra: Partial<uPlot.Axis> = {}): uPlot.Axis {
  return { label, grid: GRID, ticks: TICKS, labelSize: 18, ...extra };
}

// Mounts a uPlot into a div that follows its container's width.
function usePlot(make: (width: number) => uPlot | null, deps: unknown[], height: number) {
  const el = useRef<HTMLDivElement>(null);
  useEffect(() => {
    const box = el.current;
    if (!box) return;
    const plot = make(Math.max(200, box.clientWidth));
    if (!plot) return;
    box.replaceChildren(plot.root);
    const observer = new ResizeObserver(() => plot.setSize({ width: Math.max(200, box.clientWidth), height }));
    observer.observe(box);
    return () => {
      observer.disconnect();
      plot.destroy();
    };
  }, deps);
  return el;
}

export interface TimeSeries {
  times: number[]; // ms, ascending, one per bucket
  series: { name: string; values: (number | null)[] }[];
}

export interface TimeChartProps {
  data: TimeSeries;
  kind: "line" | "area" | "bars";
  yLabel: string;
  height?: number;
  onSelect?: (fromMs: number, toMs: number) => void;
  onPoint?: (timeMs: number, series: string) => void;
}

// Stacks series upwards (for stacked bars); a bucket where every series is null stays null.
function stack(series: TimeSeries["series"]): (number | null)[][] {
  const out: (number | null)[][] = [];
  const sums: number[] = [];
  series.forEach((s, k) => {
    out.push(
      s.values.map((v, i) => {
        if (k === 0) sums[i] = 0;
        if (v === null) return series.slice(0, k).some((p) => p.values[i] !== null) ? sums[i] : null;
        sums[i] += v;
        return sums[i];
      }),
    );
  });
  return out;
}

export function TimeChart({ data, kind, yLabel, height = 220, onSelect, onPoint }: TimeChartProps) {
  const el = usePlot(
    (width) => {
      const xs = data.times.map((t) => t / 1000);
      const values = kind === "bars" && data.series.length > 1 ? stack(data.series) : data.series.map((s) => s.values);
      const bars = uPlot.paths.bars!({ size: [0.8, 60], align: 0 });
      // Stacked bars draw the tallest first so each series' own part stays visible.
      const order = kind === "bars" ? [...data.series.keys()].reverse() : [...data.series.keys()];
      const series: uPlot.Series[] = [{ label: "time" }];
      for (const k of order) {
        const color = PALETTE[k % PALETTE.length];
        series.push({
          label: data.series[k].name,
          stroke: color,
          width: kind === "bars" ? 0 : 1.5,
          fill: kind === "area" ? color + "33" : kind === "bars" ? color + "cc" : undefined,
          paths: kind === "bars" ? bars : undefined,
          spanGaps: false,
          points: { show: true, size: kind === "bars" ? 3 : 5, stroke: color, fill: "#fff" },
        });
      }
      const opts: uPlot.Options = {
        width,
        height,
        series,
        scales: { x: { time: true }, y: { range: (_u, min, max) => [Math.min(0, min), max > 0 ? max * 1.1 : 1] } },
        axes: [axis("time (local)"), axis(yLabel, { size: 60 })],
        cursor: { drag: { x: Boolean(onSelect), y: false, setScale: false } },
        legend: { show: data.series.length > 1 || kind !== "bars" },
        hooks: {
          setSelect: [
            (u) => {
              if (!onSelect || u.select.width < 2) return;
              const from = u.posToVal(u.select.left, "x") * 1000;
              const to = u.posToVal(u.select.left + u.select.width, "x") * 1000;
              u.setSelect({ left: 0, top: 0, width: 0, height: 0 }, false);
              onSelect(from, to);
            },
          ],
        },
      };
      const u = new uPlot(opts, [xs, ...order.map((k) => values[k])] as uPlot.AlignedData, undefined as unknown as HTMLElement);
      if (onPoint) {
        let downX = 0;
        u.over.addEventListener("mousedown", (e) => (downX = e.clientX));
        u.over.addEventListener("click", (e) => {
          const idx = u.cursor.idx;
          if (Math.abs(e.clientX - downX) > 3 || idx === null || idx === undefined) return;
          // The series under the pointer: the stacked band holding it, else the nearest value.
          const y = u.posToVal(u.cursor.top ?? 0, "y");
          const present = [...data.series.keys()].filter((k) => values[k][idx] !== null);
          const stacked = kind === "bars" && data.series.length > 1;
          const hit = stacked
            ? present.find((k) => y <= (values[k][idx] as number))
            : present.sort((a, b) => Math.abs((values[a][idx] as number) - y) - Math.abs((values[b][idx] as number) - y))[0];
          const chosen = hit ?? present[present.length - 1];
          onPoint(data.times[idx], chosen === undefined ? "" : data.series[chosen].name);
        });
        u.over.style.cursor = "pointer";
      }
      return u;
    },
    [data, kind, yLabel, height],
    height,
  );
  return <div class="chart" ref={el} />;
}

// The buckets of histogram(): bars over the value axis.
export function BucketChart({ lower, upper, count, field, height = 220 }: {
  lower: number[];
  upper: number[];
  count: number[];
  field: string;
  height?: number;
}) {
  const el = usePlot(
    (width) => {
      const mids = lower.map((l, i) => (l + upper[i]) / 2);
      const opts: uPlot.Options = {
        width,
        height,
        scales: {
          x: { time: false, range: () => [Math.min(...lower), Math.max(...upper)] },
          y: { range: (_u, _min, max) => [0, max > 0 ? max * 1.1 : 1] },
        },
        series: [
          { label: field },
          {
            label: "events",
            stroke: PALETTE[0],
            fill: PALETTE[0] + "aa",
            paths: uPlot.paths.bars!({ size: [0.95, 200], align: 0 }),
            points: { show: true, size: 4, stroke: PALETTE[0], fill: "#fff" },
          },
        ],
        axes: [axis(field), axis("events", { size: 60 })],
        legend: { show: false },
      };
      return new uPlot(opts, [mids, count], undefined as unknown as HTMLElement);
    },
    [lower, upper, count, field],
    height,
  );
  return <div class="chart" ref={el} />;
}

export interface Box {
  label: string;
  q1: number;
  median: number;
  q3: number;
  low: number;
  high: number;
}

// The boxes of boxplot(): one per group, drawn in uPlot's draw hook on its own scales.
export function BoxChart({ boxes, yLabel, height = 240 }: { boxes: Box[]; yLabel: string; height?: number }) {
  const el = usePlot(
    (width) => {
      const xs = boxes.map((_, i) => i);
      const opts: uPlot.Options = {
        width,
        height,
        scales: {
          x: { time: false, range: () => [-0.6, boxes.length - 0.4] },
          y: {
            range: () => {
              const lo = Math.min(...boxes.map((b) => b.low));
              const hi = Math.max(...boxes.map((b) => b.high));
              const pad = (hi - lo) * 0.08 || 1;
              return [lo - pad, hi + pad];
            },
          },
        },
        series: [
          { label: "group" },
          // The medians, as the drawn data points; the boxes come from the hook below.
          { label: "median", stroke: PALETTE[1], width: 0, points: { show: true, size: 7, fill: PALETTE[1] } },
        ],
        axes: [
          axis("group", { values: (_u, ticks) => ticks.map((t) => (Number.isInteger(t) ? boxes[t]?.label ?? "" : "")), splits: () => xs }),
          axis(yLabel, { size: 60 }),
        ],
        legend: { show: false },
        hooks: {
          draw: [
            (u) => {
              const ctx = u.ctx;
              ctx.save();
              const half = Math.max(6, (u.bbox.width / Math.max(1, boxes.length)) * 0.25);
              boxes.forEach((b, i) => {
                const x = u.valToPos(i, "x", true);
                const y = (v: number) => u.valToPos(v, "y", true);
                ctx.strokeStyle = PALETTE[0];
                ctx.fillStyle = PALETTE[0] + "33";
                ctx.lineWidth = 1.5;
                ctx.fillRect(x - half, y(b.q3), half * 2, y(b.q1) - y(b.q3));
                ctx.strokeRect(x - half, y(b.q3), half * 2, y(b.q1) - y(b.q3));
                ctx.beginPath();
                ctx.moveTo(x, y(b.q3));
                ctx.lineTo(x, y(b.high));
                ctx.moveTo(x - half / 2, y(b.high));
                ctx.lineTo(x + half / 2, y(b.high));
                ctx.moveTo(x, y(b.q1));
                ctx.lineTo(x, y(b.low));
                ctx.moveTo(x - half / 2, y(b.low));
                ctx.lineTo(x + half / 2, y(b.low));
                ctx.moveTo(x - half, y(b.median));
                ctx.lineTo(x + half, y(b.median));
                ctx.stroke();
              });
              ctx.restore();
            },
          ],
        },
      };
      return new uPlot(opts, [xs, boxes.map((b) => b.median)], undefined as unknown as HTMLElement);
    },
    [boxes, yLabel],
    height,
  );
  return <div class="chart" ref={el} />;
}

// A tiny trend line for single-value widgets.
export function Sparkline({ values, height = 40 }: { values: number[]; height?: number }) {
  const el = usePlot(
    (width) => {
      if (values.length < 2) return null;
      const opts: uPlot.Options = {
        width,
        height,
        series: [{}, { stroke: PALETTE[0], width: 1.5, points: { show: true, size: 3 } }],
        axes: [{ show: false }, { show: false }],
        scales: { x: { time: false } },
        legend: { show: false },
        cursor: { show: false },
      };
      return new uPlot(opts, [values.map((_, i) => i), values], undefined as unknown as HTMLElement);
    },
    [values],
    height,
  );
  return <div class="spark" ref={el} />;
}
