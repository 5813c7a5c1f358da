"""skyweave: dynamic, provenance-first workflows for astronomy data processing."""
