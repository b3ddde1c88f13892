#!/usr/bin/env python3
"""The local stack: the real services the exchange runs on, on one machine.

Owns starting, health-checking, reporting and stopping, each from nothing and
idempotently:
  - Apache Kafka 4.x in KRaft mode (combined broker+controller), jars from Maven
    Central through cluster/kafka/pom.xml;
  - PostgreSQL from Debian's packages, in a project-local data directory;
  - a DynamoDB-compatible server (dynalite, from npm) reached by boto3 through an
    endpoint URL (DynamoDB Local is not used: its licence is the vendor's own terms);
  - a Ray cluster of labelled nodes (Region head, Local Zone and Outpost workers)
    from placement/topology.toml, with token auth so `ray job submit` works.

Pid, port and log files live in state/ (git-ignored). `down` stops only what `up`
started. Standard library only: it runs before the project's packages exist.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
import tomllib
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STATE = Path(os.environ.get("EXCHANGE_STATE_DIR", ROOT / "state")).resolve()
TOPOLOGY = ROOT / "placement" / "topology.toml"

KAFKA_VERSION_JAR = "kafka_2.13-"
PORTS = {
    "kafka": int(os.environ.get("EXCHANGE_KAFKA_PORT", 29092)),
    "kafka_controller": int(os.environ.get("EXCHANGE_KAFKA_CONTROLLER_PORT", 29093)),
    "postgres": int(os.environ.get("EXCHANGE_POSTGRES_PORT", 25432)),
    "dynamodb": int(os.environ.get("EXCHANGE_DYNAMODB_PORT", 28000)),
    "ray_gcs": int(os.environ.get("EXCHANGE_RAY_PORT", 26379)),
    "ray_dashboard": int(os.environ.get("EXCHANGE_RAY_DASHBOARD_PORT", 28265)),
    "ray_client": int(os.environ.get("EXCHANGE_RAY_CLIENT_PORT", 26001)),
}
RAY_NODE_PORT_BASE = int(os.environ.get("EXCHANGE_RAY_NODE_PORT_BASE", 27000))
# Serve's HTTP edge: "haproxy" (Serve's HAProxy ingress with replicas' direct ingress:
# ~9x the requests/s of the default proxy here, DESIGN.md section 2) or "default" (the
# Python proxy actor, the documented fallback).
SERVE_EDGE = os.environ.get("EXCHANGE_SERVE_EDGE", "haproxy")
HAPROXY_PORTS = {"stats": int(os.environ.get("EXCHANGE_HAPROXY_STATS_PORT", 27080)),
                 "metrics": int(os.environ.get("EXCHANGE_HAPROXY_METRICS_PORT", 27081))}
PG_DB = "exchange"
PG_USER = "exchange"


class StackError(Exception):
    """A failure the operator can act on; printed as one clear message, no traceback."""


_T0 = time.monotonic()


def say(part: str, message: str) -> None:
    print(f"[{time.monotonic() - _T0:6.1f}s] {part:<9} {message}", flush=True)


def run(cmd: list[str], *, what: str, env: dict | None = None, cwd: Path | None = None,
        timeout: float = 600, user: str | None = None) -> str:
    """Runs a command; on failure raises StackError with its last output lines."""
    if user is not None and user != current_user():
        cmd = ["runuser", "-u", user, "--", *cmd]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=cwd,
                              timeout=timeout)
    except FileNotFoundError as exc:
        raise StackError(f"{what}: command not found: {cmd[0]}") from exc
    except subprocess.TimeoutExpired as exc:
        raise StackError(f"{what}: timed out after {timeout:.0f}s: {' '.join(cmd)}") from exc
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        raise StackError(f"{what} failed (exit {proc.returncode}): {' '.join(cmd)}\n{tail}")
    return proc.stdout


def current_user() -> str:
    return pwd.getpwuid(os.getuid()).pw_name


def is_root() -> bool:
    return os.geteuid() == 0


def apt_install(packages: list[str], why: str) -> None:
    """Installs Debian packages when root; otherwise says what to install."""
    if not is_root() or not shutil.which("apt-get"):
        raise StackError(f"{why}: install the Debian/Ubuntu packages {' '.join(packages)} "
                         f"(e.g. sudo apt-get install -y {' '.join(packages)}) and run again")
    say("install", f"apt-get install {' '.join(packages)} ({why})")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    run(["apt-get", "update", "-q"], what="apt-get update", env=env)
    run(["apt-get", "install", "-y", "-q", "--no-install-recommends", *packages],
        what=f"apt-get install {' '.join(packages)}", env=env)


# ---------------------------------------------------------------- processes, ports

def pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is not alive
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def port_answers(port: int, host: str = "127.0.0.1", timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def port_holder(port: int) -> str:
    """Names the process listening on a TCP port, from /proc (no external tools)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            cols = line.split()
            local, state, inode = cols[1], cols[3], cols[9]
            if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:
                inodes.add(inode)
    if not inodes:
        return "unknown process"
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            for fd in (proc / "fd").iterdir():
                target = os.readlink(fd)
                if target.startswith("socket:[") and target[8:-1] in inodes:
                    cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
                    return f"pid {proc.name}: {cmd.strip()[:160]}"
        except OSError:
            continue
    return "a process of another user (not visible)"


def port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def wait_until(check, *, what: str, timeout: float, proc_alive=None, log: Path | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        if proc_alive is not None and not proc_alive():
            raise StackError(f"{what} exited while starting" + log_tail(log))
        time.sleep(0.25)
    raise StackError(f"{what} did not answer within {timeout:.0f}s" + log_tail(log))


def log_tail(log: Path | None, lines: int = 20) -> str:
    if log is None or not log.exists():
        return ""
    tail = log.read_text(errors="replace").splitlines()[-lines:]
    return f"\n--- last lines of {log} ---\n" + "\n".join(tail)


def spawn(cmd: list[str], *, log: Path, env: dict | None = None, cwd: Path | None = None,
          user: str | None = None, niceness: int | None = None) -> int:
    """Starts a long-running server detached in its own session; returns its pid.

    ``niceness``: asked for in the child before it starts (every thread it makes inherits
    it); where that is not allowed (not root, no CAP_SYS_NICE) it keeps ours.
    """
    log.parent.mkdir(parents=True, exist_ok=True)

    def renice() -> None:
        try:
            os.setpriority(os.PRIO_PROCESS, 0, niceness)
        except OSError:
            pass

    with open(log, "ab") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=env, cwd=cwd, start_new_session=True,
                                preexec_fn=renice if niceness is not None else None)
    return proc.pid


def terminate(pids: list[int], *, what: str, grace: float = 15.0) -> None:
    pids = [p for p in pids if pid_alive(p)]
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(pid_alive(p) for p in pids):
        time.sleep(0.1)
    for pid in pids:
        if pid_alive(pid):
            say(what, f"pid {pid} ignored SIGTERM for {grace:.0f}s: SIGKILL")
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


# ---------------------------------------------------------------- parts

@dataclass
class Part:
    """One service of the stack. Subclasses fill in install/start/stop/answers."""
    name: str
    ports: list[int] = field(default_factory=list)

    @property
    def dir(self) -> Path:
        return STATE / self.name

    def address(self) -> str:
        raise NotImplementedError

    def pids(self) -> list[int]:
        pid = read_pid(self.dir / "pid")
        return [pid] if pid_alive(pid) else []

    def running(self) -> bool:
        return bool(self.pids())

    def answers(self) -> bool:
        raise NotImplementedError

    def install(self) -> None:
        pass

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        pids = self.pids()
        if not pids:
            return
        say(self.name, f"stopping pid {' '.join(map(str, pids))}")
        terminate(pids, what=self.name)
        (self.dir / "pid").unlink(missing_ok=True)

    def env(self) -> dict:
        """What clients need to reach this part (written to state/stack.json and env.sh)."""
        return {}


class Kafka(Part):
    def __init__(self):
        super().__init__("kafka", [PORTS["kafka"], PORTS["kafka_controller"]])

    def address(self) -> str:
        return f"127.0.0.1:{PORTS['kafka']}"

    def env(self) -> dict:
        return {"EXCHANGE_KAFKA_BOOTSTRAP": self.address()}

    @property
    def lib(self) -> Path:
        return self.dir / "lib"

    def install(self) -> None:
        if list(self.lib.glob(f"{KAFKA_VERSION_JAR}*.jar")) and (self.lib / ".complete").exists():
            return
        if not shutil.which("java"):
            apt_install(["openjdk-17-jre-headless"], "Kafka needs Java 17+")
        if not shutil.which("mvn"):
            apt_install(["maven"], "fetching Kafka's jars needs Maven")
        say(self.name, "fetching Kafka jars from Maven Central (cluster/kafka/pom.xml)")
        self.lib.mkdir(parents=True, exist_ok=True)
        run(["mvn", "-q", "-B", "-f", str(ROOT / "cluster/kafka/pom.xml"),
             "dependency:copy-dependencies", f"-DoutputDirectory={self.lib}",
             "-DincludeScope=runtime"], what="mvn dependency:copy-dependencies", timeout=900)
        (self.lib / ".complete").write_text("ok\n")
        say(self.name, f"{len(list(self.lib.glob('*.jar')))} jars in {self.lib}")

    def _configure(self) -> Path:
        data = self.dir / "data"
        data.mkdir(parents=True, exist_ok=True)
        props = self.dir / "server.properties"
        props.write_text("\n".join([
            "process.roles=broker,controller",
            "node.id=1",
            f"controller.quorum.voters=1@127.0.0.1:{PORTS['kafka_controller']}",
            f"listeners=PLAINTEXT://127.0.0.1:{PORTS['kafka']},"
            f"CONTROLLER://127.0.0.1:{PORTS['kafka_controller']}",
            f"advertised.listeners=PLAINTEXT://127.0.0.1:{PORTS['kafka']}",
            "controller.listener.names=CONTROLLER",
            "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "inter.broker.listener.name=PLAINTEXT",
            f"log.dirs={data}",
            "num.partitions=1",
            "default.replication.factor=1",
            "min.insync.replicas=1",
            "offsets.topic.replication.factor=1",
            "offsets.topic.num.partitions=4",
            "transaction.state.log.replication.factor=1",
            "transaction.state.log.min.isr=1",
            "transaction.state.log.num.partitions=4",
            "share.coordinator.state.topic.replication.factor=1",
            "share.coordinator.state.topic.min.isr=1",
            "share.coordinator.state.topic.num.partitions=1",
            "group.initial.rebalance.delay.ms=0",
            "auto.create.topics.enable=true",
            "num.network.threads=2",
            "num.io.threads=4",
            "log.retention.hours=168",
            "log.segment.bytes=268435456",
            "transaction.max.timeout.ms=900000",
            "",
        ]))
        log4j = self.dir / "log4j2.properties"
        log4j.write_text("\n".join([
            "status = warn",
            "appender.out.type = Console",
            "appender.out.name = STDOUT",
            "appender.out.layout.type = PatternLayout",
            "appender.out.layout.pattern = [%d] %p %m (%c)%n",
            "rootLogger.level = WARN",
            "rootLogger.appenderRef.out.ref = STDOUT",
            "logger.server.name = kafka.server.KafkaRaftServer",
            "logger.server.level = INFO",
            "",
        ]))
        if not (data / "meta.properties").exists():
            cluster_id = ""
            while not cluster_id or cluster_id.startswith("-"):
                cluster_id = base64.urlsafe_b64encode(os.urandom(16)).rstrip(b"=").decode()
            say(self.name, f"formatting KRaft storage (cluster id {cluster_id})")
            run(["java", "-Xmx256m", f"-Dlog4j2.configurationFile={log4j}", "-cp",
                 f"{self.lib}/*", "kafka.tools.StorageTool", "format", "-t", cluster_id,
                 "-c", str(props), "--ignore-formatted"], what="kafka storage format")
        return props

    def answers(self) -> bool:
        return kafka_api_versions(PORTS["kafka"])

    def start(self) -> None:
        props = self._configure()
        log = self.dir / "kafka.log"
        gc_log = f"-Xlog:gc:file={self.dir / 'kafka-gc.log'}:uptime,level:filecount=2,filesize=10m"
        cmd = ["java", *os.environ.get("EXCHANGE_KAFKA_JVM", KAFKA_JVM).split(), "-XX:+ExitOnOutOfMemoryError",
               gc_log, "-Djava.awt.headless=true",
               f"-Dlog4j2.configurationFile={self.dir / 'log4j2.properties'}",
               "-cp", f"{self.lib}/*", "kafka.Kafka", str(props)]
        pid = spawn(cmd, log=log, niceness=KAFKA_NICENESS)
        (self.dir / "pid").write_text(f"{pid}\n")
        wait_until(self.answers, what="Kafka", timeout=90, proc_alive=lambda: pid_alive(pid), log=log)
        if KAFKA_REALTIME > 0:
            done, refused = realtime_threads(pid, "data-plane", KAFKA_REALTIME)
            say(self.name, f"request threads at SCHED_FIFO {KAFKA_REALTIME}: {done}"
                           + (f" ({refused} refused: they keep the niceness)" if refused else ""))


# The broker's collector is on every flush's path: under the actors bench's half load G1
# (MaxGCPauseMillis=20, 512 MB) paused the broker every ~5 s for 6.5 ms at the median and
# up to 56 ms (state/kafka/kafka-gc.log), right in the hosts' p99.9. ZGC (JDK 17) does
# its work concurrently: pauses under a millisecond, for some CPU and a larger heap.
# EXCHANGE_KAFKA_JVM overrides it.
KAFKA_JVM = "-Xms1g -Xmx1g -XX:+UseZGC -XX:+AlwaysPreTouch"
# Every flush waits for the broker: on this shared machine its request threads waited for
# a core behind everything else (a produce's time in the request queue p99.9 19 ms, its
# local work p99 1.2 ms: kafka.request.logger during `python -m exchange.bench actors`).
# It runs at the hosts' niceness (actors/host_actor.py HOST_NICENESS), ahead of load
# generators and Ray's daemons; EXCHANGE_KAFKA_NICENESS overrides.
KAFKA_NICENESS = int(os.environ.get("EXCHANGE_KAFKA_NICENESS", "-10"))
# The hosts run at SCHED_FIFO 1 (actors/host_actor.py HOST_REALTIME), ahead of every
# ordinary thread: where they share the cores with the broker, a flush's request then
# waited for the hosts themselves. So the broker's network and request-handler threads
# (named data-plane-*) run at the same priority; its collector, compiler and the rest do
# not. Eight pairs of `python -m exchange.bench actors` alternated with them ordinary
# (docs/benchmarks.md, 2026-12-02 midday): the hosts' flush p99 at half load lower in all
# eight. EXCHANGE_KAFKA_REALTIME overrides (0: none).
KAFKA_REALTIME = int(os.environ.get("EXCHANGE_KAFKA_REALTIME", "1"))


def realtime_threads(pid: int, prefix: str, priority: int) -> tuple[int, int]:
    """Puts each thread of ``pid`` whose name starts with ``prefix`` at SCHED_FIFO
    ``priority``; returns how many were set and how many refused (not root, no
    CAP_SYS_NICE)."""
    done = refused = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            if not Path(f"/proc/{pid}/task/{tid}/comm").read_text().startswith(prefix):
                continue
            os.sched_setscheduler(int(tid), os.SCHED_FIFO, os.sched_param(priority))
            done += 1
        except PermissionError:
            refused += 1
        except OSError:         # the thread ended meanwhile
            pass
    return done, refused


def kafka_api_versions(port: int) -> bool:
    """True when a Kafka broker on the port answers an ApiVersions request (v0)."""
    client = b"stack-health"
    body = struct.pack(">hhih", 18, 0, 7, len(client)) + client
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            s.settimeout(2)
            s.sendall(struct.pack(">i", len(body)) + body)
            head = s.recv(4)
            if len(head) < 4:
                return False
            size = struct.unpack(">i", head)[0]
            reply = b""
            while len(reply) < size:
                chunk = s.recv(size - len(reply))
                if not chunk:
                    return False
                reply += chunk
            correlation, error = struct.unpack(">ih", reply[:6])
            return correlation == 7 and error == 0
    except OSError:
        return False


class Postgres(Part):
    def __init__(self):
        super().__init__("postgres", [PORTS["postgres"]])
        self._bin: Path | None = None

    def address(self) -> str:
        return f"postgresql://{PG_USER}@127.0.0.1:{PORTS['postgres']}/{PG_DB}"

    def env(self) -> dict:
        return {"EXCHANGE_POSTGRES_DSN": self.address()}

    @property
    def data(self) -> Path:
        return self.dir / "data"

    @property
    def user(self) -> str:
        """The server never runs as root (initdb refuses): as postgres, or a user we add."""
        if not is_root():
            return current_user()
        for name in ("postgres", "exchange"):
            try:
                pwd.getpwnam(name)
                return name
            except KeyError:
                continue
        run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
             "exchange"], what="useradd exchange")
        return "exchange"

    def bin(self) -> Path:
        if self._bin is None:
            found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"),
                           key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0)
            if not found:
                raise StackError("PostgreSQL server binaries not found in /usr/lib/postgresql")
            self._bin = found[-1].parent
        return self._bin

    def install(self) -> None:
        if not list(Path("/usr/lib/postgresql").glob("*/bin/initdb")):
            if is_root():
                # Debian's package would create and start a 'main' cluster on 5432: we run our own.
                conf = Path("/etc/postgresql-common/createcluster.conf")
                conf.parent.mkdir(parents=True, exist_ok=True)
                if not conf.exists():
                    conf.write_text("create_main_cluster = false\n")
            apt_install(["postgresql"], "the exchange's database is PostgreSQL")
        if not shutil.which("psql") and not (self.bin() / "psql").exists():
            apt_install(["postgresql-client"], "psql is used to create the database")

    def pids(self) -> list[int]:
        pid = read_pid(self.data / "postmaster.pid")
        return [pid] if pid_alive(pid) else []

    def answers(self) -> bool:
        isready = self.bin() / "pg_isready"
        if not isready.exists():
            return port_answers(PORTS["postgres"])
        return subprocess.run([str(isready), "-q", "-h", "127.0.0.1", "-p", str(PORTS["postgres"])],
                              capture_output=True).returncode == 0

    def _reachable_by(self, user: str, path: Path) -> bool:
        if user == current_user():
            return True
        return subprocess.run(["runuser", "-u", user, "--", "test", "-x", str(path)],
                              capture_output=True).returncode == 0

    def _prepare_dir(self, user: str) -> None:
        STATE.mkdir(parents=True, exist_ok=True)
        if not self.dir.exists():
            if self._reachable_by(user, STATE):
                self.dir.mkdir()
            else:
                # The project folder is not traversable by the server's user (e.g. under
                # /root): keep the data beside it, reached through state/postgres.
                outside = Path("/var/tmp") / f"exchange-pg-{abs(hash(str(STATE))) % 10**8}"
                outside.mkdir(parents=True, exist_ok=True)
                self.dir.symlink_to(outside)
                say(self.name, f"state folder not reachable by user {user}: data in {outside}")
        if is_root():
            shutil.chown(self.dir.resolve(), user, user)
            os.chmod(self.dir.resolve(), 0o700)

    def start(self) -> None:
        user = self.user
        self._prepare_dir(user)
        log = self.dir / "postgres.log"
        sockets = self.dir / "run"
        if not (self.data / "PG_VERSION").exists():
            say(self.name, f"initdb {self.data} (server user {user})")
            run([str(self.bin() / "initdb"), "-D", str(self.data), "-U", PG_USER, "--auth=trust",
                 "-E", "UTF8", "--no-locale"], what="initdb", user=user)
            with open(self.data / "postgresql.conf", "a") as conf:
                conf.write("\n# exchange local stack\n"
                           "listen_addresses = '127.0.0.1'\n"
                           f"port = {PORTS['postgres']}\n"
                           "shared_buffers = 64MB\n"
                           "max_connections = 200\n"
                           "wal_level = logical\n"
                           "max_wal_senders = 10\n"
                           "max_replication_slots = 10\n"
                           "logging_collector = off\n")
        run(["mkdir", "-p", str(sockets)], what="socket dir", user=user)
        run([str(self.bin() / "pg_ctl"), "-D", str(self.data), "-l", str(log), "-w", "-t", "60",
             "-o", f"-k {sockets}", "start"], what="pg_ctl start", user=user)
        wait_until(self.answers, what="PostgreSQL", timeout=30, log=log)
        psql = str(self.bin() / "psql") if (self.bin() / "psql").exists() else "psql"
        base = [psql, "-X", "-q", "-h", "127.0.0.1", "-p", str(PORTS["postgres"]), "-U", PG_USER]
        exists = run(base + ["-d", "postgres", "-tAc",
                             f"SELECT 1 FROM pg_database WHERE datname = '{PG_DB}'"],
                     what="psql (database check)")
        if exists.strip() != "1":
            run(base + ["-d", "postgres", "-c", f"CREATE DATABASE {PG_DB}"], what="CREATE DATABASE")
            say(self.name, f"created database {PG_DB}")

    def stop(self) -> None:
        if not self.pids():
            return
        say(self.name, "stopping (pg_ctl stop -m fast)")
        run([str(self.bin() / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop"],
            what="pg_ctl stop", user=self.user)


class DynamoDB(Part):
    """dynalite: an open-source DynamoDB API server (in-memory LevelDB) from npm."""

    def __init__(self):
        super().__init__("dynamodb", [PORTS["dynamodb"]])

    def address(self) -> str:
        return f"http://127.0.0.1:{PORTS['dynamodb']}"

    def env(self) -> dict:
        return {"EXCHANGE_DYNAMODB_ENDPOINT": self.address(), "AWS_EC2_METADATA_DISABLED": "true"}

    @property
    def cli(self) -> Path:
        return self.dir / "node_modules" / "dynalite" / "cli.js"

    def install(self) -> None:
        if self.cli.exists():
            return
        if not shutil.which("node") or not shutil.which("npm"):
            apt_install(["nodejs", "npm"], "the DynamoDB-compatible server (dynalite) runs on Node.js 20+")
        major = int(run(["node", "-p", "process.versions.node.split('.')[0]"], what="node version"))
        if major < 20:
            raise StackError(f"dynalite needs Node.js 20 or newer; this machine has {major}")
        self.dir.mkdir(parents=True, exist_ok=True)
        for name in ("package.json", "package-lock.json"):
            shutil.copy(ROOT / "cluster/dynamodb" / name, self.dir / name)
        say(self.name, "npm install dynalite (cluster/dynamodb/package.json)")
        run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], what="npm ci dynalite",
            cwd=self.dir, timeout=600)

    def answers(self) -> bool:
        request = urllib.request.Request(
            self.address(), data=b"{}", method="POST",
            headers={"Content-Type": "application/x-amz-json-1.0",
                     "X-Amz-Target": "DynamoDB_20120810.ListTables",
                     "Authorization": "AWS4-HMAC-SHA256 Credential=local/20260101/us-east-1/"
                                      "dynamodb/aws4_request, SignedHeaders=host, Signature=0",
                     "X-Amz-Date": "20260101T000000Z"})
        try:
            with urllib.request.urlopen(request, timeout=2) as reply:
                return "TableNames" in json.loads(reply.read())
        except (OSError, ValueError):
            return False

    def start(self) -> None:
        log = self.dir / "dynalite.log"
        pid = spawn(["node", str(self.cli), "--host", "127.0.0.1", "--port", str(PORTS["dynamodb"]),
                     "--createTableMs", "0", "--deleteTableMs", "0", "--updateTableMs", "0"],
                    log=log)
        (self.dir / "pid").write_text(f"{pid}\n")
        wait_until(self.answers, what="dynalite", timeout=30, proc_alive=lambda: pid_alive(pid), log=log)


def topology() -> dict:
    with open(TOPOLOGY, "rb") as f:
        return tomllib.load(f)


class Ray(Part):
    """A head node labelled as the Region and worker nodes labelled per jurisdiction."""

    def __init__(self):
        super().__init__("ray", [PORTS["ray_gcs"], PORTS["ray_dashboard"], PORTS["ray_client"]])
        topo = topology()
        self.label_keys = topo["labels"]
        self.nodes = topo["local_nodes"]
        for i, _ in enumerate(self.nodes):
            self.ports += [RAY_NODE_PORT_BASE + 10 * i + k for k in range(6)]
        if SERVE_EDGE not in ("haproxy", "default"):
            raise StackError(f"EXCHANGE_SERVE_EDGE={SERVE_EDGE!r}: use haproxy or default")
        if SERVE_EDGE == "haproxy":
            self.ports += list(HAPROXY_PORTS.values())

    @property
    def temp_dir(self) -> Path:
        # Ray's unix sockets live under it: keep the path short (108-byte socket limit).
        return Path("/tmp") / f"ray-exchange-{PORTS['ray_gcs']}"

    @property
    def token_path(self) -> Path:
        return self.dir / "token"

    @property
    def haproxy_dir(self) -> Path:
        # Short: Serve puts a 56-character hash directory under it, and HAProxy refuses an
        # admin socket path over 97 bytes. pids() finds HAProxy by this path too.
        return Path("/tmp") / f"rx-haproxy-{PORTS['ray_gcs']}"

    def address(self) -> str:
        return f"127.0.0.1:{PORTS['ray_gcs']}"

    def dashboard(self) -> str:
        return f"http://127.0.0.1:{PORTS['ray_dashboard']}"

    def env(self) -> dict:
        return {"RAY_ADDRESS": self.address(), "RAY_AUTH_MODE": "token",
                "RAY_AUTH_TOKEN_PATH": str(self.token_path),
                "EXCHANGE_RAY_DASHBOARD": self.dashboard(), "EXCHANGE_SERVE_EDGE": SERVE_EDGE}

    def ray_env(self) -> dict:
        env = dict(os.environ)
        env.update(self.env())
        env.pop("RAY_ADDRESS", None)
        # `ray job submit` runs entrypoints with the PATH the nodes started with.
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        env["RAY_USAGE_STATS_ENABLED"] = "0"
        if SERVE_EDGE == "haproxy":
            # Read by Serve when it starts (controller, proxy, replicas): every node gets them.
            d = self.haproxy_dir
            env.update({"RAY_SERVE_ENABLE_HA_PROXY": "1", "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1",
                        "RAY_SERVE_HAPROXY_CONFIG_FILE_LOC": str(d / "haproxy.cfg"),
                        "RAY_SERVE_HAPROXY_SOCKET_PATH": str(d / "admin.sock"),
                        "RAY_SERVE_HAPROXY_SERVER_STATE_BASE": str(d),
                        "RAY_SERVE_HAPROXY_SERVER_STATE_FILE": str(d / "server-state"),
                        "RAY_SERVE_HAPROXY_STATS_PORT": str(HAPROXY_PORTS["stats"]),
                        "RAY_SERVE_HAPROXY_METRICS_PORT": str(HAPROXY_PORTS["metrics"])})
        else:
            for key in ("RAY_SERVE_ENABLE_HA_PROXY", "RAY_SERVE_THROUGHPUT_OPTIMIZED"):
                env.pop(key, None)
        return env

    def ray_cli(self) -> str:
        cli = Path(sys.executable).parent / "ray"
        if cli.exists():
            return str(cli)
        found = shutil.which("ray")
        if not found:
            raise StackError("the `ray` command is missing: install the project first "
                             "(python3 -m pip install -e '.[test]')")
        return found

    def pids(self) -> list[int]:
        """Every process of our Ray cluster: those whose command line names our temp dir or GCS."""
        temp, gcs = str(self.temp_dir).encode(), f":{PORTS['ray_gcs']}".encode()
        haproxy = str(self.haproxy_dir).encode()
        found = []
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit() or int(proc.name) == os.getpid():
                continue
            try:
                cmd = (proc / "cmdline").read_bytes()
            except OSError:
                continue
            args = cmd.split(b"\0")
            ours = temp in cmd or haproxy in cmd or (b"ray" in cmd and any(
                a.endswith(gcs) or (gcs + b" ") in a for a in args))
            if ours and b"stack.py" not in cmd:
                found.append(int(proc.name))
        return [p for p in found if pid_alive(p)]

    def running(self) -> bool:
        return port_answers(PORTS["ray_gcs"]) and bool(self.pids())

    def node_count(self) -> int | None:
        """Alive nodes, from the dashboard's state API (token-authenticated)."""
        try:
            token = self.token_path.read_text().strip()
            request = urllib.request.Request(f"{self.dashboard()}/api/v0/nodes?limit=100",
                                             headers={"Authorization": f"Bearer {token}"})
            with urllib.request.urlopen(request, timeout=3) as reply:
                nodes = json.loads(reply.read())["data"]["result"]["result"]
            return sum(1 for n in nodes if n.get("state") == "ALIVE")
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def answers(self) -> bool:
        return self.node_count() == len(self.nodes)

    def _labels(self, node: dict) -> str:
        keys = self.label_keys
        return (f"{keys['site']}={node['site']},{keys['jurisdiction']}={node['jurisdiction']},"
                f"{keys['node']}={node['name']}")

    def start(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        if not self.token_path.exists():
            self.token_path.write_text(secrets.token_hex(32) + "\n")
            os.chmod(self.token_path, 0o600)
        env = self.ray_env()
        ray = self.ray_cli()
        if SERVE_EDGE == "haproxy":
            self.haproxy_dir.mkdir(parents=True, exist_ok=True)
        say(self.name, f"Serve edge: {'HAProxy ingress' if SERVE_EDGE == 'haproxy' else 'default proxy'} "
                       f"(EXCHANGE_SERVE_EDGE={SERVE_EDGE})")
        for i, node in enumerate(self.nodes):
            base = RAY_NODE_PORT_BASE + 10 * i
            common = ["--node-ip-address", "127.0.0.1", "--num-cpus", str(node.get("num_cpus", 2)),
                      "--labels", self._labels(node),
                      "--node-manager-port", str(base), "--object-manager-port", str(base + 1),
                      "--dashboard-agent-listen-port", str(base + 2),
                      "--dashboard-agent-grpc-port", str(base + 3),
                      "--runtime-env-agent-port", str(base + 4),
                      "--metrics-export-port", str(base + 5),
                      "--object-store-memory", str(node.get("object_store_mb", 256) * 2**20),
                      "--disable-usage-stats"]
            if node.get("head"):
                cmd = [ray, "start", "--head", "--port", str(PORTS["ray_gcs"]),
                       "--temp-dir", str(self.temp_dir),
                       "--include-dashboard", "true", "--dashboard-host", "127.0.0.1",
                       "--dashboard-port", str(PORTS["ray_dashboard"]),
                       "--ray-client-server-port", str(PORTS["ray_client"]), *common]
            else:
                # One log monitor per physical host (Ray's advice): the head's.
                cmd = [ray, "start", "--address", self.address(),
                       "--include-log-monitor", "false", *common]
            say(self.name, f"ray start {'--head ' if node.get('head') else ''}"
                           f"node {node['name']} ({node['site']}, {node['jurisdiction']})")
            out = run(cmd, what=f"ray start ({node['name']})", env=env, timeout=180)
            (self.dir / f"{node['name']}.log").write_text(out)
        wait_until(self.answers, what=f"Ray ({len(self.nodes)} nodes)", timeout=90)

    def stop(self) -> None:
        pids = self.pids()
        if not pids:
            return
        say(self.name, f"stopping {len(pids)} Ray processes of this stack")
        # Raylets first so they do not restart their children, then the rest.
        def kind(pid):
            try:
                return Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                return b""
        raylets = [p for p in pids if b"raylet" in kind(p).split(b"\0")[0]]
        terminate(raylets, what=self.name, grace=10)
        terminate(self.pids(), what=self.name, grace=3)
        shutil.rmtree(self.temp_dir, ignore_errors=True)
        shutil.rmtree(self.haproxy_dir, ignore_errors=True)


PARTS = [Kafka, Postgres, DynamoDB, Ray]


# ---------------------------------------------------------------- commands

def write_state(parts: list[Part]) -> None:
    env = {}
    for part in parts:
        env.update(part.env())
    stack = {"parts": {p.name: p.address() for p in parts}, "env": env, "started": time.time()}
    ray = next(p for p in parts if isinstance(p, Ray))
    stack["parts"]["ray_dashboard"] = ray.dashboard()
    (STATE / "stack.json").write_text(json.dumps(stack, indent=2) + "\n")
    (STATE / "env.sh").write_text("".join(f"export {k}={v}\n" for k, v in env.items()))


def check_ports(parts: list[Part]) -> None:
    """Refuses to start anything when a port we need is held by something not ours."""
    problems = []
    for part in parts:
        if part.running():
            continue
        for port in part.ports:
            if port_in_use(port):
                problems.append(f"port {port} (needed by {part.name}) is taken by {port_holder(port)}")
    if problems:
        raise StackError("cannot start the stack:\n  " + "\n  ".join(problems) +
                         "\nstop that process, or move our port with EXCHANGE_*_PORT "
                         "(see cluster/stack.py PORTS)")


# What the data under STATE means. Layout 2 (2026-12-01): every record in a host's journal
# counts (hosts hold a transaction open as a fencing lease instead of committing one per
# flush, and readers read uncommitted). A log written under layout 1 may hold aborted
# batches that nobody was ever answered for; rather than misread them, `up` wipes the
# Kafka and PostgreSQL data of an older layout (the projections derive from the logs).
DATA_LAYOUT = "2"


def check_layout(parts: list["Part"]) -> None:
    marker = STATE / "data-layout"
    have = marker.read_text().strip() if marker.exists() else "1"
    if have == DATA_LAYOUT:
        return
    old = [p for p in parts if p.name in ("kafka", "postgres") and (p.dir / "data").exists()]
    # Ray too: its hosts and stream replicas hold state and offsets read from that data
    running = [p.name for p in parts if (p in old or p.name == "ray") and p.running()] if old else []
    if running:
        raise StackError(f"{', '.join(running)} run(s) with data of layout {have}, this code writes "
                         f"layout {DATA_LAYOUT}: run `cluster/stack.py down`, then `up` wipes that data")
    for p in old:
        say(p.name, f"data layout {have} -> {DATA_LAYOUT}: wiping {p.dir / 'data'}")
        shutil.rmtree((p.dir / "data").resolve())
    marker.write_text(DATA_LAYOUT + "\n")


def cmd_up(_args) -> int:
    STATE.mkdir(parents=True, exist_ok=True)
    parts = [cls() for cls in PARTS]
    check_ports(parts)
    check_layout(parts)
    started: list[Part] = []
    try:
        for part in parts:
            part.install()
        for part in parts:
            if part.running() and part.answers():
                say(part.name, f"already running at {part.address()}")
                continue
            if part.running():
                say(part.name, "running but not answering: restarting it")
                part.stop()
            say(part.name, "starting")
            started.append(part)
            part.start()
            say(part.name, f"up at {part.address()}")
    except BaseException:
        for part in reversed(started):
            try:
                part.stop()
            except StackError as exc:
                print(f"while cleaning up: {exc}", file=sys.stderr)
        raise
    write_state(parts)
    say("stack", f"up in {time.monotonic() - _T0:.1f}s; clients: source {STATE / 'env.sh'}")
    print_status(parts)
    return 0


def cmd_down(_args) -> int:
    for cls in reversed(PARTS):
        part = cls()
        if part.running():
            part.stop()
        else:
            say(part.name, "not running")
    (STATE / "stack.json").unlink(missing_ok=True)
    say("stack", "down")
    return 0


def memory_mb(pids: list[int]) -> float:
    """Proportional set size of the processes and their children (MB)."""
    seen, todo, total = set(), list(pids), 0
    children: dict[int, list[int]] = {}
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                ppid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(proc.name))
            except (OSError, IndexError, ValueError):
                pass
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        todo.extend(children.get(pid, []))
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


def _tree(pids: list[int]) -> set[int]:
    children: dict[int, list[int]] = {}
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                ppid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(proc.name))
            except (OSError, IndexError, ValueError):
                pass
    seen, todo = set(), list(pids)
    while todo:
        pid = todo.pop()
        if pid not in seen:
            seen.add(pid)
            todo.extend(children.get(pid, []))
    return seen


def cpu_ticks(pids: set[int]) -> int:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])   # utime + stime
        except (OSError, IndexError, ValueError):
            pass
    return total


def usage(parts: list[Part], seconds: float) -> None:
    """Prints each running part's memory (PSS) and CPU over a window, and the totals."""
    trees = {p.name: _tree(p.pids()) for p in parts if p.running()}
    before = {name: cpu_ticks(t) for name, t in trees.items()}
    time.sleep(seconds)
    hz, cores = os.sysconf("SC_CLK_TCK"), os.cpu_count() or 1
    figures = {}
    for part in parts:
        if part.name not in trees:
            continue
        pids = trees[part.name]
        cpu = (cpu_ticks(pids) - before[part.name]) / hz / seconds / cores * 100
        figures[part.name] = {"memory_mb": round(memory_mb(list(pids))), "cpu_pct_of_machine": round(cpu, 2)}
    figures["total"] = {"memory_mb": sum(f["memory_mb"] for f in figures.values()),
                        "cpu_pct_of_machine": round(sum(f["cpu_pct_of_machine"] for f in figures.values()), 2)}
    print(json.dumps({"idle_usage_window_s": seconds, "cores": cores, **figures}))


def print_status(parts: list[Part]) -> bool:
    ok = True
    print(f"{'part':<10} {'address':<48} {'state':<14} {'memory':>8}")
    for part in parts:
        running = part.running()
        answers = running and part.answers()
        ok &= answers
        state = "answers" if answers else ("NOT ANSWERING" if running else "stopped")
        mem = f"{memory_mb(part.pids()):.0f} MB" if running else "-"
        print(f"{part.name:<10} {part.address():<48} {state:<14} {mem:>8}")
        if isinstance(part, Ray):
            nodes = part.node_count() if running else None
            print(f"{'  dashboard':<10} {part.dashboard():<48} "
                  f"{(f'{nodes} nodes alive' if nodes is not None else '-'):<14}")
    return ok


def cmd_status(args) -> int:
    parts = [cls() for cls in PARTS]
    ok = print_status(parts)
    if args.usage:
        usage(parts, args.usage)
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="cluster/stack.py",
        description="The exchange's local stack: Kafka (KRaft), PostgreSQL, a DynamoDB-compatible "
                    "server (dynalite) and a labelled Ray cluster, on 127.0.0.1. State, logs and "
                    f"pid files in {STATE}.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("up", help="install what is missing and start every part (idempotent)")
    sub.add_parser("down", help="stop every part this stack started (idempotent)")
    status = sub.add_parser("status", help="name each part, its address, and whether it answers "
                                           "(exit 1 when one does not)")
    status.add_argument("--usage", type=float, metavar="SECONDS", default=0,
                        help="also measure each part's memory and CPU over SECONDS (JSON line)")
    args = parser.parse_args(argv)
    handler = {"up": cmd_up, "down": cmd_down, "status": cmd_status}[args.command]
    try:
        return handler(args)
    except StackError as exc:
        print(f"\nstack {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\nstack {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
