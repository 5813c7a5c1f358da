"""Run one task of the radio pipeline on its own, outside any workflow (e.g. in a container).

    python -m radio_nenufar.stage import_visibilities --path day2.uvfits --obs-id TDEM0003 --out DIR
    python -m radio_nenufar.stage extract_subband --vis DIR/nenu0001.npz --subband 3 --out DIR
    python -m radio_nenufar.stage calibrate --vis DIR/nenu0001_sb003.npz --model cal.json --out DIR > cal.json
    python -m radio_nenufar.stage selfcal_step --vis DIR/nenu0001_sb003.npz --cal @cal.json --out DIR

Options, output and exit status: ``skyweave.standalone`` (one option per task parameter, products
as file paths, the result as JSON on stdout, which a later stage takes back as ``@FILE``).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from radio_nenufar import calibrate, image, ingest, merge, partition, selfcal
from skyweave.standalone import stage_main, stages

STAGES = stages(ingest.import_visibilities, ingest.import_uvfits, ingest.point_model, partition.list_subbands,
                partition.extract_subband, calibrate.calibrate, image.make_image, selfcal.selfcal_step,
                merge.merge_images, merge.report)


def main(argv: Sequence[str] | None = None) -> int:
    return stage_main(STAGES, prog="python -m radio_nenufar.stage",
                      description="Run one task of the NenuFAR-like radio imaging pipeline on files.",
                      argv=argv)


if __name__ == "__main__":
    sys.exit(main())
