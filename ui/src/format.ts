import type { Run } from "./api";

export function formatTime(iso: string | null): string {
  return iso ? new Date(iso).toLocaleString() : "";
}

/** How long the run ran (so far, while it runs); blank before it started. */
export function duration(run: Run, now: number = Date.now()): string {
  if (!run.start_time) return "";
  const end = run.end_time ? Date.parse(run.end_time) : now;
  let seconds = Math.max(0, Math.round((end - Date.parse(run.start_time)) / 1000));
  const hours = Math.floor(seconds / 3600);
  const minutes = Math.floor((seconds % 3600) / 60);
  seconds %= 60;
  if (hours) return `${hours}h ${minutes}m`;
  if (minutes) return `${minutes}m ${seconds}s`;
  return `${seconds}s`;
}

export function formatNumber(value: number | undefined | null): string {
  if (value === undefined || value === null) return "";
  if (Number.isNaN(value)) return "NaN";
  return Math.abs(value) >= 1e5 || (value !== 0 && Math.abs(value) < 1e-3) ? value.toExponential(4) : String(+value.toFixed(6));
}

export function runName(run: Run): string {
  return run.display_name || run.run_id.slice(0, 8);
}
