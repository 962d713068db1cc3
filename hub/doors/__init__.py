"""The hub's front doors: MCP, the OpenAI-compatible API, the REST tool call, the admin API and the OAuth pages.

Every door only translates its wire format into `Call`s and their outcomes back; what a door needs of the running
hub is a narrow protocol (`hub.doors.host`), and the paths it serves are named in `hub.paths`."""
