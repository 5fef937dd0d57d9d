"""Database access: schema (Core tables), engine and the embedded server."""
