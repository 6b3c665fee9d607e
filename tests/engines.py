"""Throwaway instances of the real engines users scale out to, for the tests: a PostgreSQL cluster and a one-node
SLURM cluster (with its munge daemon), each in a temporary folder, on loopback only, stopped afterwards.

Both come from Debian's packages (``.ci/run`` installs ``postgresql``, ``slurm-wlm`` and ``munge``). Where a binary
is absent the fixture skips with the package to install (CI installs them, so there they never skip). PostgreSQL
refuses to run as root: as root the cluster runs as Debian's ``postgres`` user.
"""

from __future__ import annotations

import contextlib
import glob
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers import unavailable


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(ready, seconds: float, what: str, log: Path | None = None) -> None:
    end = time.time() + seconds
    while time.time() < end:
        if ready():
            return
        time.sleep(0.2)
    tail = log.read_text(errors="replace")[-2000:] if log is not None and log.exists() else ""
    raise RuntimeError(f"{what} did not start in {seconds} s\n{tail}")


# --- PostgreSQL -----------------------------------------------------------------------------------------

def _pg_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    return Path(found[-1]).parent if found else None


@contextlib.contextmanager
def postgres_cluster() -> Iterator[dict]:
    """A PostgreSQL cluster on 127.0.0.1 with password authentication (scram), database ``search``; yields its
    URL (with the password), the password, the port and an admin URL."""
    pg = _pg_bin()
    if pg is None:
        unavailable("PostgreSQL is not installed here (.ci/run installs Debian's postgresql)")
    import psycopg

    root = Path(tempfile.mkdtemp(prefix="c2y-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:  # initdb and postgres refuse root
        import pwd

        uid = pwd.getpwnam("postgres").pw_uid
        os.chown(root, uid, -1)
        as_user = ["runuser", "-u", "postgres", "--"]
    password = "pw-" + secrets.token_hex(8)
    pwfile = root / "pw"
    pwfile.write_text(password + "\n")
    if as_user:
        os.chown(pwfile, pwd.getpwnam("postgres").pw_uid, -1)
    log = root / "postgres.log"
    port = free_port()
    proc = None
    try:
        subprocess.run([*as_user, str(pg / "initdb"), "-D", str(root / "data"), "-U", "coco", "--auth=scram-sha-256",
                        f"--pwfile={pwfile}", "-E", "UTF8", "--no-instructions"], check=True, capture_output=True)
        with open(log, "w") as fh:
            proc = subprocess.Popen([*as_user, str(pg / "postgres"), "-D", str(root / "data"), "-p", str(port),
                                     "-k", str(root), "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off",
                                     "-c", "max_connections=50"], stdout=fh, stderr=subprocess.STDOUT)

        def ready() -> bool:
            try:
                psycopg.connect(host="127.0.0.1", port=port, user="coco", password=password, dbname="postgres").close()
                return True
            except psycopg.OperationalError:
                return False

        _wait(ready, 30, "postgres", log)
        admin = psycopg.connect(host="127.0.0.1", port=port, user="coco", password=password, dbname="postgres")
        admin.autocommit = True
        admin.cursor().execute("CREATE DATABASE search")
        admin.close()
        yield {"url": f"postgresql://coco:{password}@127.0.0.1:{port}/search", "password": password, "port": port,
               "dsn": dict(host="127.0.0.1", port=port, user="coco", password=password, dbname="search")}
    finally:
        if proc is not None:
            proc.terminate()  # SIGTERM: postgres' smart shutdown; it is a child of runuser, which forwards it
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(root, ignore_errors=True)


def connections(dsn: dict, database: str = "search") -> int:
    """Client connections to ``database`` right now (pg_stat_activity)."""
    import psycopg

    with contextlib.closing(psycopg.connect(**{**dsn, "dbname": "postgres"})) as c:
        cur = c.cursor()
        cur.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()", (database,))
        return int(cur.fetchone()[0])


# --- SLURM ------------------------------------------------------------------------------------------------

SLURM_CONF = """ClusterName=c2ytest
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={d_port}
SlurmUser={user}
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={root}/munge/sock
CredType=cred/munge
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
ReturnToService=2
KillWait=5
NodeName=localhost NodeAddr=127.0.0.1 CPUs={cpus} State=UNKNOWN
PartitionName=test Nodes=localhost Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:4
"""


@contextlib.contextmanager
def slurm_cluster() -> Iterator[dict]:
    """munged, slurmctld and slurmd for one node (this machine, 127.0.0.1), no cgroups (proctrack/linuxproc);
    yields the environment the client commands need (SLURM_CONF) and the folder."""
    for exe, pkg in (("munged", "munge"), ("slurmctld", "slurm-wlm"), ("slurmd", "slurm-wlm"), ("sbatch", "slurm-wlm")):
        if shutil.which(exe) is None and not Path(f"/usr/sbin/{exe}").exists():
            unavailable(f"{exe} is not installed here (.ci/run installs Debian's {pkg})")
    if os.geteuid() != 0:
        unavailable("slurmd runs jobs as their user and must start as root (CI runs as root)")
    root = Path(tempfile.mkdtemp(prefix="c2y-slurm-"))
    for d in ("munge", "state", "spool"):
        (root / d).mkdir()
    os.chmod(root / "munge", 0o700)
    key = root / "munge" / "key"
    key.write_bytes(secrets.token_bytes(1024))
    os.chmod(key, 0o400)
    conf = root / "slurm.conf"
    conf.write_text(SLURM_CONF.format(root=root, ctld_port=free_port(), d_port=free_port(), user="root",
                                      cpus=os.cpu_count() or 2))
    env = {**os.environ, "SLURM_CONF": str(conf)}
    sbin = lambda name: shutil.which(name) or f"/usr/sbin/{name}"  # noqa: E731
    started: list[Path] = []
    try:
        subprocess.run([sbin("munged"), f"--key-file={key}", f"--socket={root}/munge/sock",
                        f"--pid-file={root}/munge/pid", f"--log-file={root}/munge/log",
                        f"--seed-file={root}/munge/seed", "--force"], check=True, capture_output=True)
        started.append(root / "munge" / "pid")
        subprocess.run([sbin("slurmctld"), "-f", str(conf)], check=True, env=env, capture_output=True)
        started.append(root / "slurmctld.pid")
        subprocess.run([sbin("slurmd"), "-f", str(conf), "-N", "localhost"], check=True, env=env, capture_output=True)
        started.append(root / "slurmd.pid")

        def idle() -> bool:
            r = subprocess.run(["sinfo", "-h", "-o", "%t"], env=env, capture_output=True, text=True)
            return r.returncode == 0 and r.stdout.strip() in ("idle", "mix", "alloc")

        _wait(idle, 60, "slurm", root / "slurmctld.log")
        yield {"env": env, "root": root}
    finally:
        subprocess.run(["scancel", "--user", "root"], env=env, capture_output=True)
        for pid_file in reversed(started):
            with contextlib.suppress(OSError, ValueError):
                os.kill(int(pid_file.read_text().strip()), 15)
        time.sleep(1)
        shutil.rmtree(root, ignore_errors=True)


def slurm_jobs(env: dict) -> list[str]:
    """The queue's jobs (id, state) as squeue prints them."""
    r = subprocess.run(["squeue", "-h", "-o", "%i %T"], env=env, capture_output=True, text=True)
    return r.stdout.split("\n") if r.stdout.strip() else []
