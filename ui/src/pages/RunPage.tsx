import { useEffect, useMemo, useState } from "react";
import { api, enc, metricSeries, searchRuns, TERMINAL, type LogChunk, type Page, type Run, type Series } from "../api";
import { Chips, Link, Show, Status } from "../components";
import { MetricChart } from "../MetricChart";
import { RunFilesSection, SnapshotSection } from "./RunFiles";
import { duration, formatNumber, formatTime, runName } from "../format";
import { useData } from "../useData";

const LOG_POLL_MS = 2000;
// Points per chart: the service downsamples longer series (LTTB), so a run of 100,000 steps sends 1,000.
const CHART_POINTS = 1000;

async function pages<T>(path: string, query: Record<string, string> = {}): Promise<T[]> {
  const items: T[] = [];
  let cursor: string | null = null;
  do {
    const page: Page<T> = await api<Page<T>>(path, { query: cursor ? { ...query, cursor } : query });
    items.push(...page.items);
    cursor = page.next_cursor;
  } while (cursor);
  return items;
}

type Details = { run: Run; metrics: Series[]; children: Run[] };

async function loadRun(workspace: string, runId: string): Promise<Details> {
  const [run, metrics, children] = await Promise.all([
    api<Run>(`runs/${enc(runId)}`),
    metricSeries(runId, CHART_POINTS),
    searchRuns(workspace, { parent_run_id: runId }),
  ]);
  return { run, metrics, children };
}

/** The scalar series by metric name, in the service's (name) order. */
export function seriesOf(metrics: Series[]): Map<string, Series> {
  return new Map(metrics.map((one) => [one.name, one]));
}

/** The run's log, followed (polled from the last seq seen) while the run has not ended. */
function useLog(runId: string, ended: boolean): LogChunk[] {
  const [chunks, setChunks] = useState<LogChunk[]>([]);
  useEffect(() => {
    let stopped = false;
    let last = 0;
    let timer: number | undefined;
    setChunks([]);
    const poll = async () => {
      try {
        const fresh = await pages<LogChunk>(`runs/${enc(runId)}/logs`, { after_seq: String(last) });
        if (stopped) return;
        if (fresh.length) {
          last = fresh[fresh.length - 1].seq;
          setChunks((previous) => [...previous, ...fresh]);
        }
      } finally {
        if (!stopped && !ended) timer = window.setTimeout(poll, LOG_POLL_MS);
      }
    };
    void poll();
    return () => {
      stopped = true;
      window.clearTimeout(timer);
    };
  }, [runId, ended]);
  return chunks;
}

export function RunPage({ workspace, runId }: { workspace: string; runId: string }) {
  const details = useData(() => loadRun(workspace, runId), [workspace, runId]);
  const ended = details.data ? TERMINAL.has(details.data.run.status) : false;
  const log = useLog(runId, ended);
  const series = useMemo(() => seriesOf(details.data?.metrics ?? []), [details.data]);
  return (
    <Show loaded={details}>
      {({ run, children }) => (
        <>
          <div className="aml-crumbs">
            <Link to={{ page: "workspaces" }}>Workspaces</Link>
            <Link to={{ page: "experiments", workspace }}>{workspace}</Link>
            <Link to={{ page: "runs", workspace, experiment: run.experiment }}>{run.experiment}</Link>
            <span>{runName(run)}</span>
          </div>
          <h1>
            {runName(run)} <Status status={run.status} />
          </h1>
          <dl className="aml-kv" data-testid="run-metadata">
            <dt>Run id</dt><dd>{run.run_id}</dd>
            {run.parent_run_id && (<><dt>Parent</dt><dd><Link to={{ page: "run", workspace, runId: run.parent_run_id }}>{run.parent_run_id}</Link></dd></>)}
            <dt>Submitted by</dt><dd>{run.submitted_by}</dd>
            <dt>Compute target</dt><dd>{run.compute_target ?? "local process"}</dd>
            <dt>Created</dt><dd>{formatTime(run.created_at)}</dd>
            <dt>Started</dt><dd>{formatTime(run.start_time)}</dd>
            <dt>Ended</dt><dd>{formatTime(run.end_time)}</dd>
            <dt>Duration</dt><dd>{duration(run)}</dd>
            {run.error && (<><dt>Error</dt><dd className="aml-error">{run.error}</dd></>)}
            <dt>Tags</dt><dd><Chips values={run.tags} /></dd>
            <dt>Properties</dt><dd><Chips values={run.properties} /></dd>
          </dl>
          <h2>Params</h2>
          {Object.keys(run.params).length === 0 ? (
            <p className="aml-muted">none</p>
          ) : (
            <table className="aml-table" data-testid="params">
              <tbody>
                {Object.entries(run.params).map(([key, value]) => (
                  <tr key={key}><th>{key}</th><td>{value}</td></tr>
                ))}
              </tbody>
            </table>
          )}
          <h2>Metrics</h2>
          {series.size === 0 ? (
            <p className="aml-muted">No metric logged.</p>
          ) : (
            <div className="aml-charts">
              {[...series.entries()].map(([name, one]) =>
                one.steps.length === 1 ? (
                  <div className="aml-chart" key={name} data-testid="metric-value" data-metric={name}>
                    <h3>{name}</h3>
                    <strong>{formatNumber(one.values[0])}</strong>
                  </div>
                ) : (
                  <MetricChart key={name} name={name} steps={one.steps} values={one.values} total={one.total_points} />
                ),
              )}
            </div>
          )}
          {children.length > 0 && (
            <>
              <h2>Child runs</h2>
              <table className="aml-table" data-testid="child-runs">
                <thead><tr><th>Run</th><th>Status</th><th>Duration</th></tr></thead>
                <tbody>
                  {children.map((child) => (
                    <tr key={child.run_id}>
                      <td><Link to={{ page: "run", workspace, runId: child.run_id }}>{runName(child)}</Link></td>
                      <td><Status status={child.status} /></td>
                      <td>{duration(child)}</td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </>
          )}
          <RunFilesSection workspace={workspace} runId={runId} />
          <SnapshotSection workspace={workspace} runId={runId} />
          <h2>Log {!ended && <span className="aml-muted">(live)</span>}</h2>
          {log.length === 0 ? (
            <p className="aml-muted">No output.</p>
          ) : (
            <pre className="aml-log" data-testid="run-log">
              {log.map((chunk) => (
                <span key={chunk.seq} className={chunk.stream}>{chunk.text}</span>
              ))}
            </pre>
          )}
        </>
      )}
    </Show>
  );
}
