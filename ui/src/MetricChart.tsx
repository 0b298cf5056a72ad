import { useEffect, useRef } from "react";
import uPlot from "uplot";

/** A line chart of one scalar metric over steps (uPlot: a canvas, fast on long series). The
 * container carries the point count (data-points) and the instance (element.uplot) for tests. */
export function MetricChart({ name, steps, values }: { name: string; steps: number[]; values: (number | null)[] }) {
  const box = useRef<HTMLDivElement>(null);
  useEffect(() => {
    const element = box.current;
    if (!element) return;
    const ink = getComputedStyle(element).color; // the canvas cannot read CSS variables: follow the theme's text colour
    const axis = { stroke: ink, grid: { stroke: "rgba(128,128,128,0.2)" }, ticks: { stroke: "rgba(128,128,128,0.3)" } };
    const chart = new uPlot(
      {
        width: 420,
        height: 220,
        scales: { x: { time: false } },
        axes: [{ ...axis, label: "step" }, axis],
        series: [{ label: "step" }, { label: name, stroke: "#017cee", width: 1.5, points: { show: steps.length <= 100 } }],
        legend: { show: true },
      },
      [steps, values],
      element,
    );
    (element as HTMLDivElement & { uplot?: uPlot }).uplot = chart;
    return () => chart.destroy();
  }, [name, steps, values]);
  return (
    <div className="aml-chart" data-testid="metric-chart" data-metric={name} data-points={steps.length}>
      <h3>{name}</h3>
      <div ref={box} />
    </div>
  );
}
