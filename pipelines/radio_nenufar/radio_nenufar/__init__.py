"""A NenuFAR/LOFAR-like radio interferometric imaging pipeline for skyweave.

Each stage module is written as if by a different institute and shares only
``radio_nenufar.conventions`` (product types, the visibility file format, sign conventions):

* ``simulate`` — visibilities of the real NenuFAR layout (vendored from nenupy), gains, noise, truth;
* ``ingest`` — real uvfits files (pyuvdata) into the pipeline's visibility format;
* ``partition`` — ``list_subbands`` and ``extract_subband`` (the fan-out);
* ``calibrate`` — StEFCal gain calibration against a calibrator model, with quality checks;
* ``image`` — convolutional gridding, FFT, Högbom CLEAN, FITS with a SIN WCS, source finding;
* ``selfcal`` — one self-calibration round (run as a bounded skyweave loop);
* ``merge`` — weighted merge of the sub-band images, FITS and PNG, and the run report;
* ``workflow`` / ``demo`` — the skyweave wiring and ``skyweave demo radio``.
"""

__version__ = "0.1.0"
