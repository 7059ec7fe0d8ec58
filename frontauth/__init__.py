"""frontauth: an OAuth 2.1 authorization server and bearer-token verifier for MCP servers."""

__version__ = "0.1.0"
