"""The boundary around user code, called directly (no executor): what goes in, what comes out."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from skyweave.executors.base import ExecutionEnv
from skyweave.executors.boundary import Boundary, execute
from skyweave.model.messages import ActivityFailed, ActivityFinished, ActivityNeedsInput
from skyweave.model.specs import OutputSpec, TaskKind
from skyweave.storage.local import LocalStorage

from .helpers import by_module, by_path, dispatch, product_ref, sha256


def finished(outcome: object) -> ActivityFinished:
    assert isinstance(outcome, ActivityFinished), outcome
    return outcome


def failed(outcome: object) -> ActivityFailed:
    assert isinstance(outcome, ActivityFailed), outcome
    return outcome


# --------------------------------------------------------------------------------------------- python


@pytest.mark.parametrize(
    "ref", [by_path("add"), by_module("add"), by_module("decorated_add"), by_path("async_add")]
)
def test_python_task_by_path_module_decorated_or_async(env: ExecutionEnv, ref: str) -> None:
    outcome = finished(execute(dispatch(ref, {"x": 2, "y": 3}), env))
    assert outcome.result == 5
    assert outcome.products == []
    assert outcome.worker == "wrk-test"
    assert outcome.host
    assert outcome.pid
    assert 0 < outcome.started_at <= outcome.at
    assert outcome.aspects == ["log-capture", "timing", "validate-inputs"]
    assert outcome.log_uri == ""  # it wrote nothing, so it has no log file


def test_returned_products_are_moved_checksummed_and_replaced_by_markers(env: ExecutionEnv) -> None:
    d = dispatch(by_path("make_products"), {"n": 2})
    outcome = finished(execute(d, env))

    assert len(outcome.products) == 3
    by_id = {p.id: p for p in outcome.products}
    files = outcome.result["files"]
    summary_marker = outcome.result["nested"]["summary"][0]
    assert [set(m) for m in files] == [{"$product"}, {"$product"}]
    assert outcome.result["count"] == 2
    assert outcome.result["where"] == "/somewhere"  # paths become strings

    for i, marker in enumerate(files):
        product = by_id[marker["$product"]]
        path = LocalStorage.local_path(product.uri)
        content = f"events of chip {i}\n".encode()
        assert path == env.storage_root / "run-test" / d.activity_id / f"chip-{i}.evt"
        assert path.read_bytes() == content
        assert product.checksum == sha256(content)
        assert product.size == len(content)
        assert product.name == f"chip-{i}.evt"
        assert product.type == "ep.l1.events"
        assert product.detector == f"cmos{i}"
        assert product.attributes == {"chip": i}
        assert product.obs_id == "obs-0001"  # from the dispatch
        assert product.version == "1.0"  # the task's version
        assert product.id.startswith("prd-")

    summary = by_id[summary_marker["$product"]]
    assert summary.name == "summary"
    assert summary.obs_id == "obs-override"
    assert LocalStorage.local_path(summary.uri).relative_to(env.storage_root).as_posix() == (
        f"run-test/{d.activity_id}/sub/summary.txt"
    )
    # moved, not copied: the work directory is gone after a success
    assert not (env.work_root / f"{d.activity_id}-1").exists()


def test_nested_product_markers_are_bound_as_readable_products(env: ExecutionEnv, tmp_path: Path) -> None:
    files = {}
    for name in ("a", "b", "c"):
        files[name] = tmp_path / f"{name}.txt"
        files[name].write_text(f"content {name}")
    products = {f"prd-{n}": product_ref(path, f"prd-{n}", type=f"t{n}") for n, path in files.items()}
    arguments = {
        "items": [{"$product": "prd-a"}, {"deep": {"$product": "prd-b"}}],
        "single": {"$product": "prd-c"},
    }
    outcome = finished(execute(dispatch(by_path("read_inputs"), arguments, products=products), env))
    assert outcome.result == {
        "items": [
            {"text": "content a", "id": "prd-a", "type": "ta"},
            {"deep": {"text": "content b", "id": "prd-b", "type": "tb"}},
        ],
        "single": {"text": "content c", "id": "prd-c", "type": "tc"},
    }


def test_an_input_returned_as_is_stays_where_it_is(env: ExecutionEnv, tmp_path: Path) -> None:
    source = tmp_path / "in.txt"
    source.write_text("input")
    products = {"prd-in": product_ref(source, "prd-in")}
    outcome = finished(execute(dispatch(by_path("pass_through"), {"single": {"$product": "prd-in"}},
                                        products=products), env))
    assert outcome.result == {"$product": "prd-in"}
    assert outcome.products == []
    assert source.read_text() == "input"


def test_missing_input_becomes_needs_input(env: ExecutionEnv) -> None:
    outcome = execute(dispatch(by_path("needs_attitude"), {"obs_id": "obs-7"}), env)
    assert isinstance(outcome, ActivityNeedsInput)
    assert outcome.need.param == "attitude"
    assert outcome.need.product_type == "ep.aux.attitude"
    assert outcome.need.match == {"obs_id": "obs-7"}
    assert outcome.need.reason == "no attitude data for obs-7"
    assert outcome.need.provider_params == {"window_s": 600}
    assert outcome.need.insufficient is False


def test_input_products_in_provider_params_become_markers(env: ExecutionEnv, tmp_path: Path) -> None:
    """A task may hand one of its inputs (e.g. a Folder archive) to the provider: it travels as a
    product marker, so the provider gets it back as a product and is keyed on its checksum."""
    source = tmp_path / "archive.txt"
    source.write_text("aux")
    products = {"prd-arch": product_ref(source, "prd-arch")}
    outcome = execute(dispatch(by_path("needs_attitude_from"),
                               {"obs_id": "obs-7", "archive": {"$product": "prd-arch"}}, products=products), env)
    assert isinstance(outcome, ActivityNeedsInput)
    assert outcome.need.provider_params == {"archive": {"$product": "prd-arch"},
                                            "also": [{"$product": "prd-arch"}], "margin": 60.0}


def test_a_new_product_in_provider_params_is_a_clear_error(env: ExecutionEnv) -> None:
    outcome = failed(execute(dispatch(by_path("needs_attitude_from_new"), {"obs_id": "obs-7"}), env))
    assert outcome.retryable is False
    assert "new Product" in outcome.message and "provider_params" in outcome.message


def test_insufficient_input_is_flagged(env: ExecutionEnv) -> None:
    outcome = execute(dispatch(by_path("attitude_gap")), env)
    assert isinstance(outcome, ActivityNeedsInput)
    assert outcome.need.insufficient is True
    assert outcome.need.reason == "gap of 40 s"


def test_fatal_is_not_retryable(env: ExecutionEnv) -> None:
    outcome = failed(execute(dispatch(by_path("fatal")), env))
    assert outcome.retryable is False
    assert outcome.error_type == "skyweave.errors.Fatal"
    assert "no GTI extension" in outcome.message
    assert "re-run L1 decoding" in outcome.message


def test_generic_exception_is_retryable_and_keeps_its_traceback(env: ExecutionEnv) -> None:
    d = dispatch(by_path("boom"))
    outcome = failed(execute(d, env))
    assert outcome.retryable is True
    assert outcome.error_type == "ValueError"
    assert outcome.message == "boom with 42"
    assert "_deep_helper" in outcome.traceback
    assert "raise ValueError" in outcome.traceback
    assert "ValueError: boom with 42" in outcome.traceback
    assert "boundary.py" not in outcome.traceback  # starts at user code
    assert (env.work_root / f"{d.activity_id}-1").exists() is False  # never asked for: never made


def test_result_that_is_not_json_like_fails_clearly(env: ExecutionEnv) -> None:
    outcome = failed(execute(dispatch(by_path("unstorable")), env))
    assert outcome.retryable is False
    assert outcome.message == (
        "task 'unstorable' returned a value of type object that cannot be stored; "
        "return JSON-like values or Product objects"
    )


def test_returned_product_without_a_file_fails_clearly(env: ExecutionEnv) -> None:
    outcome = failed(execute(dispatch(by_path("returns_missing_product")), env))
    assert outcome.retryable is False
    assert "/nonexistent/skyweave/never.fits" in outcome.message
    assert "does not exist" in outcome.message


def test_unknown_task_reference_fails_with_the_callables_available(env: ExecutionEnv) -> None:
    outcome = failed(execute(dispatch(by_path("no_such_task")), env))
    assert outcome.retryable is False
    assert "no 'no_such_task'" in outcome.message
    assert "add" in outcome.message  # the hint lists what is there


def test_new_version_of_a_task_file_is_picked_up(env: ExecutionEnv, tmp_path: Path) -> None:
    task_file = tmp_path / "evolving.py"
    task_file.write_text("def answer():\n    return 1\n")
    assert finished(execute(dispatch(f"{task_file}:answer", version="1"), env)).result == 1
    task_file.write_text("def answer():\n    return 2  # a new algorithm\n")
    assert finished(execute(dispatch(f"{task_file}:answer", version="2"), env)).result == 2
    assert finished(execute(dispatch(f"{task_file}:answer", version="1"), env)).result == 1


def test_timing_fills_usage(env: ExecutionEnv) -> None:
    outcome = finished(execute(dispatch(by_path("burn_cpu"), {"seconds": 0.05}), env))
    assert outcome.usage.cpu_user_s + outcome.usage.cpu_system_s >= 0.04
    assert outcome.usage.wall_s >= 0.04
    assert outcome.usage.max_rss_kb > 0


# --------------------------------------------------------------------------------------------- logs


def test_log_captures_print_logger_fd_and_subprocess_output(env: ExecutionEnv) -> None:
    d = dispatch(by_path("chatty"))
    outcome = finished(execute(d, env, exclusive_process=True))
    log = LocalStorage.local_path(outcome.log_uri).read_text()
    assert LocalStorage.local_path(outcome.log_uri) == env.log_root / f"{d.activity_id}.1.log"
    for line in ("hello from print", "hello from stderr", "hello from the activity logger",
                 "raw write to fd 1", "subprocess on fd 1"):
        assert line in log


def test_thread_mode_captures_only_the_activity_logger(
    env: ExecutionEnv, capfd: pytest.CaptureFixture[str]
) -> None:
    outcome = finished(Boundary(env, exclusive_process=False).execute(dispatch(by_path("chatty"))))
    log = LocalStorage.local_path(outcome.log_uri).read_text()
    assert "hello from the activity logger" in log
    assert "hello from print" not in log
    assert "hello from print" in capfd.readouterr().out


# --------------------------------------------------------------------------------------------- checks


def test_input_checksum_mismatch_is_refused(env: ExecutionEnv, tmp_path: Path) -> None:
    source = tmp_path / "att.fits"
    source.write_bytes(b"attitude v1")
    ref = product_ref(source, "prd-att", checksum=sha256(b"attitude v0"))
    outcome = failed(execute(dispatch(by_path("pass_through"), {"single": {"$product": "prd-att"}},
                                      products={"prd-att": ref}), env))
    assert outcome.retryable is False
    assert "validate-inputs" in outcome.message
    assert "does not match its recorded checksum" in outcome.message
    assert "validate-inputs" in outcome.aspects


def test_checksums_are_not_read_when_validation_is_off(tmp_path: Path) -> None:
    env = ExecutionEnv(worker="w", storage_root=tmp_path / "s", work_root=tmp_path / "w",
                       log_root=tmp_path / "l", validate_checksums=False)
    source = tmp_path / "att.fits"
    source.write_bytes(b"attitude v1")
    ref = product_ref(source, "prd-att", checksum=sha256(b"attitude v0"))
    outcome = execute(dispatch(by_path("pass_through"), {"single": {"$product": "prd-att"}},
                               products={"prd-att": ref}), env)
    assert isinstance(outcome, ActivityFinished)


def test_parameter_of_the_wrong_type_is_refused(env: ExecutionEnv) -> None:
    d = dispatch(by_path("add"), {"x": "two", "y": 3}, parameters={"x": "int", "y": "int"})
    outcome = failed(execute(d, env))
    assert outcome.retryable is False
    assert "parameter 'x'" in outcome.message
    assert "expects int, got str ('two')" in outcome.message


# --------------------------------------------------------------------------------------------- commands


def test_command_task_with_templated_arguments_makes_its_output(env: ExecutionEnv, tmp_path: Path) -> None:
    source = tmp_path / "in put.txt"  # a space: quoting keeps it one argument
    source.write_text("faint source\n")
    template = (
        "sh -c 'tr a-z A-Z < \"$1\" > \"$2\"; echo \"label=$3\"' "
        "sh {inputs.src} {outputs.upper} {params.label}"
    )
    d = dispatch(
        template,
        {"src": {"$product": "prd-src"}, "label": "two words", "tag": "v2"},
        name="shout",
        kind=TaskKind.COMMAND,
        products={"prd-src": product_ref(source, "prd-src")},
        outputs={"upper": OutputSpec(path="out/upper-{params.tag}.txt", type="text.upper")},
    )
    outcome = finished(execute(d, env))
    (product,) = outcome.products
    assert outcome.result == {"upper": {"$product": product.id}}
    assert product.type == "text.upper"
    assert product.name == "upper"
    stored = LocalStorage.local_path(product.uri)
    assert stored.read_text() == "FAINT SOURCE\n"
    assert stored.as_posix().endswith(f"{d.activity_id}/out/upper-v2.txt")
    assert product.checksum == sha256(b"FAINT SOURCE\n")
    assert "label=two words" in LocalStorage.local_path(outcome.log_uri).read_text()
    assert outcome.command == shlex.join([   # what ran, as one line that splits back into its argv
        "sh", "-c", 'tr a-z A-Z < "$1" > "$2"; echo "label=$3"', "sh", str(source),
        str(env.work_root / f"{d.activity_id}-1" / "out" / "upper-v2.txt"), "two words"])
    assert outcome.exit_code == 0


def test_doubled_braces_in_a_command_are_literal_braces(env: ExecutionEnv) -> None:
    d = dispatch("sh -c 'echo \"{{$1}} {{params.label}} }}\"' sh {params.label}", {"label": "x"},
                 name="braces", kind=TaskKind.COMMAND)
    outcome = finished(execute(d, env))
    assert "{x} {params.label} }" in LocalStorage.local_path(outcome.log_uri).read_text()
    assert outcome.command == "sh -c 'echo \"{$1} {params.label} }\"' sh x"


def test_command_exit_code_is_reported_with_the_tail_of_stderr(env: ExecutionEnv) -> None:
    d = dispatch("sh -c 'echo starting; echo \"calibration table not found\" >&2; exit 3'",
                 name="calib", kind=TaskKind.COMMAND)
    outcome = failed(execute(d, env))
    assert outcome.exit_code == 3
    assert outcome.command == "sh -c 'echo starting; echo \"calibration table not found\" >&2; exit 3'"
    assert outcome.retryable is True
    assert "exited with code 3" in outcome.message
    assert "calibration table not found" in outcome.message
    log = LocalStorage.local_path(outcome.log_uri).read_text()
    assert "starting" in log
    assert "calibration table not found" in log
    assert (env.work_root / f"{d.activity_id}-1").is_dir()  # kept for inspection


def test_command_that_does_not_write_a_declared_output_fails(env: ExecutionEnv) -> None:
    d = dispatch("true {outputs.image}", name="imager", kind=TaskKind.COMMAND,
                 outputs={"image": OutputSpec(path="image.fits", type="radio.image")})
    outcome = failed(execute(d, env))
    assert outcome.retryable is False
    assert "declares output 'image'" in outcome.message
    assert "image.fits" in outcome.message


def test_command_reports_a_missing_input_through_its_needs_file(env: ExecutionEnv) -> None:
    needs = (
        '{"param": "orbit", "product_type": "ep.aux.orbit", "match": {"obs_id": "o1"}, "reason": "no orbit"}'
    )
    d = dispatch(f"sh -c {shlex.quote(f'echo {shlex.quote(needs)} > skyweave-needs.json; exit 1')}",
                 name="match_orbit", kind=TaskKind.COMMAND)
    outcome = execute(d, env)
    assert isinstance(outcome, ActivityNeedsInput), outcome
    assert outcome.need.param == "orbit"
    assert outcome.need.match == {"obs_id": "o1"}
    assert outcome.need.reason == "no orbit"


def test_command_template_naming_an_unbound_parameter_fails_clearly(env: ExecutionEnv) -> None:
    outcome = failed(execute(dispatch("echo {params.missing}", name="echo", kind=TaskKind.COMMAND), env))
    assert outcome.retryable is False
    assert "{params.missing}" in outcome.message


def test_command_not_installed_fails_without_retry(env: ExecutionEnv) -> None:
    outcome = failed(execute(dispatch("skyweave-no-such-program --x", name="x", kind=TaskKind.COMMAND), env))
    assert outcome.retryable is False
    assert "skyweave-no-such-program" in outcome.message
