"""Example workflows shipped with skyweave (the demo uses them)."""
