"""The command line: `agenthub` (launch, main), its admin and upstream-auth commands."""
