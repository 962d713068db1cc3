"""The admin API under `/api/v1`: authentication and dispatch (`api`), the handlers (`entities`, `guardrails`,
`ops`), the allow-lists for secret references and endpoints given through it (`allowlists`) and the request
schemas (`schema`)."""
