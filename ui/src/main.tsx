// The entry of the bundle. Standalone (/ui/index.html has #aml-root) it renders at once. Inside
// Airflow, the react_apps loader import()s this module and renders globalThis.AirflowPlugin with
// the host's React; that component only hosts a <div>, into which this bundle's own React renders
// the app, so the two React copies never share hooks.
import { createRoot, type Root } from "react-dom/client";
import { App } from "./App";
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

const standalone = document.getElementById("aml-root");
if (standalone) {
  injectStyles();
  createRoot(standalone).render(<App embedded={false} />);
}

export default AirflowPlugin;
