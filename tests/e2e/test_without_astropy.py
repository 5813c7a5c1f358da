"""skyweave is installed beside astropy in science environments, but the engine does not need it:
with astropy refused by an import hook in every process (this one's children and the worker
processes too, through ``sitecustomize``), ``import skyweave``, the CLI's modules, a workflow run
on worker processes, a product and its W3C PROV export all work.  The one FITS-specific part,
the fits-provenance aspect (the ``skyweave[fits]`` extra), says what to install."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

REFUSE_ASTROPY = textwrap.dedent('''
    import sys

    class RefuseAstropy:
        """Behaves as if astropy were not installed."""

        def find_spec(self, name, path=None, target=None):
            if name == "astropy" or name.startswith("astropy."):
                raise ModuleNotFoundError(f"No module named {name!r} (refused by the test)", name=name)
            return None

    sys.meta_path.insert(0, RefuseAstropy())
''')

SCRIPT = textwrap.dedent('''
    import sys

    import skyweave
    from skyweave import Client, Product, context, task, workflow

    @task(version="1")
    def measure(n: int) -> Product:
        try:
            import astropy  # noqa: F401
            raise RuntimeError("astropy was importable in the worker")
        except ModuleNotFoundError:
            pass
        path = context().output("counts.txt")
        path.write_text(" ".join(str(i * i) for i in range(n)))
        return Product(path, type="test.counts")

    @task(version="1")
    def total(counts: Product) -> int:
        return sum(int(w) for w in counts.path.read_text().split())

    @workflow
    def tiny(n: int = 4):
        return total(counts=measure(n=n))

    if __name__ == "__main__":
        try:
            import astropy  # noqa: F401
            raise SystemExit("the import hook did not refuse astropy")
        except ModuleNotFoundError:
            pass
        import skyweave.cli.main  # every command module of the CLI
        with Client("st", workers=1, executor="local") as client:
            run = client.run(tiny, {"n": 4}, timeout=60)
            print("status", run.status, "result", run.results())
            from skyweave.provenance.export import export
            (product,) = client.store.find_products(run_id=run.id, type="test.counts")
            print("prov", "wasGeneratedBy" in export(client.store, fmt="provxml", product_id=product.id))
        from skyweave.aspects.base import load_aspect
        from skyweave.errors import DefinitionError
        try:
            load_aspect("skyweave.provenance.fits:FitsProvenanceAspect")
        except DefinitionError as exc:
            print("fits aspect:", exc.message, "|", exc.hint)
        print("astropy loaded:", "astropy" in sys.modules)
''')


def test_the_engine_runs_a_workflow_with_astropy_refused(tmp_path: Path) -> None:
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(REFUSE_ASTROPY)
    (tmp_path / "flow.py").write_text(SCRIPT)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(hooks), os.environ.get("PYTHONPATH")]))}
    env = {k: v for k, v in env.items() if not k.startswith("SKYWEAVE_")}
    done = subprocess.run([sys.executable, "flow.py"], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert "status succeeded result 14" in lines
    assert "prov True" in lines
    assert any(line.startswith("fits aspect: the fits-provenance aspect needs astropy")
               and "skyweave[fits]" in line for line in lines), lines
    assert "astropy loaded: False" in lines
