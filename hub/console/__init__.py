"""The admin console: web pages at `/ui`, served by the hub, on top of the admin API's own handlers.

Nothing here is imported until the first request to `/ui` (`mount.ConsoleSurface` loads `web`), so a hub whose
console is never opened does not carry Jinja2 or the page modules.
"""
