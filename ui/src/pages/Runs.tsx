import { useState } from "react";
import { latestMetrics, searchRuns, type Run } from "../api";
import { Link, Show, Status } from "../components";
import { duration, formatNumber, formatTime, runName } from "../format";
import { useData } from "../useData";

type Sort = { metric: string | null; descending: boolean };
type Table = { runs: Run[]; latest: Record<string, Record<string, number>>; metricNames: string[] };

async function loadTable(workspace: string, experiment: string, sort: Sort): Promise<Table> {
  // Sorted by the service (search_runs orders by the metric's latest value; runs without it last).
  const runs = await searchRuns(workspace, { experiment, order_by_metric: sort.metric, descending: sort.descending });
  const latest = await latestMetrics(runs.map((run) => run.run_id));
  const names = new Set<string>();
  for (const values of Object.values(latest)) for (const name of Object.keys(values)) names.add(name);
  return { runs, latest, metricNames: [...names].sort() };
}

/** Top-level runs in the service's order, each followed by its children (in the same order). */
export function foldChildren(runs: Run[]): { run: Run; children: Run[] }[] {
  const ids = new Set(runs.map((run) => run.run_id));
  const children = new Map<string, Run[]>();
  for (const run of runs) {
    if (run.parent_run_id && ids.has(run.parent_run_id)) {
      children.set(run.parent_run_id, [...(children.get(run.parent_run_id) ?? []), run]);
    }
  }
  return runs
    .filter((run) => !run.parent_run_id || !ids.has(run.parent_run_id))
    .map((run) => ({ run, children: children.get(run.run_id) ?? [] }));
}

export function RunsPage({ workspace, experiment }: { workspace: string; experiment: string }) {
  const [sort, setSort] = useState<Sort>({ metric: null, descending: true });
  const [chosen, setChosen] = useState<string | null>(null);
  const [open, setOpen] = useState<Set<string>>(new Set());
  const table = useData(() => loadTable(workspace, experiment, sort), [workspace, experiment, sort.metric, sort.descending]);

  const toggle = (runId: string) =>
    setOpen((previous) => {
      const next = new Set(previous);
      if (next.has(runId)) next.delete(runId);
      else next.add(runId);
      return next;
    });

  return (
    <>
      <div className="aml-crumbs">
        <Link to={{ page: "workspaces" }}>Workspaces</Link>
        <Link to={{ page: "experiments", workspace }}>{workspace}</Link>
        <span>{experiment}</span>
      </div>
      <h1>Runs of {experiment}</h1>
      {/* aria-busy while a new order loads: the previous rows stay on screen until then */}
      <div data-testid="runs-view" aria-busy={table.loading}>
      <Show loaded={table}>
        {({ runs, latest, metricNames }) => {
          const metric = chosen && metricNames.includes(chosen) ? chosen : sort.metric ?? metricNames[0] ?? null;
          const row = (run: Run, childCount: number, isChild: boolean) => (
            <tr key={run.run_id} className={isChild ? "aml-child" : ""} data-run-id={run.run_id} data-testid="run-row">
              <td>
                {childCount > 0 ? (
                  <button className="aml-fold" aria-label="children" onClick={() => toggle(run.run_id)}>
                    {open.has(run.run_id) ? "▾" : "▸"}
                  </button>
                ) : (
                  !isChild && <span className="aml-fold" />
                )}
                <Link to={{ page: "run", workspace, runId: run.run_id }}>{runName(run)}</Link>
                {childCount > 0 && <span className="aml-muted"> ({childCount} child runs)</span>}
              </td>
              <td><Status status={run.status} /></td>
              <td className="num">{duration(run)}</td>
              <td>{run.submitted_by}</td>
              <td>{formatTime(run.created_at)}</td>
              {metric && <td className="num" data-metric={metric}>{formatNumber(latest[run.run_id]?.[metric])}</td>}
            </tr>
          );
          const folded = foldChildren(runs);
          return (
            <>
              {metricNames.length > 0 && (
                <p>
                  <label>
                    Metric column:{" "}
                    <select value={metric ?? ""} onChange={(event) => setChosen(event.target.value)} data-testid="metric-choice">
                      {metricNames.map((name) => <option key={name}>{name}</option>)}
                    </select>
                  </label>
                </p>
              )}
              {runs.length === 0 ? (
                <p className="aml-muted">No run yet.</p>
              ) : (
                <table className="aml-table" data-testid="runs">
                  <thead>
                    <tr>
                      <th>Run</th><th>Status</th><th>Duration</th><th>Submitted by</th><th>Created</th>
                      {metric && (
                        <th>
                          <button
                            title="Sort by this metric (on the service)"
                            data-testid="sort-metric"
                            onClick={() => setSort({ metric, descending: sort.metric === metric ? !sort.descending : true })}
                          >
                            {metric} {sort.metric === metric ? (sort.descending ? "↓" : "↑") : "↕"}
                          </button>
                        </th>
                      )}
                    </tr>
                  </thead>
                  <tbody>
                    {folded.flatMap(({ run, children }) => [
                      row(run, children.length, false),
                      ...(open.has(run.run_id) ? children.map((child) => row(child, 0, true)) : []),
                    ])}
                  </tbody>
                </table>
              )}
            </>
          );
        }}
      </Show>
      </div>
    </>
  );
}
