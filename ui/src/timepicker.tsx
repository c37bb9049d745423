// Relative ("last 15m") or absolute (two local date-times) ranges.
import { RELATIVE, isRelative, resolve, type Range } from "./time";

function local(ms: number): string {
  const d = new Date(ms - new Date(ms).getTimezoneOffset() * 60e3);
  return d.toISOString().slice(0, 19);
}

export function TimePicker({ range, onChange }: { range: Range; onChange: (r: Range) => void }) {
  const relative = isRelative(range);
  const [from, to] = resolve(range);
  const mode = relative ? "relative" : "absolute";
  return (
    <span class="timepicker">
      <select
        id="range"
        value={mode === "absolute" ? "absolute" : range.start}
        onChange={(e) => {
          const v = (e.target as HTMLSelectElement).value;
          if (v === "absolute") {
            onChange({ start: new Date(from).toISOString(), end: new Date(to).toISOString() });
          } else {
            onChange({ start: v });
          }
        }}
      >
        {RELATIVE.map((r) => <option value={r}>last {r}</option>)}
        {relative && !RELATIVE.includes(range.start) && <option value={range.start}>last {range.start}</option>}
        <option value="absolute">absolute…</option>
      </select>
      {mode === "absolute" && (
        <>
          <input id="range-start" type="datetime-local" step="1" value={local(from)} onChange={(e) => onChange({ start: new Date((e.target as HTMLInputElement).value).toISOString(), end: new Date(to).toISOString() })} />
          {" – "}
          <input id="range-end" type="datetime-local" step="1" value={local(to)} onChange={(e) => onChange({ start: new Date(from).toISOString(), end: new Date((e.target as HTMLInputElement).value).toISOString() })} />
        </>
      )}
    </span>
  );
}
