import type { ReactNode } from "react";
import type { Loaded } from "./useData";
import type { RunStatus } from "./api";
import { href, type Route } from "./router";

export function Link({ to, children, testId }: { to: Route; children: ReactNode; testId?: string }) {
  return (
    <a href={href(to)} data-testid={testId}>
      {children}
    </a>
  );
}

export function Status({ status }: { status: RunStatus }) {
  return <span className={`aml-status ${status}`}>{status}</span>;
}

/** The data, or a loading line, or the error the service answered. */
export function Show<T>({ loaded, children }: { loaded: Loaded<T>; children: (data: T) => ReactNode }) {
  if (loaded.error) return <p className="aml-error" role="alert">{loaded.error.message}</p>;
  if (loaded.data === undefined) return <p className="aml-muted">Loading…</p>;
  return <>{children(loaded.data)}</>;
}

export function Chips({ values }: { values: Record<string, string> }) {
  const entries = Object.entries(values);
  if (entries.length === 0) return <span className="aml-muted">none</span>;
  return (
    <>
      {entries.map(([key, value]) => (
        <span className="aml-chip" key={key}>
          {value ? `${key}: ${value}` : key}
        </span>
      ))}
    </>
  );
}

type Tab = "experiments" | "models" | "images" | "deployments" | "activities";
const TABS: [Tab, string][] = [
  ["experiments", "Experiments"], ["models", "Models"], ["images", "Images"], ["deployments", "Deployments"],
  ["activities", "Activities"],
];

export function WorkspaceTabs({ workspace, active }: { workspace: string; active: Tab }) {
  return (
    <nav className="aml-tabs">
      {TABS.map(([page, label]) => (
        <a key={page} className={active === page ? "active" : ""} href={href({ page, workspace })}>{label}</a>
      ))}
    </nav>
  );
}
