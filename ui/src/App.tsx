import { useState, type FormEvent } from "react";
import { api, ApiError, storedToken, storeToken } from "./api";
import { Show } from "./components";
import { ActivitiesPage } from "./pages/Activities";
import { ComparePage } from "./pages/Compare";
import { DeploymentPage, DeploymentsPage } from "./pages/Deployments";
import { ExperimentsPage } from "./pages/Experiments";
import { ImagesPage } from "./pages/Images";
import { ModelVersionPage } from "./pages/ModelVersion";
import { ModelsPage } from "./pages/Models";
import { RunPage } from "./pages/RunPage";
import { RunsPage } from "./pages/Runs";
import { WorkspacesPage } from "./pages/Workspaces";
import { setPrincipal } from "./principal";
import { useRoute } from "./router";
import { useData } from "./useData";

type WhoAmI = { principal: string; kind: string };

/** The pages, once the service knows who the caller is. Standalone, a caller without a valid
 * token is asked for a personal access token (`airflow-aml token create`); inside Airflow the
 * signed-in user's cookie already is the credential. */
export function App({ embedded }: { embedded: boolean }) {
  const [attempt, setAttempt] = useState(0);
  const me = useData(() => api<WhoAmI>("whoami"), [attempt]);
  const unauthenticated = me.error instanceof ApiError && me.error.status === 401;
  return (
    <div className="aml-ui">
      {unauthenticated ? (
        embedded ? (
          <p className="aml-error" role="alert">Airflow did not send your sign-in to the ML workspace: sign in again.</p>
        ) : (
          <TokenForm failed={storedToken() !== null} onToken={() => setAttempt(attempt + 1)} />
        )
      ) : (
        <Show loaded={me}>
          {(who) => (
            <>
              {setPrincipal(who.principal)}
              <div className="aml-muted" style={{ float: "right" }} data-testid="principal">
                {who.principal}
                {!embedded && (
                  <>
                    {" · "}
                    <a href="#/" onClick={() => { storeToken(null); setAttempt(attempt + 1); }}>forget token</a>
                  </>
                )}
              </div>
              <Page />
            </>
          )}
        </Show>
      )}
    </div>
  );
}

function Page() {
  const route = useRoute();
  switch (route.page) {
    case "workspaces":
      return <WorkspacesPage />;
    case "experiments":
      return <ExperimentsPage workspace={route.workspace} />;
    case "runs":
      return <RunsPage workspace={route.workspace} experiment={route.experiment} />;
    case "run":
      return <RunPage workspace={route.workspace} runId={route.runId} />;
    case "compare":
      return <ComparePage workspace={route.workspace} runIds={route.runIds} />;
    case "models":
      return <ModelsPage workspace={route.workspace} />;
    case "model":
      return <ModelVersionPage workspace={route.workspace} name={route.name} version={route.version} />;
    case "images":
      return <ImagesPage workspace={route.workspace} />;
    case "deployments":
      return <DeploymentsPage workspace={route.workspace} />;
    case "deployment":
      return <DeploymentPage workspace={route.workspace} name={route.name} />;
    case "activities":
      return <ActivitiesPage workspace={route.workspace} />;
  }
}

function TokenForm({ failed, onToken }: { failed: boolean; onToken: () => void }) {
  const [token, setToken] = useState("");
  const submit = (event: FormEvent) => {
    event.preventDefault();
    storeToken(token.trim());
    onToken();
  };
  return (
    <form onSubmit={submit} data-testid="token-form">
      <h1>ML workspace</h1>
      <p>
        Paste a personal access token of the workspace service (<code>airflow-aml token create</code>). It is kept in
        this browser tab only.
      </p>
      {failed && <p className="aml-error" role="alert">The service refused that token.</p>}
      <input type="password" size={60} value={token} onChange={(event) => setToken(event.target.value)} aria-label="token" autoFocus />{" "}
      <button className="aml-button" type="submit">Open</button>
    </form>
  );
}
