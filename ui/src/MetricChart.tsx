import { useEffect, useMemo, useRef } from "react";
import uPlot from "uplot";

type ChartProps = { name: string; steps: number[]; values: (number | null)[] };
type Line = { label: string; steps: number[]; values: (number | null)[]; colour?: number };

// One colour per run on a compare chart (the first is the single-series charts' blue).
export const COLOURS = ["#017cee", "#e5534b", "#38a169", "#d69e2e", "#805ad5", "#dd6b20", "#319795", "#d53f8c"];

/** A line chart of one scalar metric over steps (uPlot: a canvas, fast on long series). The
 * container carries the point count (data-points) and the instance (element.uplot) for tests.
 * ``total``: the points logged, when the service sent fewer (downsampled): the chart says so. */
export function MetricChart({ total, ...props }: ChartProps & { total?: number }) {
  const lines = useOne(props);
  const shown = props.steps.length;
  const note = total !== undefined && total > shown
    ? `${shown.toLocaleString("en-US")} of ${total.toLocaleString("en-US")} points` : undefined;
  return (
    <LineChart name={props.name} lines={lines} time={false} testId="metric-chart" note={note} />
  );
}

/** One series over time: ``steps`` are seconds since the epoch (a deployment's telemetry). */
export function TimeChart(props: ChartProps) {
  return <LineChart name={props.name} lines={useOne(props)} time testId="telemetry-chart" />;
}

/** One metric of several runs overlaid: one series per run, on the union of their steps (a run
 * without a value at a step has a gap there, which uPlot draws across). */
export function CompareChart({ name, lines }: { name: string; lines: Line[] }) {
  return <LineChart name={name} lines={lines} time={false} testId="compare-chart" />;
}

/** The one series of a single-metric chart, kept while its arrays are (the chart redraws on a new one). */
function useOne({ name, steps, values }: ChartProps): Line[] {
  return useMemo(() => [{ label: name, steps, values }], [name, steps, values]);
}

function aligned(lines: Line[]): uPlot.AlignedData {
  if (lines.length === 1) return [lines[0].steps, lines[0].values];
  return uPlot.join(lines.map((line) => [line.steps, line.values] as uPlot.AlignedData));
}

function LineChart({ name, lines, time, testId, note }: {
  name: string; lines: Line[]; time: boolean; testId: string; note?: string;
}) {
  const box = useRef<HTMLDivElement>(null);
  useEffect(() => {
    const element = box.current;
    if (!element) return;
    const ink = getComputedStyle(element).color; // the canvas cannot read CSS variables: follow the theme's text colour
    const axis = { stroke: ink, grid: { stroke: "rgba(128,128,128,0.2)" }, ticks: { stroke: "rgba(128,128,128,0.3)" } };
    const chart = new uPlot(
      {
        width: time ? 360 : 420,
        height: time ? 180 : 220,
        scales: { x: { time } },
        axes: [time ? axis : { ...axis, label: "step" }, axis],
        series: [
          time ? {} : { label: "step" },
          ...lines.map((line, index) => ({
            label: line.label, stroke: COLOURS[(line.colour ?? index) % COLOURS.length], width: 1.5, spanGaps: lines.length > 1,
            points: { show: line.steps.length <= 100 },
          })),
        ],
        legend: { show: true },
      },
      aligned(lines),
      element,
    );
    (element as HTMLDivElement & { uplot?: uPlot }).uplot = chart;
    return () => chart.destroy();
  }, [name, lines, time]);
  const points = lines.map((line) => line.steps.length).join(",");
  return (
    <div className="aml-chart" data-testid={testId} data-metric={name} data-points={points}>
      <h3>
        {name}
        {note && <span className="aml-muted" data-testid="downsampled"> · {note}</span>}
      </h3>
      <div ref={box} />
    </div>
  );
}
