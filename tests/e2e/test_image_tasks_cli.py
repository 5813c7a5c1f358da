"""``image:`` in a YAML task is a declared field: until containers run, the run is refused at
submission instead of running the command on the host (issue 11, point 7)."""

from __future__ import annotations

from .helpers import CLI, flat

PIPELINE = """
workflow: boxed
params:
  marker: {type: str}
tasks:
  touch_it:
    command: "touch {params.marker}"
    image: "busybox:1.36"
steps:
  touched: {task: touch_it, args: {marker: $params.marker}}
"""


def test_a_yaml_task_with_an_image_is_refused_at_submission(cli: CLI) -> None:
    (cli.cwd / "boxed.yaml").write_text(PIPELINE)
    marker = cli.cwd / "ran-on-the-host"
    res = cli("run", "boxed.yaml", "--param", f"marker={marker}")
    assert res.code == 2, (res.out, res.err)
    assert "Traceback" not in res.err and res.err.count("error:") == 1
    text = flat(res.err)
    assert "task 'touch_it' declares the container image 'busybox:1.36', but container tasks cannot run yet" in text
    assert "hint: remove image= (image: in YAML)" in text
    assert not marker.exists()
    assert cli.json("runs") == []
