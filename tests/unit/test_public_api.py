"""The public API is a promise: adding is fine, removing or renaming breaks users."""

import skyweave

EXPECTED = {
    "ActivityContext", "Client", "Fatal", "File", "Folder", "InsufficientInput", "MissingInput", "OutputSpec",
    "Product", "Resources",
    "RetryPolicy", "RunHandle", "SkyweaveError", "Task", "Workflow", "__version__", "command", "context",
    "each", "gather", "loop", "result", "task", "unmapped", "workflow",
}


def test_public_names_are_pinned() -> None:
    assert set(skyweave.__all__) == EXPECTED
    for name in EXPECTED:
        assert hasattr(skyweave, name), name
