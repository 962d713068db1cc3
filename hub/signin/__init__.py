"""Sign-in for MCP clients: the hub as the OAuth 2.1 authorization server of its own `/mcp`, people logging in
through the organisation's OIDC provider, each token a person with their own grants."""
