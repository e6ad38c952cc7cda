"""Many world sessions across many GPU hosts: the world service as a Ray Serve deployment.

``yume world serve --cluster [CONFIG.json]`` (or :func:`serve_cluster`) runs the world service
(:mod:`world.service`) as the replicas of one Ray Serve deployment: a replica per GPU of the
Ray cluster (``num_gpus=1``, MVDT sessions on its GPU), or CPU replicas where the cluster has
no GPU. The plain service (``yume world serve``) stays the default for one lab machine; this is
for a cluster of GPU hosts.

Each replica is a whole :class:`~world.service.WorldService` (sessions, engine factory, frame
encoding, limits and errors are the plain service's) mounted as the replica's ASGI app, and a
session is one WebSocket through Serve's HTTP proxy at ``/ws``. Serve routes a connection to
one replica and keeps it there for the connection's life, so **a session is pinned to the
replica that holds its world state** by construction: every frame of a session comes from that
replica, and there is no session map to keep consistent. The protocol is the plain service's,
so :class:`~world.service_client.WorldClient` and ``--world remote://HOST:PORT`` (RemoteWorld)
connect to the cluster unchanged; every JSON reply (``opened``, ``stats``, ``error``) also
carries ``"replica"`` (the Serve replica id) and ``"host"`` (its machine), and every HTTP
answer an ``x-yume-replica`` header. ``GET /replica`` answers the identity, open sessions and
the deployment limits of whichever replica Serve picked.

A session is one ongoing request for as long as it is open, so Serve's limits are limits on
sessions: ``max_ongoing_requests`` is :attr:`ClusterConfig.sessions_per_replica` (a new session
is never routed to a full replica; when all are full it waits in Serve's queue, at most
:attr:`ClusterConfig.max_queued_sessions` of them), and the autoscaler keeps about
:attr:`ClusterConfig.target_sessions` sessions per replica between ``min_replicas`` and
``max_replicas``. A replica that is scaled down keeps its open sessions until they close or
:attr:`ClusterConfig.drain_timeout_s` passes (Serve's graceful shutdown): a person's world is
not cut off because the cluster shrank.

Ray is an optional dependency (``ray[serve]``); this module imports it only when a cluster is
started.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from world.protocol import WS_PATH, ServiceError, ws_url
from world.service import ServiceConfig, WorldService, check_bind

APP_NAME = "yume-world"
DEPLOYMENT_NAME = "WorldReplica"
REPLICA_HEADER = "x-yume-replica"
REPLICA_PATH = "/replica"


def ray_available() -> bool:
    """True if ``ray[serve]`` can be imported (the ``cluster`` extra is installed)."""
    try:
        import ray  # noqa: F401
        from ray import serve  # noqa: F401
    except ImportError:
        return False
    return True


def _import_serve():
    try:
        import ray
        from ray import serve
    except ImportError:
        raise ServiceError('The cluster service needs Ray Serve; install it with pip install '
                           '"ray[serve]==2.60.0", or run the plain yume world serve.') from None
    return ray, serve


# ---------------------------------------------------------------------------- configuration


@dataclass
class ClusterConfig:
    """Where the cluster service listens, what its replicas run and how it scales.

    Every field can come from a JSON file (:meth:`from_file`); the autoscaling limits are data,
    not code.

    Attributes
    ----------
    address : str or None
        Ray cluster to join (``"auto"``: the one ``ray start`` runs on this machine, or
        ``ray://HOST:10001``); None starts a local Ray cluster on this machine (and stops it
        with the service). On a joined cluster where Serve already runs, its proxies keep the
        address they were started with (Serve cannot move them).
    host, port : str, int
        Address of Serve's HTTP proxy (port 0: any free port). Any address other than loopback
        needs a token, as for the plain service.
    token : str or None
        Required from every client when set.
    engines : tuple of str
        Engines a session may open.
    checkpoint : str or None
        MVDT checkpoint folder; it must exist at this path on every host (default: the shipped
        one).
    gpus : "auto" or bool
        A GPU per replica (``num_gpus=1``, MVDT on ``cuda``) or CPU replicas; ``"auto"``: GPU
        replicas when the cluster has GPUs when the service starts.
    replica_cpus : float
        CPUs Ray reserves for each replica.
    torch_threads : int
        Torch CPU threads of each replica.
    sessions_per_replica : int
        Sessions a replica holds at once (Serve's ``max_ongoing_requests``).
    min_replicas, max_replicas, initial_replicas : int
        Autoscaling bounds; ``max_replicas`` None: one per GPU of the cluster (CPU replicas:
        ``min_replicas``); ``initial_replicas`` None: ``min_replicas``.
    target_sessions : float
        Sessions per replica the autoscaler aims at (Serve's ``target_ongoing_requests``).
    upscale_delay_s, downscale_delay_s : float
        How long the load must stay above or below the target before replicas are added or
        removed.
    look_back_s, metrics_interval_s : float
        The window the load is averaged over, and how often replicas report it.
    drain_timeout_s : float
        How long a replica being removed keeps its open sessions (Serve's graceful shutdown).
    max_queued_sessions : int
        New sessions waiting for a free replica when all are full (-1: no limit).
    max_side, max_upload_bytes, queue_frames, open_timeout
        Limits of each session, as in :class:`~world.service.ServiceConfig`.
    num_cpus, num_gpus : int or None
        CPUs and GPUs of a local Ray cluster (None: all of this machine's).
    temp_dir : str or None
        Ray's session folder of a local cluster (None: a new folder in the system's temporary
        folder, removed on stop).
    log_to_driver : bool
        Print the replicas' logs in this process.
    """

    address: str | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    token: str | None = None
    engines: tuple[str, ...] = ("sandbox", "mvdt")
    checkpoint: str | None = None
    gpus: str | bool = "auto"
    replica_cpus: float = 1.0
    torch_threads: int = 1
    sessions_per_replica: int = 2
    min_replicas: int = 1
    max_replicas: int | None = None
    initial_replicas: int | None = None
    target_sessions: float = 1.0
    upscale_delay_s: float = 10.0
    downscale_delay_s: float = 300.0
    look_back_s: float = 30.0
    metrics_interval_s: float = 10.0
    drain_timeout_s: float = 600.0
    max_queued_sessions: int = 16
    max_side: int = 1024
    max_upload_bytes: int = 8 * 1024 * 1024
    queue_frames: int = 2
    open_timeout: float = 10.0
    num_cpus: int | None = None
    num_gpus: int | None = None
    temp_dir: str | None = None
    log_to_driver: bool = True

    def __post_init__(self) -> None:
        check_bind(self.host, self.token)
        if self.checkpoint:  # replicas do not run in this folder: give them the full path
            self.checkpoint = str(Path(self.checkpoint).expanduser().absolute())
        self.engines = tuple(str(e).strip().lower() for e in self.engines)
        if self.gpus not in ("auto", True, False):
            raise ServiceError(f'gpus must be "auto", true or false, got {self.gpus!r}.')
        for name in ("look_back_s", "metrics_interval_s"):
            if not float(getattr(self, name)) > 0:
                raise ServiceError(f"{name} must be a positive number of seconds, got "
                                   f"{getattr(self, name)}.")
        for name in ("sessions_per_replica", "torch_threads"):
            if int(getattr(self, name)) < 1:
                raise ServiceError(f"{name} must be at least 1, got {getattr(self, name)}.")
        if int(self.min_replicas) < 0:
            raise ServiceError(f"min_replicas must be 0 or more, got {self.min_replicas}.")
        if self.max_replicas is not None and not 1 <= self.max_replicas:
            raise ServiceError(f"max_replicas must be at least 1, got {self.max_replicas}.")
        if self.max_replicas is not None and self.min_replicas > self.max_replicas:
            raise ServiceError(f"min_replicas {self.min_replicas} is above max_replicas "
                               f"{self.max_replicas}; lower min_replicas or raise max_replicas.")
        if not 0 < float(self.target_sessions) <= self.sessions_per_replica:
            raise ServiceError(f"target_sessions must lie in (0, sessions_per_replica="
                               f"{self.sessions_per_replica}], got {self.target_sessions}.")
        self.service_config("cpu")  # the per-session limits are checked like the plain service's

    @classmethod
    def from_dict(cls, data: dict[str, Any], **overrides) -> ClusterConfig:
        """A config from a dict (e.g. parsed JSON), with ``overrides`` on top.

        Raises
        ------
        ServiceError
            If a key is not a field of the config.
        """
        merged = {**data, **overrides}
        names = {f.name for f in fields(cls)}
        unknown = set(merged) - names
        if unknown:
            raise ServiceError(f"Unknown cluster setting(s) {', '.join(sorted(unknown))}; the "
                               f"settings are {', '.join(sorted(names))}.")
        if "engines" in merged:
            merged["engines"] = tuple(merged["engines"])
        return cls(**merged)

    @classmethod
    def from_file(cls, path: str | Path, **overrides) -> ClusterConfig:
        """A config from a JSON file of settings (see the attributes), ``overrides`` on top."""
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise ServiceError(f"Cannot read the cluster config {path} ({err}); give a JSON "
                               "file of settings.") from None
        if not isinstance(data, dict):
            raise ServiceError(f"The cluster config {path} must be a JSON object of settings.")
        return cls.from_dict(data, **overrides)

    def to_dict(self) -> dict[str, Any]:
        """The settings as JSON-ready data."""
        out = asdict(self)
        out["engines"] = list(self.engines)
        return out

    def service_config(self, device: str) -> ServiceConfig:
        """The :class:`~world.service.ServiceConfig` of one replica.

        The replica does not listen itself (Serve's proxy does), so its host is loopback; its
        session limit is the replica's share of sessions.
        """
        return ServiceConfig(
            host="127.0.0.1", port=0, token=self.token, engines=self.engines,
            checkpoint=Path(self.checkpoint) if self.checkpoint else None, device=device,
            torch_threads=self.torch_threads, max_sessions=self.sessions_per_replica,
            max_side=self.max_side, max_upload_bytes=self.max_upload_bytes,
            queue_frames=self.queue_frames, open_timeout=self.open_timeout)

    def deployment_options(self, cluster_gpus: float) -> dict[str, Any]:
        """Serve deployment options for a cluster with ``cluster_gpus`` GPUs.

        Returns
        -------
        dict
            ``ray_actor_options``, ``max_ongoing_requests``, ``max_queued_requests``,
            ``autoscaling_config`` and ``graceful_shutdown_timeout_s``.
        """
        gpu = bool(cluster_gpus) if self.gpus == "auto" else bool(self.gpus)
        if gpu and not cluster_gpus:
            raise ServiceError("gpus is true but the Ray cluster has no GPU; set gpus to "
                               '"auto" or false, or add GPU hosts.')
        actor: dict[str, Any] = {"num_cpus": float(self.replica_cpus)}
        if gpu:
            actor["num_gpus"] = 1
        high = self.max_replicas
        if high is None:
            high = max(int(cluster_gpus), 1) if gpu else max(self.min_replicas, 1)
        high = max(high, self.min_replicas)
        return {
            "name": DEPLOYMENT_NAME,
            "ray_actor_options": actor,
            "max_ongoing_requests": int(self.sessions_per_replica),
            "max_queued_requests": int(self.max_queued_sessions),
            "graceful_shutdown_timeout_s": float(self.drain_timeout_s),
            "autoscaling_config": {
                "min_replicas": int(self.min_replicas),
                "max_replicas": int(high),
                "initial_replicas": int(self.min_replicas if self.initial_replicas is None
                                        else self.initial_replicas),
                "target_ongoing_requests": float(self.target_sessions),
                "upscale_delay_s": float(self.upscale_delay_s),
                "downscale_delay_s": float(self.downscale_delay_s),
                "look_back_period_s": float(self.look_back_s),
                "metrics_interval_s": float(self.metrics_interval_s),
            },
        }


# ---------------------------------------------------------------------------- the replica


def _tag_json(text: str, tag: dict[str, Any]) -> str:
    """A JSON object reply with the replica's identity added (other text is left alone)."""
    try:
        data = json.loads(text)
    except ValueError:
        return text
    if not isinstance(data, dict):
        return text
    data.update(tag)
    return json.dumps(data)


class ReplicaTag:
    """ASGI middleware that names the replica in every JSON reply and HTTP answer.

    Binary frames pass untouched (no cost per frame); only the rare JSON text messages of a
    WebSocket are parsed.
    """

    def __init__(self, app, replica: str, host: str) -> None:
        self.app = app
        self.tag = {"replica": replica, "host": host}
        self._header = (REPLICA_HEADER.encode(), replica.encode())

    async def __call__(self, scope, receive, send) -> None:
        kind = scope.get("type")
        if kind not in ("websocket", "http"):
            await self.app(scope, receive, send)
            return

        async def tagged(message: dict) -> None:
            mtype = message.get("type")
            if mtype == "websocket.send" and message.get("text") is not None:
                message = dict(message, text=_tag_json(message["text"], self.tag))
            elif mtype == "http.response.start":
                message = dict(message, headers=[*message.get("headers", []), self._header])
            await send(message)

        await self.app(scope, receive, tagged)


class WorldReplica:
    """One replica of the cluster service: a plain world service, mounted as Serve's ASGI app.

    Parameters
    ----------
    config : dict
        :meth:`ClusterConfig.to_dict` of the service.
    gpu : bool
        Whether the replica holds a GPU (its MVDT sessions then run on ``cuda``, the GPU Ray
        assigned to it).
    """

    def __init__(self, config: dict[str, Any], gpu: bool = False) -> None:
        import ray
        from ray import serve

        cfg = ClusterConfig.from_dict(config)
        ctx = serve.get_replica_context()
        self.replica = ctx.replica_id.unique_id
        self.host = socket.gethostname()
        self.gpu_ids = [str(g) for g in ray.get_gpu_ids()] if gpu else []
        self.node = ray.get_runtime_context().get_node_id()
        self.service = WorldService(cfg.service_config("cuda" if gpu else "cpu"))
        self.service.app.add_api_route(REPLICA_PATH, self.describe, methods=["GET"])
        self._app = ReplicaTag(self.service.app, self.replica, self.host)

    @staticmethod
    def _limits(ctx) -> dict[str, Any]:
        dc = ctx._deployment_config  # what the controller applied to this replica
        auto = dc.autoscaling_config
        keys = ("min_replicas", "max_replicas", "initial_replicas", "target_ongoing_requests",
                "upscale_delay_s", "downscale_delay_s", "look_back_period_s",
                "metrics_interval_s")
        return {"max_ongoing_requests": dc.max_ongoing_requests,
                "max_queued_requests": dc.max_queued_requests,
                "graceful_shutdown_timeout_s": dc.graceful_shutdown_timeout_s,
                "autoscaling": None if auto is None else {k: getattr(auto, k) for k in keys}}

    async def describe(self) -> dict[str, Any]:
        """What ``GET /replica`` answers: identity, sessions and applied limits."""
        from ray import serve

        return {"replica": self.replica, "host": self.host, "node": self.node,
                "gpus": self.gpu_ids, "pid": os.getpid(),
                "sessions": len(self.service.sessions),
                "session_ids": sorted(self.service.sessions),
                **self._limits(serve.get_replica_context())}

    def __serve_build_asgi_app__(self):  # Serve asks for the app after __init__
        return self._app

    def __del__(self) -> None:  # Serve stops the replica: end its sessions, free the engines
        service = getattr(self, "service", None)
        if service is not None:
            service.stop()


# ---------------------------------------------------------------------------- the service


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.bind((host.strip("[]"), 0))
        return s.getsockname()[1]


def _proc_table() -> dict[int, tuple[int, str, str]]:
    """Live processes as ``pid -> (parent pid, start time, command line)`` (Linux /proc)."""
    table = {}
    root = Path("/proc")
    for entry in root.iterdir() if root.is_dir() else []:
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")
        except (OSError, IndexError):
            continue
        if stat[0] != "Z":  # a zombie has exited; only its parent's bookkeeping is left
            table[int(entry.name)] = (int(stat[1]), stat[19], cmd)
    return table


def _ray_descendants(root: int) -> dict[int, str]:
    """Ray's processes started under process ``root``: ``pid -> start time``.

    A local cluster's GCS and raylet are children of the process that started it and every
    worker (``ray::...``, whose command line Ray rewrites) a child of the raylet, so the tree,
    not a name, finds them; start times tell a reused process id apart.
    """
    table = _proc_table()
    children: dict[int, list[int]] = {}
    for pid, (ppid, _, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    found, todo = {}, list(children.get(root, []))
    while todo:
        pid = todo.pop()
        todo += children.get(pid, [])
        if "ray" in table[pid][2]:
            found[pid] = table[pid][1]
    return found


class ClusterService:
    """The cluster service: a Ray cluster (joined or local), Serve's proxy and the replicas.

    Parameters
    ----------
    config : ClusterConfig

    Examples
    --------
    >>> svc = ClusterService(ClusterConfig(port=0, num_cpus=2)).start()   # doctest: +SKIP
    >>> with WorldClient(svc.url) as client:                             # doctest: +SKIP
    ...     client.open(engine="sandbox", seed=3)["replica"]
    >>> svc.stop()                                                       # doctest: +SKIP
    """

    def __init__(self, config: ClusterConfig | None = None) -> None:
        self.config = config or ClusterConfig()
        self.port = int(self.config.port)
        self.options: dict[str, Any] = {}
        self.temp_dir: str | None = None
        self._own_ray = False
        self._own_temp = False
        self._started = False
        self._processes: dict[int, str] = {}  # the local cluster's, pid -> start time

    @property
    def url(self) -> str:
        """The WebSocket address of the sessions (``ws://host:port/ws``)."""
        return ws_url(self.config.host, self.port)

    @property
    def http_url(self) -> str:
        """The HTTP address of the proxy (``http://host:port``)."""
        return "http" + self.url[2:-len(WS_PATH)]

    def start(self) -> ClusterService:
        """Start (or join) Ray, start Serve's proxy and deploy the replicas.

        Returns once every initial replica runs and the proxy accepts connections.
        """
        ray, serve = _import_serve()
        cfg = self.config
        if not ray.is_initialized():
            if cfg.address is None:
                # A lab network is offline: no usage report to send at start-up.
                os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
                self._own_temp = cfg.temp_dir is None
                # Short path: Ray's Unix sockets live under it (108-byte limit).
                self.temp_dir = cfg.temp_dir or tempfile.mkdtemp(prefix="yume-ray-")
                ray.init(address="local", num_cpus=cfg.num_cpus, num_gpus=cfg.num_gpus,
                         include_dashboard=False,
                         _temp_dir=self.temp_dir, log_to_driver=cfg.log_to_driver,
                         logging_level="warning")
            else:
                ray.init(address=cfg.address, log_to_driver=cfg.log_to_driver,
                         logging_level="warning")
            self._own_ray = True
        if self.port == 0:
            self.port = _free_port(cfg.host)
        gpus = float(ray.cluster_resources().get("GPU", 0.0))
        self.options = cfg.deployment_options(gpus)
        gpu = "num_gpus" in self.options["ray_actor_options"]
        serve.start(http_options={"host": cfg.host.strip("[]"), "port": self.port},
                    logging_config={"log_level": "WARNING"})
        replica_cls = serve.deployment(serve.ingress()(WorldReplica), **self.options)
        self._started = True
        try:
            serve.run(replica_cls.bind(cfg.to_dict(), gpu), name=APP_NAME, route_prefix="/",
                      logging_config={"log_level": "WARNING"})
            self._wait_for_proxy(30.0)
            self.leftover_processes()  # note the local cluster's processes
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_for_proxy(self, timeout: float) -> None:
        import urllib.error
        import urllib.request

        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(self.http_url + REPLICA_PATH, timeout=5):
                    return
            except urllib.error.HTTPError:  # an HTTP answer: the proxy is up
                return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise ServiceError(f"Serve's proxy did not answer at {self.http_url} within "
                                   f"{timeout:g} s; see the Ray logs.")
            time.sleep(0.2)

    def replicas(self) -> dict[str, int]:
        """Replicas of the deployment by state (e.g. ``{"RUNNING": 2}``)."""
        _, serve = _import_serve()
        app = serve.status().applications.get(APP_NAME)
        if app is None:
            return {}
        dep = app.deployments.get(DEPLOYMENT_NAME)
        return {} if dep is None else {str(k): int(v) for k, v in dep.replica_states.items()}

    def status(self) -> dict[str, Any]:
        """Application state, replicas by state and the deployment options applied."""
        _, serve = _import_serve()
        app = serve.status().applications.get(APP_NAME)
        return {"application": None if app is None else str(app.status),
                "replicas": self.replicas(), "url": self.url, "options": self.options}

    def leftover_processes(self) -> list[int]:
        """Ids of the local Ray cluster's processes still alive (none after :meth:`stop`).

        Empty for a joined cluster: its processes are not this service's.
        """
        if not self._own_ray and not self._processes:
            return []
        if self._own_ray and self.config.address is None:
            self._processes.update(_ray_descendants(os.getpid()))
        table = _proc_table()
        return sorted(pid for pid, start in self._processes.items()
                      if pid in table and table[pid][1] == start)

    def stop(self) -> None:
        """Delete the deployment (its sessions end); stop a local Ray cluster this service
        started, or leave a joined one.

        Waits up to 15 s for the local cluster's processes to exit, then kills any of them
        still running.
        """
        if not self._started and not self._own_ray:
            return
        ray, serve = _import_serve()
        local = self._own_ray and self.config.address is None
        if local:
            self.leftover_processes()  # note every process of the cluster before it stops
        if ray.is_initialized():
            try:
                if local:
                    serve.shutdown()
                else:  # a shared cluster may serve other applications: remove only this one
                    serve.delete(APP_NAME)
            except Exception:  # Ray may already be gone; the cluster is being torn down
                pass
            if self._own_ray:
                ray.shutdown()  # a joined cluster: this process only disconnects
        self._started = self._own_ray = False
        deadline = time.monotonic() + 15.0
        while local and self.leftover_processes() and time.monotonic() < deadline:
            time.sleep(0.2)
        for pid in self.leftover_processes() if local else []:
            # Ray's shutdown normally ends them all; one that hangs on is this service's own
            # (same id, same start time), so it is ended rather than left running.
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        if self.temp_dir and self._own_temp:
            shutil.rmtree(self.temp_dir, ignore_errors=True)

    def serve_forever(self) -> None:
        """Block until Ctrl+C or SIGTERM, then stop."""
        done = threading.Event()
        previous = signal.signal(signal.SIGTERM, lambda *_: done.set())
        try:
            while not done.wait(1.0):
                pass
        except KeyboardInterrupt:
            pass
        finally:
            signal.signal(signal.SIGTERM, previous)
            self.stop()

    def __enter__(self) -> ClusterService:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def serve_cluster(config: ClusterConfig | None = None) -> ClusterService:
    """Start the cluster service (see :class:`ClusterService`) and return it, running."""
    return ClusterService(config).start()
