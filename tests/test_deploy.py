"""Deployments against a real local Prefect server: prefect.yaml on a process pool with a worker, `voicebatch
serve` keeping the engine warm, and two concurrent runs sharing one render lane."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT, rows
from engine.lane import device_lane, lane_file, queue_file
from prefect_server import server_env, start_server, stop, wait_final

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    home = tmp_path_factory.mktemp("prefect-server-home")
    from flows.local_server import send_pending_records

    proc, url = start_server(home)
    yield home, url
    send_pending_records()  # what this process's in-process runs logged goes out before its server stops
    stop(proc)


@pytest.fixture(scope="module")
def api_client(server):
    from prefect.client.orchestration import SyncPrefectClient

    with SyncPrefectClient(server[1]) as client:
        yield client


def _long_manifest(folder: Path, lines: int = 60) -> Path:
    words = ["harbour", "lantern", "tide", "gull", "rope", "keeper", "fog", "stone"]
    body = "\n".join(f"      - {{speaker: Ava, text: \"Line {i}: the {words[i % 8]} and the {words[(i * 3) % 8]} "
                     f"were there at dusk.\"}}" for i in range(lines))
    path = folder / "long.yaml"
    path.write_text(f"title: Lane Drill\ndefaults: {{seed: 5}}\nvoices:\n  Ava: ava\nchapters:\n  - title: One\n"
                    f"    lines:\n{body}\n")
    return path


def _wait_for_lane_waiters(lane_dir: Path, device: str, count: int, timeout: float = 240) -> None:
    """Until `count` processes are blocked waiting for the device's lane: on its lock file, or in the queue for
    their turn (Linux: /proc/locks lists blocked requests with ->)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        inodes = {f":{path.stat().st_ino} " for path in (lane_file(lane_dir, device), queue_file(lane_dir, device))}
        waiting = [line for line in Path("/proc/locks").read_text().splitlines()
                   if "->" in line and any(inode in line for inode in inodes)]
        if len(waiting) >= count:
            return
        time.sleep(0.2)
    raise TimeoutError(f"{count} processes not waiting for the {device} lane in {lane_dir} after {timeout} s")


def _intervals(db: Path, table: str, start: str, end: str) -> list[tuple]:
    return [(r["s"], r["e"]) for r in rows(str(db), f"SELECT DISTINCT {start} AS s, {end} AS e FROM {table} "
                                                  f"WHERE {start} IS NOT NULL ORDER BY s")]


def _overlap(a: list[tuple], b: list[tuple]) -> bool:
    return any(s1 < e2 and s2 < e1 for s1, e1 in a for s2, e2 in b)


def _hand_offs(renders: list[list[tuple]]) -> int:
    """How often the device passed from one run to the other, engine call by engine call."""
    order = [run for _, run in sorted((start, run) for run, spans in enumerate(renders) for start, _ in spans)]
    return sum(a != b for a, b in zip(order, order[1:]))


def test_two_concurrent_runs_take_turns_on_the_lane_and_normalise_together(server, tmp_path):
    home, url = server
    manifest = _long_manifest(tmp_path)
    # One lane on the device (as on a GPU): a CPU engine would otherwise get a lane per core. No ffmpeg on the
    # PATH: encoding MP3/M4B files adds nothing here but minutes on a busy machine.
    env = {**server_env(home, url), "VOICEBATCH_LANE_DIR": str(tmp_path / "lanes"), "VOICEBATCH_BATCH_SIZE": "2",
           "VOICEBATCH_CPU_LANES": "1", "PATH": str(BIN)}
    # The test holds the device's lane until both runs wait for it, so their renders compete for real.
    with device_lane("cpu", tmp_path / "lanes"):
        procs = [subprocess.Popen([str(BIN / "voicebatch"), "render", str(manifest), "--out", str(tmp_path / f"out{i}")],
                                  cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for i in range(2)]
        _wait_for_lane_waiters(tmp_path / "lanes", "cpu", 2)
    for p in procs:
        out, err = p.communicate(timeout=400)
        assert p.returncode == 0, err[-3000:]
    dbs = [tmp_path / f"out{i}" / "provenance.duckdb" for i in range(2)]
    renders = [_intervals(db, "renders", "render_started_at", "render_ended_at") for db in dbs]
    normalised = [_intervals(db, "take_levels", "normalise_started_at", "normalise_ended_at") for db in dbs]
    assert all(len(r) == 30 for r in renders) and all(len(n) == 60 for n in normalised)  # 60 lines, batches of 2
    # No engine call of one run overlapped an engine call of the other on the shared device...
    assert not _overlap(renders[0], renders[1])
    # ...the runs took turns on it rather than one waiting for all of the other's renders (strict turns make
    # 59 hand-offs; one run rendering everything first would make 1)...
    assert _hand_offs(renders) >= 20, _hand_offs(renders)
    # ...and off the lane, the two runs normalised takes at the same time.
    assert _overlap(normalised[0], normalised[1])


def test_server_that_is_down_is_a_clear_error(tmp_path):
    env = {**os.environ, "PREFECT_API_URL": "http://127.0.0.1:9/api"}
    result = subprocess.run([str(BIN / "voicebatch"), "render", "manifests/demo-dialogue.yaml", "--out", str(tmp_path)],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert "PREFECT_API_URL=http://127.0.0.1:9/api: no Prefect server answers there" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "provenance.duckdb").exists()


def _artifacts(client, flow_run_id) -> dict[str, object]:
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    found = client.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])))
    return {a.key: a for a in found if a.key}


def _trigger(client, deployment: str, parameters: dict):
    return client.create_flow_run_from_deployment(client.read_deployment_by_name(deployment).id, parameters=parameters)


@pytest.fixture(scope="module")
def deployed_run(server, api_client, tmp_path_factory):
    """prefect.yaml deployed to a process pool, a worker started, render-manifest triggered through the API."""
    home, url = server
    env = {**server_env(home, url), "VOICEBATCH_HOME": str(ROOT)}
    prefect = str(BIN / "prefect")
    for command in ([prefect, "work-pool", "create", "voicebatch-process", "--type", "process"],
                    [prefect, "--no-prompt", "deploy", "--all"]):
        done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    log = open(home / "worker.log", "wb")
    worker = subprocess.Popen([prefect, "worker", "start", "--pool", "voicebatch-process", "--prefetch-seconds", "60"],
                              cwd=tmp_path_factory.mktemp("elsewhere"), env=env, stdout=log, stderr=subprocess.STDOUT)
    out = tmp_path_factory.mktemp("deployed-out")
    try:
        run = _trigger(api_client, "render-manifest/render-manifest",
                       {"manifest": "manifests/demo-dialogue.yaml", "output_dir": str(out),
                        "overrides": {"voices": {"Joe": {"temperature": 0.4}}}})
        yield wait_final(api_client, run.id, timeout=400), out
    finally:
        stop(worker)


def test_prefect_yaml_deploys_to_a_process_pool_and_a_worker_completes_the_run(deployed_run, api_client):
    run, out = deployed_run
    assert run.state.is_completed(), run.state.message
    names = {d.name for d in api_client.read_deployments()}
    assert {"render-manifest", "nightly-catalog"} <= names
    catalog = api_client.read_deployment_by_name("nightly-catalog/nightly-catalog")
    assert [s.schedule.cron for s in catalog.schedules] == ["0 2 * * *"]
    artifacts = _artifacts(api_client, run.id)
    assert {"the-lighthouse-dialogue-summary", "the-lighthouse-dialogue-takes"} <= set(artifacts)
    assert "# The Lighthouse Dialogue" in artifacts["the-lighthouse-dialogue-summary"].data
    recorded = rows(str(out / "provenance.duckdb"), "SELECT flow_run_id, status, takes_rendered, overrides FROM runs")
    assert recorded == [{"flow_run_id": str(run.id), "status": "completed", "takes_rendered": 8,
                         "overrides": '{"voices": {"Joe": {"temperature": 0.4}}}'}]


def test_serve_keeps_the_engine_warm_between_runs(server, api_client, tmp_path):
    home, url = server
    log = open(tmp_path / "serve.log", "wb")
    serve = subprocess.Popen([str(BIN / "voicebatch"), "serve", "--poll", "0.5", "--max-runs", "2"], cwd=ROOT,
                             env=server_env(home, url), stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while not [d for d in api_client.read_deployments() if d.name == "served"]:
            assert time.monotonic() < deadline and serve.poll() is None, (tmp_path / "serve.log").read_text()[-2000:]
            time.sleep(0.5)
        runs = []
        for i in range(2):  # force: the second run renders every take again, on the engine the first one loaded
            created = _trigger(api_client, "render-manifest/served",
                               {"manifest": "manifests/demo-dialogue.yaml", "output_dir": str(tmp_path), "force": True})
            runs.append(wait_final(api_client, created.id, timeout=300))
        assert serve.wait(timeout=60) == 0
    finally:
        if serve.poll() is None:
            stop(serve)
    assert all(r.state.is_completed() for r in runs), (tmp_path / "serve.log").read_text()[-2000:]
    recorded = rows(str(tmp_path / "provenance.duckdb"),
                    "SELECT flow_run_id, pid, load_seconds, takes_rendered FROM runs ORDER BY started_at")
    assert [r["flow_run_id"] for r in recorded] == [str(r.id) for r in runs]
    assert recorded[0]["pid"] == recorded[1]["pid"] == serve.pid  # both ran inside the serving process
    assert recorded[0]["load_seconds"] > 0 and recorded[1]["load_seconds"] == 0
    assert recorded[0]["takes_rendered"] == recorded[1]["takes_rendered"] == 8


def _take_hashes(out: Path, pattern: str = "??/*.wav") -> dict[str, str]:
    import hashlib

    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in (out / ".voicebatch" / "takes").glob(pattern)}


def test_dask_cluster_renders_byte_identical_takes_each_worker_loading_once(server, tmp_path):
    from distributed import Client, LocalCluster

    from engine.pool import loaded_counts

    home, url = server
    env = {**server_env(home, url), "VOICEBATCH_BATCH_SIZE": "1"}  # 8 batches to spread over the workers
    command = [str(BIN / "voicebatch"), "render", "manifests/demo-dialogue.yaml"]
    single = subprocess.run([*command, "--out", str(tmp_path / "single")], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=300)
    assert single.returncode == 0, single.stderr[-3000:]
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        spread = subprocess.run([*command, "--out", str(tmp_path / "dask"), "--runner", "dask", "--dask-address",
                                 cluster.scheduler_address], cwd=ROOT, env=env, capture_output=True, text=True,
                                timeout=300)
        assert spread.returncode == 0, spread.stderr[-3000:]
        loads = client.run(loaded_counts)
        worker_pids = set(client.run(os.getpid).values())
    # Both workers rendered, and each loaded each engine it used exactly once.
    assert len(loads) == 2 and all(counts and set(counts.values()) == {1} for counts in loads.values())
    assert {e for counts in loads.values() for e in counts} == {"hibari/auto/auto", "piper/auto/auto"}
    takes, normalised = _take_hashes(tmp_path / "dask"), _take_hashes(tmp_path / "dask", "normalised/*/??/*.wav")
    assert len(takes) == 8 and takes == _take_hashes(tmp_path / "single")
    assert len(normalised) == 8 and normalised == _take_hashes(tmp_path / "single", "normalised/*/??/*.wav")
    db = str(tmp_path / "dask" / "provenance.duckdb")
    recorded = rows(db, "SELECT status, load_seconds, pid FROM runs")
    assert [(r["status"], r["load_seconds"]) for r in recorded] == [("completed", None)]  # the flow loaded nothing
    # Renders and normalisation ran in the worker processes, not in the flow's.
    pid = lambda worker: int(worker.rsplit(":", 1)[1])  # noqa: E731
    rendered_by = {pid(r["worker"]) for r in rows(db, "SELECT worker FROM renders")}
    normalised_by = {pid(r["worker"]) for r in rows(db, "SELECT worker FROM take_levels")}
    assert rendered_by == worker_pids and normalised_by <= worker_pids and recorded[0]["pid"] not in normalised_by
    # Each worker's model loads are recorded with the run: both loaded, once each (a warm re-run would be 0).
    per_worker = rows(db, "SELECT worker, batches, takes_rendered, load_seconds, takes_normalised FROM run_workers")
    assert {pid(r["worker"]) for r in per_worker} == worker_pids
    assert sum(r["batches"] for r in per_worker) == 8 and sum(r["takes_normalised"] for r in per_worker) == 8
    assert all(r["load_seconds"] > 0 for r in per_worker)


def test_bad_dask_address_is_refused_before_prefect_starts(tmp_path):
    result = subprocess.run([str(BIN / "voicebatch"), "render", "manifests/demo-dialogue.yaml", "--out", str(tmp_path),
                             "--runner", "dask", "--dask-address", "10.0.0.5:8786"], cwd=ROOT, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 2 and "tcp://10.0.0.5:8786" in result.stderr
    assert not (tmp_path / "provenance.duckdb").exists()


def test_catalog_renders_every_manifest_incrementally_and_lists_bad_ones(server, tmp_path):
    import shutil

    from prefect.settings import PREFECT_API_URL, temporary_settings

    from tasks.core.errors import UserInputError
    from flows.catalog import render_catalog

    folder, out = tmp_path / "manifests", tmp_path / "out"
    folder.mkdir()
    shutil.copy(ROOT / "manifests" / "demo-dialogue.yaml", folder)
    shutil.copy(ROOT / "manifests" / "demo-dialogue-scene2.txt", folder)
    with temporary_settings({PREFECT_API_URL: server[1]}):
        first = render_catalog(manifests_dir=str(folder), output_dir=str(out))
        (folder / "zz-bad.yaml").write_text("title: Bad\nvoices: {A: nobody}\nchapters: []\n")
        with pytest.raises(UserInputError, match=r"1 of 2 manifests failed:\n  - .*zz-bad.yaml"):
            render_catalog(manifests_dir=str(folder), output_dir=str(out))
    assert [(r["status"], r["takes_rendered"]) for r in first] == [("completed", 8)]
    recorded = rows(str(out / "provenance.duckdb"), "SELECT takes_rendered, takes_reused FROM runs ORDER BY started_at")
    assert [(r["takes_rendered"], r["takes_reused"]) for r in recorded] == [(8, 0), (0, 8)]  # the re-run rendered nothing
