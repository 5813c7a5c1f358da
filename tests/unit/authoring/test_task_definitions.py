"""A malformed task declaration fails where it is written, with one error naming the field and
the shape it takes, instead of being registered and breaking the store (issue 11, point 6)."""

from __future__ import annotations

from typing import Any

import pytest

from skyweave import OutputSpec, command, task
from skyweave.errors import DefinitionError
from skyweave.model.specs import TaskSpec, checked


def refused(make: Any) -> DefinitionError:
    with pytest.raises(DefinitionError) as caught:
        make()
    return caught.value


def test_the_yaml_output_shape_in_python_is_refused_with_the_python_shape() -> None:
    err = refused(lambda: command("stats", "wc -l > {outputs.stats}",
                                  outputs={"stats": {"path": "stats.txt", "type": "my.stats"}}))
    assert err.message.startswith("task 'stats': outputs['stats'] is a dict {'path': 'stats.txt', "
                                  "'type': 'my.stats'}")
    assert err.hint == ("write outputs={'stats': OutputSpec(path='stats.txt', type='my.stats')} "
                        "(from skyweave import OutputSpec)")


@pytest.mark.parametrize(("arguments", "fragment"), [
    ({"outputs": {"stats": 3}}, "outputs['stats'] is int 3"),
    ({"outputs": ["stats.txt"]}, "outputs must be a mapping"),
    ({"outputs": {"stats": OutputSpec(path=None)}}, "outputs['stats'] is NoneType None"),  # type: ignore[arg-type]
    ({"outputs": {"stats": OutputSpec(path="s", type=5)}}, "outputs['stats'] is OutputSpec"),  # type: ignore[arg-type]
    ({"parameters": {"n": {"type": "int"}}}, "parameters['n'] is dict"),
    ({"parameters": {"n": 3}}, "parameters['n'] is int 3"),
    ({"version": 2}, "version must be str, got int"),
    ({"image": 5}, "image must be str | null, got int"),
    ({"timeout": "soon"}, "timeout must be float | null, got str"),
    ({"retries": "2"}, "retries must be a whole number >= 0"),
    ({"priority": 1.5}, "priority must be int, got float"),
    ({"providers": {"ep.aux": object()}}, "providers['ep.aux'] is object"),
    ({"description": ["x"]}, "description must be str, got array"),
])
def test_each_malformed_command_field_is_named(arguments: dict[str, Any], fragment: str) -> None:
    err = refused(lambda: command("stats", "echo {outputs.stats}", **arguments))
    assert fragment in err.message, err.message
    assert err.message.startswith("task 'stats'")


def fn(x: int) -> int:
    return x


def test_decorated_tasks_are_checked_too() -> None:
    assert "version must be str, got int" in refused(lambda: task(version=2)(fn)).message  # type: ignore[arg-type]
    assert "timeout must be float | null" in refused(lambda: task(timeout="1 h")(fn)).message  # type: ignore[arg-type]
    assert "its name must be a non-empty string" in refused(lambda: command(" ", "echo")).message


def _boxed(x: int) -> int:
    return x


def test_a_python_task_keeps_its_declared_image() -> None:
    """``@task(image=…)``: the function runs in that image (a container executor's job), so the
    image is part of the spec, not dropped; the digest is pinned later, at registration."""
    boxed = task(image="skyweave-xray-ep", version="1")(_boxed)
    assert (boxed.spec.kind, boxed.spec.image, boxed.spec.image_digest) == ("python", "skyweave-xray-ep", "")


def test_good_declarations_pass_unchanged() -> None:
    made = command("stats", "wc -l {inputs.raw} > {outputs.stats}", version="1.2",
                   parameters={"raw": "Product", "n": int},
                   outputs={"stats": OutputSpec(path="stats.txt", type="my.stats"), "log": "run.log"})
    assert made.spec.parameters == {"raw": "Product", "n": "int"}
    assert made.spec.outputs["log"] == OutputSpec(path="run.log")
    assert checked(made.spec) == made.spec


def test_specs_built_by_hand_are_checked_by_checked() -> None:
    bad = TaskSpec(name="x", version="1", retry=TaskSpec(name="y", version="1").retry, priority="high")  # type: ignore[arg-type]
    with pytest.raises(DefinitionError, match="priority must be int, got str"):
        checked(bad)
