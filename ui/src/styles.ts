// The UI's whole stylesheet, injected once by main.tsx: the bundle is one JS file, which is all
// Airflow's react_apps loader fetches. Dark mode follows Airflow's (the `dark` class Chakra puts
// on <html>) and, standalone, the browser's preference.
import uplotCss from "uplot/dist/uPlot.min.css?inline";

const css = `
.aml-ui { --bg: #ffffff; --fg: #1a202c; --muted: #718096; --line: #e2e8f0; --head: #f7fafc; --accent: #017cee;
  --ok: #38a169; --bad: #e53e3e; --run: #3182ce; --wait: #a0aec0;
  font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg); background: var(--bg);
  padding: 16px 20px; min-height: 100%; box-sizing: border-box; }
html.dark .aml-ui, .aml-ui.aml-dark { --bg: #1a202c; --fg: #e2e8f0; --muted: #a0aec0; --line: #2d3748; --head: #232b3a; }
@media (prefers-color-scheme: dark) { body.aml-standalone .aml-ui { --bg: #1a202c; --fg: #e2e8f0; --muted: #a0aec0;
  --line: #2d3748; --head: #232b3a; } }
body.aml-standalone { margin: 0; }
.aml-ui a { color: var(--accent); text-decoration: none; } .aml-ui a:hover { text-decoration: underline; }
.aml-ui h1 { font-size: 20px; margin: 4px 0 12px; } .aml-ui h2 { font-size: 16px; margin: 20px 0 8px; }
.aml-crumbs { color: var(--muted); margin-bottom: 8px; } .aml-crumbs > * + *::before { content: " / "; color: var(--muted); display: inline-block; white-space: pre; }
.aml-tabs { display: flex; gap: 16px; border-bottom: 1px solid var(--line); margin-bottom: 12px; }
.aml-tabs a { padding: 6px 2px; } .aml-tabs a.active { border-bottom: 2px solid var(--accent); font-weight: 600; }
.aml-table { border-collapse: collapse; width: 100%; } .aml-table th, .aml-table td { text-align: left; padding: 6px 10px;
  border-bottom: 1px solid var(--line); vertical-align: top; } .aml-table th { background: var(--head); font-weight: 600; white-space: nowrap; }
.aml-table th button { all: unset; cursor: pointer; } .aml-table tr.aml-child td:first-child { padding-left: 52px; }
.aml-table td.num { font-variant-numeric: tabular-nums; }
.aml-fold { all: unset; cursor: pointer; width: 1.2em; display: inline-block; color: var(--muted); }
.aml-status { display: inline-block; padding: 0 8px; border-radius: 10px; color: #fff; font-size: 12px; background: var(--wait); }
.aml-status.Completed { background: var(--ok); } .aml-status.Failed { background: var(--bad); }
.aml-status.Running, .aml-status.Preparing, .aml-status.Finalizing { background: var(--run); }
.aml-kv { display: grid; grid-template-columns: max-content 1fr; gap: 4px 16px; } .aml-kv dt { color: var(--muted); } .aml-kv dd { margin: 0; }
.aml-chip { display: inline-block; border: 1px solid var(--line); border-radius: 4px; padding: 0 6px; margin: 0 4px 4px 0; font-size: 12px; }
.aml-charts { display: flex; flex-wrap: wrap; gap: 16px; } .aml-chart { border: 1px solid var(--line); border-radius: 6px; padding: 8px; }
.aml-chart h3 { font-size: 13px; margin: 0 0 4px; }
.aml-chart .u-legend, .aml-chart .u-axis { color: var(--fg); }
.aml-log { background: #11151c; color: #d6deeb; padding: 10px; border-radius: 6px; max-height: 420px; overflow: auto;
  font: 12px/1.4 ui-monospace, Menlo, Consolas, monospace; white-space: pre-wrap; }
.aml-log .stderr { color: #ff8f8f; }
.aml-error { color: var(--bad); } .aml-muted { color: var(--muted); }
.aml-ui select, .aml-ui input { font: inherit; color: var(--fg); background: var(--bg); border: 1px solid var(--line); border-radius: 4px; padding: 3px 6px; }
.aml-ui button.aml-button { font: inherit; border: 1px solid var(--accent); background: var(--accent); color: #fff; border-radius: 4px; padding: 3px 10px; cursor: pointer; }
.aml-link-button { all: unset; cursor: pointer; color: var(--accent); } .aml-link-button:hover { text-decoration: underline; }
.aml-tree { list-style: none; margin: 0; padding-left: 18px; } .aml-tree li { padding: 2px 0; }
.aml-ui button.aml-button:disabled { opacity: 0.45; cursor: default; }
.aml-toolbar { margin: 0 0 10px; } .aml-pager { margin-top: 10px; }
.aml-table tr.aml-diff td, .aml-table tr.aml-diff th { background: rgba(214, 158, 46, 0.18); }
.aml-swatch { display: inline-block; width: 10px; height: 10px; border-radius: 2px; margin-right: 4px; }
`;

export function injectStyles(): void {
  if (document.getElementById("airflow-aml-styles")) return;
  const style = document.createElement("style");
  style.id = "airflow-aml-styles";
  style.textContent = uplotCss + css;
  document.head.appendChild(style);
}
