"""Pure data: identifiers, states and transitions, specs and records.  No I/O here."""
