"""``scripts/services.sh run``: the server it starts is reachable by the URL the command gets, and is
stopped, its data removed, when the command fails."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from tests.services import service_url

pytestmark = pytest.mark.integration

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "services.sh"


def test_run_gives_the_url_and_stops_the_server_even_when_the_command_fails(tmp_path: Path) -> None:
    service_url("postgres")  # PostgreSQL is installed here (else skip, or fail under make test)
    env = {**os.environ, "SKYWEAVE_SERVICES_DIR": str(tmp_path / "state")}
    env.pop("SKYWEAVE_TEST_POSTGRES_URL", None)
    probe = ("psql -tAc 'select 42' \"$SKYWEAVE_TEST_POSTGRES_URL\"; "
             "echo \"$SKYWEAVE_TEST_POSTGRES_URL $SKYWEAVE_REQUIRE_SERVICES\"; exit 3")
    done = subprocess.run([str(SCRIPT), "run", "postgres", "--", "sh", "-c", probe], env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 3, done.stderr
    answer, line = done.stdout.split()[0], done.stdout.split()[1:]
    assert answer == "42"
    url, required = make_url(line[0]), line[1]
    assert required == "1"
    assert url.host == "127.0.0.1" and url.port is not None and url.port > 1024
    with socket.socket() as sock:  # stopped: nothing listens on its port any more
        assert sock.connect_ex(("127.0.0.1", url.port)) != 0
    assert sorted(p.name for p in (tmp_path / "state").iterdir()) == []  # no env file, no data dir left


def test_run_slurm_gives_a_cluster_that_runs_jobs_and_stops_it_after(tmp_path: Path) -> None:
    """A second one-node cluster beside the one the suite uses (its own ports and state), a job run
    on it with ``srun``, then slurmctld and slurmd stopped and their directory removed."""
    service_url("slurm")  # Slurm is installed here (else skip, or fail under make test)
    env = {**os.environ, "SKYWEAVE_SERVICES_DIR": str(tmp_path / "state")}
    env.pop("SKYWEAVE_TEST_SLURM_URL", None)
    probe = ('conf="${SKYWEAVE_TEST_SLURM_URL#slurm://?conf=}"; SLURM_CONF="$conf" srun -N1 echo ran-on-slurm; '
             'echo "$conf"; cat "$(dirname "$conf")/slurmctld.pid"; exit 3')
    done = subprocess.run([str(SCRIPT), "run", "slurm", "--", "sh", "-c", probe], env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 3, done.stderr
    ran, conf, pid = done.stdout.split()
    assert ran == "ran-on-slurm"
    assert not Path(conf).exists()  # its state, spool, logs and configuration removed
    with pytest.raises(ProcessLookupError):
        os.kill(int(pid), 0)  # slurmctld stopped
    assert sorted(p.name for p in (tmp_path / "state").iterdir()) == []
