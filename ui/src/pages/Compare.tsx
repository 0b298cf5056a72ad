import { api, enc, latestMetrics, metricSeries, type Run, type Series } from "../api";
import { Link, Show, Status } from "../components";
import { CompareChart, COLOURS } from "../MetricChart";
import { formatNumber, runName } from "../format";
import { useData } from "../useData";

// Per run and metric: the compare charts are drawn from downsampled series, as the run page's are.
const CHART_POINTS = 1000;

type Compared = { runs: Run[]; series: Series[][]; latest: Record<string, Record<string, number>> };

async function loadCompare(runIds: string[]): Promise<Compared> {
  const [runs, series, latest] = await Promise.all([
    Promise.all(runIds.map((runId) => api<Run>(`runs/${enc(runId)}`))),
    Promise.all(runIds.map((runId) => metricSeries(runId, CHART_POINTS))),
    latestMetrics(runIds),
  ]);
  return { runs, series, latest };
}

/** A row of the table: one value per run, marked when the runs do not all agree. */
function ValueRow({ label, kind, values }: { label: string; kind: string; values: string[] }) {
  const differs = new Set(values).size > 1;
  return (
    <tr className={differs ? "aml-diff" : ""} data-testid="compare-row" data-key={`${kind}:${label}`}
      data-differs={differs ? "true" : "false"}>
      <th>{label} <span className="aml-muted">({kind})</span></th>
      {values.map((value, index) => <td key={index} className={kind === "metric" ? "num" : ""}>{value}</td>)}
    </tr>
  );
}

export function ComparePage({ workspace, runIds }: { workspace: string; runIds: string[] }) {
  const compared = useData(() => loadCompare(runIds), [runIds.join(",")]);
  return (
    <>
      <div className="aml-crumbs">
        <Link to={{ page: "workspaces" }}>Workspaces</Link>
        <Link to={{ page: "experiments", workspace }}>{workspace}</Link>
        <span>compare {runIds.length} runs</span>
      </div>
      <h1>Compare {runIds.length} runs</h1>
      {runIds.length < 2 ? (
        <p className="aml-muted">Pick two or more runs in a runs table to compare them.</p>
      ) : (
        <Show loaded={compared}>
          {({ runs, series, latest }) => {
            const metricNames = [...new Set(series.flatMap((one) => one.map((s) => s.name)))].sort();
            const paramNames = [...new Set(runs.flatMap((run) => Object.keys(run.params)))].sort();
            return (
              <>
                <h2>Metrics</h2>
                {metricNames.length === 0 ? (
                  <p className="aml-muted">None of these runs logged a metric.</p>
                ) : (
                  <div className="aml-charts" data-testid="compare-charts">
                    {metricNames.map((name) => (
                      <CompareChart key={name} name={name} lines={runs.flatMap((run, index) => {
                        const one = series[index].find((s) => s.name === name);
                        return one ? [{ label: runName(run), steps: one.steps, values: one.values, colour: index }] : [];
                      })} />
                    ))}
                  </div>
                )}
                <h2>Params and latest metrics</h2>
                <table className="aml-table" data-testid="compare-table">
                  <thead>
                    <tr>
                      <th />
                      {runs.map((run, index) => (
                        <th key={run.run_id} data-run-id={run.run_id}>
                          <span className="aml-swatch" style={{ background: COLOURS[index % COLOURS.length] }} />
                          <Link to={{ page: "run", workspace, runId: run.run_id }}>{runName(run)}</Link>{" "}
                          <Status status={run.status} />
                        </th>
                      ))}
                    </tr>
                  </thead>
                  <tbody>
                    {paramNames.map((name) => (
                      <ValueRow key={`p:${name}`} label={name} kind="param" values={runs.map((run) => run.params[name] ?? "—")} />
                    ))}
                    {metricNames.map((name) => (
                      <ValueRow key={`m:${name}`} label={name} kind="metric"
                        values={runs.map((run) => formatNumber(latest[run.run_id]?.[name]))} />
                    ))}
                  </tbody>
                </table>
              </>
            );
          }}
        </Show>
      )}
    </>
  );
}
