"""Cluster submission against real Ray processes: a head (`ray start --head`, with its job server) and a
second node joined to it, both on 127.0.0.1; the job goes through `batch-embed submit` as a user's would.
"""

from __future__ import annotations

import os
import shlex
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from jobs.embed.config import EmbedJobConfig
from tests.conftest import read_table

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def node_ports() -> list[str]:
    """Ports of a node's agents. Ray's defaults (52365, 10001...) are taken by the test session's own
    Ray: the head's job agent would fail to bind and the job server would refuse every submission."""
    return [f"--{name}={free_port()}" for name in ("dashboard-agent-listen-port", "dashboard-agent-grpc-port",
                                                    "runtime-env-agent-port", "metrics-export-port")]


def kill_cluster(temp_dir: str) -> None:
    """Stop this cluster's processes only (`ray stop` would also stop the test session's own Ray)."""
    import psutil

    for proc in psutil.process_iter(["pid", "cmdline"]):
        if proc.info["pid"] == os.getpid():
            continue
        try:
            if any(temp_dir in part for part in proc.info["cmdline"] or []):
                proc.kill()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass


@pytest.fixture(scope="module")
def ray_cluster():
    """(job server URL, GCS address) of a two-node cluster; stopped afterwards, even when a test fails."""
    temp_dir = tempfile.mkdtemp(prefix="rc-", dir="/tmp")  # short: Ray's socket paths are length-limited
    gcs_port, dash_port = free_port(), free_port()
    # The job's `python` must be this environment's: the nodes take PATH from `ray start`.
    # Ray 2.60 turns token authentication on for a head with a dashboard; the worker node must then
    # say so. The submit CLI finds the token the head wrote (~/.ray/auth_token) without being told.
    env = {**os.environ, "PATH": f"{BIN}:{os.environ.get('PATH', '')}", "RAY_USAGE_STATS_ENABLED": "0",
           "RAY_AUTH_MODE": "token", "RAY_num_workers_soft_limit": "12"}  # 4 idle workers per CPU, as cluster/
    env.pop("RAY_ADDRESS", None)
    # 3 logical CPUs a node and 2 per engine actor: at most one engine per node, so a pool of two
    # has to use both nodes. 2 logical GPUs a node: the simulated GPU fleet (test_a_simulated_gpu_fleet...).
    head = [str(BIN / "ray"), "start", "--head", "--node-ip-address=127.0.0.1", f"--port={gcs_port}",
            "--include-dashboard=true", "--dashboard-host=127.0.0.1", f"--dashboard-port={dash_port}",
            "--num-cpus=3", "--num-gpus=2", f"--temp-dir={temp_dir}", "--disable-usage-stats",
            f"--ray-client-server-port={free_port()}", *node_ports()]
    worker = [str(BIN / "ray"), "start", f"--address=127.0.0.1:{gcs_port}", "--node-ip-address=127.0.0.1",
              "--num-cpus=3", "--num-gpus=2", '--resources={"second_node": 1}', *node_ports()]
    try:
        subprocess.run(head, env=env, check=True, capture_output=True, timeout=180)
        subprocess.run(worker, env=env, check=True, capture_output=True, timeout=180)
        url = f"http://127.0.0.1:{dash_port}"
        deadline = time.monotonic() + 120
        while True:  # the job server answers a little after `ray start` returns
            probe = cli("status", "no-such-job", "--address", url, env=env, timeout=60)
            if "does not exist" in probe.stderr + probe.stdout:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"the job server at {url} does not answer: {probe.stderr[-2000:]}")
            time.sleep(2)
        yield url, env
    finally:
        kill_cluster(temp_dir)


def cli(*args: str, env: dict, timeout: float = 600) -> subprocess.CompletedProcess:
    """`batch-embed ...` as a user runs it: without RAY_AUTH_MODE (before: an AuthenticationError traceback)."""
    env = {k: v for k, v in env.items() if k != "RAY_AUTH_MODE"}
    return subprocess.run([str(BIN / "batch-embed"), *args], capture_output=True, text=True, env=env,
                          timeout=timeout, cwd=ROOT)


@pytest.mark.cluster
def test_submitted_demo_job_spreads_engines_over_both_nodes(tmp_path, ray_cluster):
    from jobs.demo_corpus.job import write_corpus

    url, env = ray_cluster
    # The README's demo job, as is, with the paths the cluster's nodes can read and a pool of two
    # engines (2 CPUs each: the nodes' 3 CPUs fit one engine each).
    rows = write_corpus(tmp_path / "demo", max_rows=600)
    overrides = [f"source.uri={tmp_path / 'demo'}", f"sink.uri={tmp_path / 'db'}", "run.progress=false",
                 "engine.actors.min=2", "engine.actors.max=2", "engine.cpus_per_actor=2",
                 "engine.threads_per_actor=1", "engine.gpus_per_actor=0", "sink.commit_every_rows=200"]
    sets = [arg for item in overrides for arg in ("--set", item)]
    out = cli("submit", "--address", url, "--config", "configs/demo.yaml", *sets, "--wait", env=env)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-4000:]
    assert "batch-embed summary" in out.stdout
    assert f"table          {tmp_path / 'db' / 'stdlib_docs.lance'}" in out.stdout
    job_id = out.stdout.split("submitted", 1)[1].split()[0]
    table = read_table(str(tmp_path / "db"), "stdlib_docs")
    rejected = read_table(str(tmp_path / "db"), "stdlib_docs_rejected")
    assert table.num_rows + rejected.num_rows == rows and table.num_rows > 0.9 * rows
    assert (tmp_path / "db" / "_runs" / f"stdlib_docs-{job_id}.json").is_file()

    status = cli("status", job_id, "--address", url, env=env)
    assert status.returncode == 0 and "SUCCEEDED" in status.stdout
    assert "batch-embed summary" in cli("logs", job_id, "--address", url, env=env).stdout

    # Ask the cluster itself (its state API, with the cluster's auth settings) where the engines ran.
    probe = subprocess.run([sys.executable, "-c", f"""
from ray.util.state import list_actors, list_nodes
nodes = sorted(n.node_id for n in list_nodes(address="{url}"))
engines = sorted({{a.node_id for a in list_actors(address="{url}", detail=True, limit=1000)
                   if "Embedder" in (a.class_name or "")}})
print(len(nodes), nodes == engines)
"""], env=env, capture_output=True, text=True, timeout=120)
    assert probe.stdout.split() == ["2", "True"], probe.stdout + probe.stderr[-2000:]


@pytest.mark.cluster
def test_a_failing_job_returns_nonzero_with_its_error(tmp_path, ray_cluster):
    url, env = ray_cluster
    config = tmp_path / "bad.yaml"
    config.write_text(yaml.safe_dump({"source": {"uri": str(tmp_path / "nothing")},
                                      "sink": {"uri": str(tmp_path / "db"), "table": "t"}}))
    out = cli("submit", "--address", url, "--config", str(config), "--wait", env=env)
    assert out.returncode == 2, out.stdout[-3000:]
    assert "source.uri: no Parquet files found" in out.stdout
    # A config that is wrong in itself never leaves the laptop.
    config.write_text(yaml.safe_dump({"source": {"uri": "x"}, "sink": {"uri": "db", "table": "t"},
                                      "model": {"dimensions": -1}}))
    out = cli("submit", "--address", url, "--config", str(config), env=env)
    assert out.returncode == 2 and "model.dimensions" in out.stderr


@pytest.mark.cluster
def test_a_token_auth_cluster_takes_the_token_from_where_ray_keeps_it(tmp_path, ray_cluster):
    url, env = ray_cluster
    home = tmp_path / "home"
    home.mkdir()
    bare = {**env, "HOME": str(home)}
    bare.pop("RAY_AUTH_TOKEN", None)
    bare.pop("RAY_AUTH_TOKEN_PATH", None)
    out = cli("status", "no-such-job", "--address", url, env=bare, timeout=60)
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert out.stderr.strip().count("\n") == 0, out.stderr  # one line
    assert "requires a token" in out.stderr and str(home / ".ray" / "auth_token") in out.stderr

    token = (Path.home() / ".ray" / "auth_token").read_text().strip()
    (tmp_path / "token").write_text(token + "\n")
    out = cli("status", "no-such-job", "--address", url, "--token-file", str(tmp_path / "token"), env=bare, timeout=60)
    assert "does not exist" in out.stdout + out.stderr and "Traceback" not in out.stderr
    out = cli("status", "no-such-job", "--address", url, env={**bare, "RAY_AUTH_TOKEN": token}, timeout=60)
    assert "does not exist" in out.stdout + out.stderr
    out = cli("status", "no-such-job", "--address", url, env={**bare, "RAY_AUTH_TOKEN": "wrong"}, timeout=60)
    assert out.returncode == 1 and "refused the token from RAY_AUTH_TOKEN" in out.stderr
    assert "Traceback" not in out.stderr


def test_manifests_run_the_cli_as_it_is():
    from cluster.submit import entrypoint
    from jobs.cli import build_parser
    from jobs.core.config import load_config

    parser = build_parser()
    rayjob = yaml.safe_load((ROOT / "cluster" / "rayjob.yaml").read_text())
    assert rayjob["kind"] == "RayJob"
    argv = shlex.split(rayjob["spec"]["entrypoint"])
    assert argv[0] == "batch-embed"
    args = parser.parse_args(argv[1:])
    assert args.command == "embed" and (ROOT / args.config).is_file()
    load_config(ROOT / args.config, None, EmbedJobConfig)

    launcher_text = (ROOT / "cluster" / "cluster-launcher.yaml").read_text()
    launcher = yaml.safe_load(launcher_text)
    assert launcher["head_node_type"] in launcher["available_node_types"]
    commands = [line.split("#", 1)[1].strip() for line in launcher_text.splitlines() if line.startswith("#")]
    submit = [c for c in commands if c.startswith("batch-embed submit")]
    assert submit, "the launcher's header must say how to submit"
    for command in submit:
        args = parser.parse_args(shlex.split(command.replace("<head>", "HEAD"))[1:])
        assert args.command == "submit" and (ROOT / args.config).is_file()
    assert entrypoint("embed", []) in commands, "the launcher's comment shows the entrypoint submit sends"
    # What submit sends must parse as the CLI too.
    assert parser.parse_args(shlex.split(entrypoint("embed", ["model.dimensions=256"]))[3:]).command == "embed"


def kill_worker_node(url: str, env: dict, engines: list) -> None:
    """SIGKILL the worker node's raylet and everything under it (workers, agents): a node lost mid-run.
    `engines`: [node id, pid] of engine actors; the raylet is the parent of one alive on the worker node."""
    import json

    import psutil

    nodes = json.loads(state_probe(url, env, "import json\nprint(json.dumps([[n.node_id, n.is_head_node] for n in "
                                             f"list_nodes(address='{url}', detail=True)]))"))
    head = next(node for node, is_head in nodes if is_head)
    pid = next(pid for node, pid in engines if node != head and psutil.pid_exists(pid))
    raylet = psutil.Process(pid).parent()
    assert "raylet" in raylet.name(), raylet.cmdline()
    for proc in [*raylet.children(recursive=True), raylet]:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass


def state_probe(url: str, env: dict, code: str) -> str:
    """Run `code` against the cluster's state API in a fresh interpreter (this one may hold its own Ray)."""
    out = subprocess.run([sys.executable, "-c", "from ray.util.state import list_actors, list_nodes\n" + code],
                         env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


@pytest.mark.cluster
@pytest.mark.fleet
def test_a_simulated_gpu_fleet_grows_to_one_engine_per_gpu_and_survives_a_killed_engine_and_node(tmp_path,
                                                                                               ray_cluster):
    """Two nodes with 2 logical GPUs each: simulated engines (1 GPU each) grow to 4 over both nodes; one
    is SIGKILLed mid-run, then the whole worker node; the table still ends with every row exactly once.
    Last in this module: the cluster has one node left after it."""
    import json

    from jobs.demo_corpus.job import write_corpus

    url, env = ray_cluster
    rows = write_corpus(tmp_path / "demo", max_rows=1600)
    overrides = [f"source.uri={tmp_path / 'demo'}", f"sink.uri={tmp_path / 'db'}", "run.progress=false",
                 "engine.backend=simulated", "engine.simulated.tokens_per_second=1000",
                 "engine.simulated.startup_seconds=1", "engine.gpus_per_actor=1", "engine.cpus_per_actor=0.5",
                 "engine.actors.min=1", "engine.actors.max=4", "engine.batch_tokens=2048",
                 "sink.commit_every_rows=200"]
    sets = [arg for item in overrides for arg in ("--set", item)]
    out = cli("submit", "--address", url, "--config", "configs/demo.yaml", *sets, env=env)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    job_id = out.stdout.split("submitted", 1)[1].split()[0]

    engines = """
alive = [a for a in list_actors(address="{url}", detail=True, limit=1000)
         if "Embedder" in (a.class_name or "") and a.state == "ALIVE"]
print(json.dumps([[a.node_id, a.pid] for a in alive]))
""".replace("{url}", url)
    peak: list = []
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and len(peak) < 4:
        peak = max(peak, json.loads(state_probe(url, env, "import json\n" + engines) or "[]"), key=len)
        time.sleep(1)
    assert len(peak) == 4, f"the pool grew to {len(peak)} engines of 4 logical GPUs"
    assert len({node for node, _ in peak}) == 2  # one engine per GPU, on both nodes
    os.kill(peak[-1][1], 9)  # an engine dies mid-run: Ray Data restarts it and retries its batch
    time.sleep(3)
    status = cli("status", job_id, "--address", url, env=env).stdout
    assert "RUNNING" in status, f"the run ended before its worker node could be killed: {status}"
    # The worker node dies: its engines, tasks and the blocks in its object store are lost; the run goes on on the head.
    kill_worker_node(url, env, peak)

    deadline = time.monotonic() + 400
    while True:
        status = cli("status", job_id, "--address", url, env=env).stdout
        if "SUCCEEDED" in status or "FAILED" in status or time.monotonic() > deadline:
            break
        time.sleep(3)
    logs = cli("logs", job_id, "--address", url, env=env).stdout
    assert "SUCCEEDED" in status, logs[-4000:]
    table = read_table(str(tmp_path / "db"), "stdlib_docs")
    rejected = read_table(str(tmp_path / "db"), "stdlib_docs_rejected")
    ids = table["id"].to_pylist() + rejected["id"].to_pylist()
    assert len(ids) == len(set(ids)) == rows  # exactly once
    summary = json.loads((tmp_path / "db" / "_runs" / f"stdlib_docs-{job_id}.json").read_text())
    assert summary["engine_dtype"] == "simulated"
    split = summary["time_split"]
    assert len(split["engines"]) >= 4 and sum(e["rows"] for e in split["engines"].values()) >= table.num_rows
    # fed: the four engines took batches (the killed one may have died before its first)
    assert sum(1 for e in split["engines"].values() if e["batches"]) >= 3
    assert "engines busy" in logs
