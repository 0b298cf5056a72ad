import { useState, type FormEvent, type ReactNode } from "react";
import {
  childCounts, latestMetrics, searchRuns, searchRunsPage, type MetricCondition, type Run, type RunQuery, type RunStatus,
} from "../api";
import { Link, Show, Status } from "../components";
import { duration, formatNumber, formatTime, runName } from "../format";
import { useData } from "../useData";

export const PAGE_SIZE = 50;
const STATUSES: RunStatus[] = ["Queued", "Preparing", "Running", "Finalizing", "CancelRequested", "Completed", "Failed", "Canceled"];
const OPS = ["<=", ">=", "==", "!=", "<", ">"] as const; // two-character operators first: "<=" is not "<"

type Sort = { metric: string | null; descending: boolean };
type Filter = { conditions: MetricCondition[]; status: RunStatus | "" };
type Latest = Record<string, Record<string, number>>;
type Table = { runs: Run[]; next: string | null; latest: Latest; counts: Record<string, number>; metricNames: string[] };

function query(experiment: string, sort: Sort, filter: Filter): RunQuery {
  return {
    experiment, order_by_metric: sort.metric, descending: sort.descending,
    metric_conditions: filter.conditions, statuses: filter.status ? [filter.status] : [],
  };
}

/** One page of top-level runs, sorted and filtered by the service, then the page's latest metric
 * values and child counts (two calls for the whole page, whatever its size). */
async function loadPage(workspace: string, experiment: string, sort: Sort, filter: Filter, cursor: string | null): Promise<Table> {
  const page = await searchRunsPage(workspace, { ...query(experiment, sort, filter), top_level_only: true }, cursor, PAGE_SIZE);
  const ids = page.items.map((run) => run.run_id);
  const [latest, counts] = await Promise.all([latestMetrics(ids), childCounts(workspace, ids)]);
  const names = new Set<string>();
  for (const values of Object.values(latest)) for (const name of Object.keys(values)) names.add(name);
  return { runs: page.items, next: page.next_cursor, latest, counts, metricNames: [...names].sort() };
}

/** A parent's children, in the table's order (fetched when the parent is unfolded). */
async function loadChildren(workspace: string, parent: string, sort: Sort): Promise<{ runs: Run[]; latest: Latest }> {
  const runs = await searchRuns(workspace, { parent_run_id: parent, order_by_metric: sort.metric, descending: sort.descending });
  return { runs, latest: await latestMetrics(runs.map((run) => run.run_id)) };
}

/** "acc > 0.5 and loss <= 1" as metric conditions; a string says what could not be read. */
export function parseConditions(text: string): MetricCondition[] | string {
  const conditions: MetricCondition[] = [];
  for (const part of text.split(/\s+and\s+|,/i).map((one) => one.trim()).filter(Boolean)) {
    const op = OPS.find((candidate) => part.includes(candidate));
    const [metric, value] = op ? part.split(op, 2).map((one) => one.trim()) : [];
    if (!op || !metric || value === undefined || value === "" || Number.isNaN(Number(value))) {
      return `Cannot read "${part}": write metric op number, e.g. acc > 0.5`;
    }
    conditions.push({ metric, op, value: Number(value) });
  }
  return conditions;
}

function ChildRows({ workspace, parent, sort, row }: {
  workspace: string; parent: string; sort: Sort; row: (run: Run, latest: Latest) => ReactNode;
}) {
  const children = useData(() => loadChildren(workspace, parent, sort), [workspace, parent, sort.metric, sort.descending]);
  if (children.error) return <tr><td colSpan={8} className="aml-error">{children.error.message}</td></tr>;
  if (!children.data) return <tr><td colSpan={8} className="aml-muted">Loading child runs…</td></tr>;
  const { runs, latest } = children.data;
  return <>{runs.map((run) => row(run, latest))}</>;
}

export function RunsPage({ workspace, experiment }: { workspace: string; experiment: string }) {
  const [sort, setSort] = useState<Sort>({ metric: null, descending: true });
  const [filter, setFilter] = useState<Filter>({ conditions: [], status: "" });
  const [filterText, setFilterText] = useState("");
  const [filterError, setFilterError] = useState<string | null>(null);
  const [cursors, setCursors] = useState<(string | null)[]>([null]); // the cursor of each page up to this one
  const [chosen, setChosen] = useState<string | null>(null);
  const [open, setOpen] = useState<Set<string>>(new Set());
  const [selected, setSelected] = useState<string[]>([]);
  const cursor = cursors[cursors.length - 1];
  const table = useData(() => loadPage(workspace, experiment, sort, filter, cursor),
    [workspace, experiment, sort.metric, sort.descending, JSON.stringify(filter), cursor]);

  const flip = <T,>(items: Set<T>, item: T) => {
    const next = new Set(items);
    if (next.has(item)) next.delete(item);
    else next.add(item);
    return next;
  };
  const reorder = (next: Sort) => { setSort(next); setCursors([null]); };
  const applyFilter = (event: FormEvent) => {
    event.preventDefault();
    const conditions = parseConditions(filterText);
    if (typeof conditions === "string") return setFilterError(conditions);
    setFilterError(null);
    setFilter({ ...filter, conditions });
    setCursors([null]);
  };

  return (
    <>
      <div className="aml-crumbs">
        <Link to={{ page: "workspaces" }}>Workspaces</Link>
        <Link to={{ page: "experiments", workspace }}>{workspace}</Link>
        <span>{experiment}</span>
      </div>
      <h1>Runs of {experiment}</h1>
      <form className="aml-toolbar" onSubmit={applyFilter} data-testid="runs-filter">
        <input value={filterText} onChange={(event) => setFilterText(event.target.value)} size={32}
          placeholder="acc > 0.5 and loss < 1" aria-label="metric filter" />{" "}
        <select value={filter.status} aria-label="status"
          onChange={(event) => { setFilter({ ...filter, status: event.target.value as RunStatus | "" }); setCursors([null]); }}>
          <option value="">any status</option>
          {STATUSES.map((status) => <option key={status}>{status}</option>)}
        </select>{" "}
        <button className="aml-button" type="submit">Filter</button>{" "}
        {selected.length >= 2 ? (
          <Link to={{ page: "compare", workspace, runIds: selected }} testId="compare-link">Compare {selected.length} runs</Link>
        ) : (
          <span className="aml-muted">tick 2 or more runs to compare them</span>
        )}
        {filterError && <p className="aml-error" role="alert">{filterError}</p>}
      </form>
      {/* aria-busy while a page loads: the previous rows stay on screen until then */}
      <div data-testid="runs-view" aria-busy={table.loading}>
      <Show loaded={table}>
        {({ runs, next, latest, counts, metricNames }) => {
          const metric = chosen && metricNames.includes(chosen) ? chosen : sort.metric ?? metricNames[0] ?? null;
          const row = (run: Run, values: Latest, childCount: number, isChild: boolean) => (
            <tr key={run.run_id} className={isChild ? "aml-child" : ""} data-run-id={run.run_id} data-testid="run-row">
              <td>
                <input type="checkbox" aria-label={`select ${runName(run)}`} data-testid="select-run"
                  checked={selected.includes(run.run_id)}
                  onChange={() => setSelected(selected.includes(run.run_id)
                    ? selected.filter((id) => id !== run.run_id) : [...selected, run.run_id])} />{" "}
                {childCount > 0 ? (
                  <button className="aml-fold" aria-label="children" aria-expanded={open.has(run.run_id)}
                    onClick={() => setOpen(flip(open, run.run_id))}>
                    {open.has(run.run_id) ? "▾" : "▸"}
                  </button>
                ) : (
                  !isChild && <span className="aml-fold" />
                )}
                <Link to={{ page: "run", workspace, runId: run.run_id }}>{runName(run)}</Link>
                {childCount > 0 && <span className="aml-muted" data-testid="child-count"> ({childCount} child runs)</span>}
              </td>
              <td><Status status={run.status} /></td>
              <td className="num">{duration(run)}</td>
              <td>{run.submitted_by}</td>
              <td>{formatTime(run.created_at)}</td>
              {metric && <td className="num" data-metric={metric}>{formatNumber(values[run.run_id]?.[metric])}</td>}
            </tr>
          );
          const page = cursors.length;
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
                <p className="aml-muted">{page === 1 ? "No run matches." : "No more runs."}</p>
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
                            onClick={() => reorder({ metric, descending: sort.metric === metric ? !sort.descending : true })}
                          >
                            {metric} {sort.metric === metric ? (sort.descending ? "↓" : "↑") : "↕"}
                          </button>
                        </th>
                      )}
                    </tr>
                  </thead>
                  <tbody>
                    {runs.flatMap((run) => [
                      row(run, latest, counts[run.run_id] ?? 0, false),
                      ...(open.has(run.run_id) && (counts[run.run_id] ?? 0) > 0
                        ? [<ChildRows key={`${run.run_id}-children`} workspace={workspace} parent={run.run_id} sort={sort}
                            row={(child, values) => row(child, values, 0, true)} />]
                        : []),
                    ])}
                  </tbody>
                </table>
              )}
              <p className="aml-pager">
                <button className="aml-button" data-testid="page-prev" disabled={page === 1}
                  onClick={() => setCursors(cursors.slice(0, -1))}>‹ Previous</button>{" "}
                <span data-testid="page-number">Page {page}</span>{" "}
                <span className="aml-muted">({PAGE_SIZE} top-level runs a page)</span>{" "}
                <button className="aml-button" data-testid="page-next" disabled={!next}
                  onClick={() => next && setCursors([...cursors, next])}>Next ›</button>
              </p>
            </>
          );
        }}
      </Show>
      </div>
    </>
  );
}
