import { useEffect, useRef } from "react";
import uPlot from "uplot";

type ChartProps = { name: string; steps: number[]; values: (number | null)[] };

/** A line chart of one scalar metric over steps (uPlot: a canvas, fast on long series). The
 * container carries the point count (data-points) and the instance (element.uplot) for tests. */
export function MetricChart(props: ChartProps) {
  return <LineChart {...props} time={false} testId="metric-chart" />;
}

/** One series over time: ``steps`` are seconds since the epoch (a deployment's telemetry). */
export function TimeChart(props: ChartProps) {
  return <LineChart {...props} time testId="telemetry-chart" />;
}

function LineChart({ name, steps, values, time, testId }: ChartProps & { time: boolean; testId: string }) {
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
        series: [time ? {} : { label: "step" }, { label: name, stroke: "#017cee", width: 1.5, points: { show: steps.length <= 100 } }],
        legend: { show: true },
      },
      [steps, values],
      element,
    );
    (element as HTMLDivElement & { uplot?: uPlot }).uplot = chart;
    return () => chart.destroy();
  }, [name, steps, values, time]);
  return (
    <div className="aml-chart" data-testid={testId} data-metric={name} data-points={steps.length}>
      <h3>{name}</h3>
      <div ref={box} />
    </div>
  );
}
