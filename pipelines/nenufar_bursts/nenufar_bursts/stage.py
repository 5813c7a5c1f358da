"""Run one task of the burst pipeline on its own, outside any workflow (e.g. in a container).

    python -m nenufar_bursts.stage train_model --seed 1 --n-chunks 400 --out models --result train.json
    python -m nenufar_bursts.stage score_chunk --chunk c00012.npz --previous c00011.npz \\
        --model @train.json#model --task-version rf5+s1n400 --out det --result det.json
    python -m nenufar_bursts.stage cutout --detections @det.json --chunk c00012.npz --out fu --result cut.json
    python -m nenufar_bursts.stage plot_burst --cut @cut.json --out fu --result plot.json
    python -m nenufar_bursts.stage make_voevent --cut @cut.json --plot @plot.json --out fu

The detector's task version names its model (``rf5+s1n400``): ``--task-version`` must be the model's
version, as in a workflow.  Options, output and exit status: ``skyweave.standalone``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from nenufar_bursts import detect, followup, train
from skyweave.standalone import stage_main, stages

STAGES = stages(train.train_model, detect.score_chunk, followup.cutout, followup.plot_burst,
                followup.make_voevent)


def main(argv: Sequence[str] | None = None) -> int:
    return stage_main(STAGES, prog="python -m nenufar_bursts.stage",
                      description="Run one task of the NenuFAR burst-detection pipeline on files.",
                      argv=argv)


if __name__ == "__main__":
    sys.exit(main())
