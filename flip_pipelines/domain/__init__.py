"""Pure types and rules: no I/O happens in this package."""
