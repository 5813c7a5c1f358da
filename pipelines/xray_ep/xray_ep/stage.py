"""Run one stage of the pipeline on its own, outside any workflow (e.g. in a container).

    python -m xray_ep.stage decode_cmos --l0 ep0001.l0 --cmos cmos04 --out DIR
    python -m xray_ep.stage calibrate --events DIR/ep0001_cmos04_l1.fits --attitude att.fits \\
        --orbit orb.fits --out DIR
    python -m xray_ep.stage detect_sources --image IMG --events EVT --expmap EXP --out DIR
    python -m xray_ep.stage light_curve --events EVT --source @source.json --out DIR
    python -m xray_ep.stage describe_events --events ni1034200101_cl.evt --out DIR   # any mission

Options, output and exit status: ``skyweave.standalone`` (one option per task parameter, products
as file paths, the result as JSON on stdout, exit status 2 on a ``Fatal`` error).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from skyweave.standalone import run_stage, stage_main, stages
from xray_ep import alert, archive, l1, l2, l3_image, l3_products

STAGES = stages(l1.list_cmos, l1.decode_cmos, l2.calibrate, l2.fetch_attitude, l2.fetch_orbit,
                l2.merge_events, l3_image.make_image, l2.exposure_map, l3_image.detect_sources,
                l3_products.light_curve, l3_products.spectrum, l3_products.transient_test, alert.make_voevent,
                archive.describe_events)


def run(stage: str, out: Path, **arguments: Any) -> Any:
    """Call one stage's task function with converted ``arguments``, outputs in ``out``."""
    return run_stage(STAGES[stage], out, **arguments)


def main(argv: Sequence[str] | None = None) -> int:
    return stage_main(STAGES, prog="python -m xray_ep.stage",
                      description="Run one stage of the EP-like X-ray pipeline on files.", argv=argv)


if __name__ == "__main__":
    sys.exit(main())
