"""``python -m skyweave.execute JOB.json [--outcome OUTCOME.json]``: run ONE dispatched activity to
completion and write its outcome — what a Slurm job, a container or a Kubernetes pod executes.

``--started FILE`` is written (the start time) when the activity starts, once the job is read and
the environment set up: a launcher counts the activity's timeout from then, not from the
interpreter's start.

The job file (``-``: standard input) holds the dispatch and its execution environment
(``executors/job.py``).  The activity runs through the same boundary as under every other
executor (``executors/boundary.py``: context, aspects, products moved into storage, the log
captured), and its outcome is written as JSON to ``--outcome`` atomically (a temporary file beside
it, then a rename: whoever waits for the file never reads half of it), or to standard output when
``--outcome`` is ``-`` or not given.

Exit status (the outcome file says the rest):

* 0 — the activity finished;
* 1 — it failed (the outcome says whether it is ``retryable``);
* 3 — it needs an input it did not get (``activity.needs_input``);
* 2 — the job file is missing, unreadable or not a job: nothing ran, no outcome was written;
* 4 — the activity ran but its outcome could not be written.

Timeouts, cancellation and memory limits are the launcher's to enforce (it can stop this process;
it should stop its process group, which the commands a task starts belong to).  A process stopped
that way writes no outcome: the launcher reports it.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from skyweave.executors.boundary import HOST, Boundary
from skyweave.executors.job import (
    FinalOutcome,
    JobError,
    decode_job,
    encode_outcome,
    write_atomically,
)
from skyweave.executors.resolve import preload, use_import_path
from skyweave.model.messages import ActivityFailed, ActivityFinished, ActivityNeedsInput, ActivityStarted

EXIT_FINISHED, EXIT_FAILED, EXIT_BAD_JOB, EXIT_NEEDS_INPUT, EXIT_NO_OUTCOME = 0, 1, 2, 3, 4


def _say(text: str) -> None:
    print(f"skyweave.execute: {text}", file=sys.stderr, flush=True)


def _mark_started(path: Path) -> bool:
    try:
        write_atomically(path, repr(time.time()).encode())
    except OSError as exc:
        _say(f"cannot write the start mark {str(path)!r}: {exc.strerror or exc}")
        return False
    return True


def exit_code(outcome: FinalOutcome) -> int:
    if isinstance(outcome, ActivityFinished):
        return EXIT_FINISHED
    if isinstance(outcome, ActivityNeedsInput):
        return EXIT_NEEDS_INPUT
    return EXIT_FAILED


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m skyweave.execute",
        description="Run one dispatched activity to completion and write its outcome.")
    parser.add_argument("job", help="the job file (JSON: a dispatch and its environment); - reads stdin")
    parser.add_argument("--outcome", default="-",
                        help="where to write the outcome (JSON, atomically); - (the default) is stdout")
    parser.add_argument("--started", default=None,
                        help="a file to write (atomically: the start time, epoch seconds) when the "
                             "activity starts, once the job is read and the environment set up")
    args = parser.parse_args(argv)
    try:
        data = sys.stdin.buffer.read() if args.job == "-" else Path(args.job).read_bytes()
    except OSError as exc:
        _say(f"cannot read the job file {args.job!r}: {exc.strerror or exc}")
        return EXIT_BAD_JOB
    try:
        dispatch, env = decode_job(data, source="standard input" if args.job == "-" else repr(args.job))
    except JobError as exc:
        _say(f"{exc.message}\n  hint: {exc.hint}")
        return EXIT_BAD_JOB
    use_import_path(env.import_path)
    for problem in preload(env.preload):
        _say(f"preload of {problem}")
    try:
        boundary = Boundary(env, exclusive_process=True)
    except Exception as exc:  # an aspect that cannot be loaded: the activity cannot run here
        outcome: FinalOutcome = ActivityFailed(
            activity_id=dispatch.activity_id, attempt=dispatch.attempt, worker=env.worker,
            error_type="skyweave.WorkerError", message=f"the aspects cannot be set up: {exc}",
            retryable=False, host=HOST, pid=os.getpid(), at=time.time())
    else:
        if args.started is not None and not _mark_started(Path(args.started)):
            return EXIT_NO_OUTCOME
        ran = boundary.execute(dispatch)
        assert not isinstance(ran, ActivityStarted)
        outcome = ran
    encoded = encode_outcome(outcome)
    try:
        if args.outcome == "-":
            sys.stdout.buffer.write(encoded + b"\n")
            sys.stdout.buffer.flush()
        else:
            write_atomically(Path(args.outcome), encoded)
    except OSError as exc:
        _say(f"cannot write the outcome to {args.outcome!r}: {exc.strerror or exc}")
        return EXIT_NO_OUTCOME
    return exit_code(outcome)


if __name__ == "__main__":
    sys.exit(main())
