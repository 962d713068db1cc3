"""The admin API under `/api/v1`: authentication and dispatch (`api`), the handlers (`entities`, `guardrails`,
`ops`) and the request schemas (`schema`)."""
