"""Token endpoint grants: one module per grant_type (RFC 6749 §4.1.3, §6)."""
