"""NenuFAR-like real-time burst detection for skyweave: simulate, train, detect, follow up (see README.md)."""
