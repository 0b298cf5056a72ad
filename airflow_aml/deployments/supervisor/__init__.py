"""The supervisor of one deployment: ``python -m airflow_aml.deployments.supervisor --dir DIR``.

Started detached (own session) by the SDK, it outlives the Airflow task that deployed. It
serves the load-balancing front on the deployment's port, starts the replicas through the
target's ``ReplicaDriver``, and then loops every quarter second:

- ``desired.json`` changed to a newer generation -> apply it: a new image or new limits roll out
  (new replicas started and ready before the old ones are drained and stopped, so no request
  fails), a new replica count scales, a delete drains and stops everything;
- health: a replica that died is replaced; /ready is probed every 2 s; the deployment's state is
  Healthy when every replica is ready, Unhealthy otherwise (recorded in the workspace);
- autoscaling between min and max replicas by the front's requests in progress;
- telemetry: the front's request lines are summed into the deployment's runtime record every
  10 s, and sampled inputs/outputs are written to the workspace datastore (data collection).

It reports each create/update/delete on the activity named in ``desired.json``. SIGTERM stops the
replicas and leaves the deployment recorded Unhealthy; ``airflow-aml deployments restore`` (or
any update) starts a supervisor again.

One module per job:

- ``__main__``: the process (arguments, lock and pid files, event loop, signal handlers);
- ``core``: ``Supervisor``, its state, its loop and the applying of each desired state;
- ``rollout``: replicas started, rolled over, scaled, drained, reaped and stopped;
- ``health``: readiness probes, the health check, dead replicas replaced (crash-loop pacing);
- ``telemetry``: request lines summed into totals and percentiles, samples to the datastore;
- ``publishing``: every write to the metadata store, made from a thread;
- ``prestart``: a local create's replicas started before the rest is imported (cold start);
- ``server``: the front's socket, its HTTP server (``deployments.front_http``) and the event loop.

The parts are mixins of the one ``Supervisor`` class, not collaborator objects: they work on the
same state (the pool of backends, the replicas, the configuration, the template being served) and
call each other at every step (a rollout probes and reports, a health check starts and stops
replicas and records), so separate objects would each need most of the others, and the state
would be copied or reached through the supervisor anyway. As mixins, every method keeps its name
and its ``self``, so the split changes no behaviour. Each part states what it needs of its host in
a ``typing.Protocol`` (the type of its methods' ``self``), and none imports ``core``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow_aml.deployments.supervisor.core import Supervisor


def __getattr__(name: str) -> Any:
    # Imported on use: ``python -m`` imports this package first, and the process starts a create's
    # replicas (``prestart``) before it pays for the supervisor's machinery.
    if name == "Supervisor":
        from airflow_aml.deployments.supervisor.core import Supervisor

        return Supervisor
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["Supervisor"]
