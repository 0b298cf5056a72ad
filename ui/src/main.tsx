// The entry of the bundle. Standalone (/ui/index.html has #aml-root) it renders at once. Inside
// Airflow, the react_apps loader import()s this module and renders globalThis.AirflowPlugin with
// the host's React; that component only hosts a <div>, into which this bundle's own React renders
// the app, so the two React copies never share hooks.
import { createRoot, type Root } from "react-dom/client";
import { App } from "./App";
import { TaskObjects, type TaskIds } from "./pages/TaskObjects";
import { injectStyles } from "./styles";

type HostReact = {
  createElement: (type: string, props: Record<string, unknown>) => unknown;
  useRef: <T>(initial: T) => { current: T };
  useEffect: (effect: () => void | (() => void), deps: unknown[]) => void;
};

function AirflowPlugin(): unknown {
  const React = (globalThis as unknown as { React: HostReact }).React;
  const box = React.useRef<HTMLDivElement | null>(null);
  React.useEffect(() => {
    if (!box.current) return;
    injectStyles();
    const root: Root = createRoot(box.current);
    root.render(<App embedded />);
    return () => root.unmount();
  }, []);
  return React.createElement("div", { ref: box, "data-testid": "aml-plugin" });
}

(globalThis as Record<string, unknown>).AirflowPlugin = AirflowPlugin;

// The "ML objects" tab of the task instance and DAG run pages (plugin.py's objects_apps). Airflow
// finds a loaded app's component under globalThis[<app name>] before it import()s the bundle; the
// bundle runs once per page load, so it registers this second component under its name itself
// (globalThis.AirflowPlugin is the nav app's). Airflow gives it the page's ids as props.
function ObjectsPlugin(ids: TaskIds): unknown {
  const React = (globalThis as unknown as { React: HostReact }).React;
  const box = React.useRef<HTMLDivElement | null>(null);
  const root = React.useRef<Root | null>(null);
  React.useEffect(() => {
    if (!box.current) return;
    injectStyles();
    root.current = createRoot(box.current);
    return () => {
      root.current?.unmount();
      root.current = null;
    };
  }, []);
  React.useEffect(() => {
    root.current?.render(
      <div className="aml-ui"><TaskObjects dagId={ids.dagId} runId={ids.runId} taskId={ids.taskId} mapIndex={ids.mapIndex} /></div>,
    );
  }, [ids.dagId, ids.runId, ids.taskId, ids.mapIndex]);
  return React.createElement("div", { ref: box, "data-testid": "aml-objects-plugin" });
}

(globalThis as Record<string, unknown>)["ML objects"] = ObjectsPlugin;

const standalone = document.getElementById("aml-root");
if (standalone) {
  injectStyles();
  createRoot(standalone).render(<App embedded={false} />);
}

export default AirflowPlugin;
