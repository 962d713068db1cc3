"""`agenthub servers import FILE`: a server entry from the official MCP registry's `server.json` format.

A `server.json` describes a server by `packages` (something to run locally: an npm, PyPI or OCI package, with a
runtime hint, runtime and package arguments and the environment variables it reads) and `remotes` (a URL served
over Streamable HTTP or SSE, with the headers it expects). The import turns one of them into a `[servers.NAME]`
entry:

- npm runs with `npx -y PACKAGE@VERSION`, PyPI with `uvx PACKAGE==VERSION`, OCI with `docker run -i --rm`, each
  environment variable passed into the container with `-e NAME` (a `runtimeHint` names another launcher);
- every environment variable becomes an `env:NAME` reference (the hub reads it from its own environment at start,
  so no secret is ever written in the file), and every header a remote expects an `env:` reference too, named
  after the server and the header, holding the header's whole value;
- arguments keep their value or default; `{placeholders}` without one are left for the operator and listed.

What is left to fill (variables, placeholders) is listed with the entry, required ones first.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, cast

NAME = re.compile(r"[^A-Za-z0-9_-]+")
PLACEHOLDER = re.compile(r"\{([A-Za-z0-9_.-]+)\}")
LAUNCHERS = {"npm": "npx", "pypi": "uvx", "oci": "docker"}
"""The default runtime of each package registry type the import understands."""


class ServerJsonError(ValueError):
    """The file is not a usable `server.json`; the message says why."""


@dataclass
class Variable:
    """Something the operator must provide: an environment variable the hub reads, or an argument placeholder."""

    name: str
    description: str = ""
    required: bool = False
    secret: bool = False
    kind: str = "env"
    """`env` (set it in the hub's environment) or `argument` (edit the entry)."""


@dataclass
class Imported:
    """One server entry and what is left to fill."""

    name: str
    config: dict[str, Any]
    source: str
    variables: list[Variable] = field(default_factory=list[Variable])


def server_name(registry_name: str) -> str:
    """A `[servers]` name from a registry name (`io.github.acme/weather-mcp` -> `weather-mcp`)."""
    tail = registry_name.rsplit("/", 1)[-1]
    name = NAME.sub("_", tail).strip("_-")
    return name[:64] or "imported"


def _dict(value: Any) -> dict[str, Any]:
    return cast(dict[str, Any], value) if isinstance(value, dict) else {}


def _list(value: Any) -> list[dict[str, Any]]:
    items: list[Any] = cast(list[Any], value) if isinstance(value, list) else []
    return [cast(dict[str, Any], item) for item in items if isinstance(item, dict)]


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def import_server(document: Any, *, name: str | None = None, prefer: str = "package") -> Imported:
    """The server entry for a parsed `server.json` (`prefer`: `package` or `remote`, when it offers both).

    Raises:
        ServerJsonError: the document has no name, or nothing the hub can run or reach.
    """
    doc = _dict(document)
    registry_name = _text(doc.get("name"))
    if not registry_name:
        raise ServerJsonError("not a server.json: it has no 'name'")
    entry = name or server_name(registry_name)
    version = _text(doc.get("version"))
    source = f"{registry_name} {version}".strip()
    packages = [p for p in _list(doc.get("packages")) if _text(p.get("registryType")) in LAUNCHERS]
    remotes = [r for r in _list(doc.get("remotes")) if _text(r.get("type")) in ("streamable-http", "sse")]
    choices = [("package", p) for p in packages] + [("remote", r) for r in remotes]
    if not choices:
        raise ServerJsonError(
            f"'{registry_name[:128]}' offers neither an npm, PyPI or OCI package nor a streamable-http or sse remote"
        )
    choices.sort(key=lambda choice: choice[0] != prefer)
    kind, chosen = choices[0]
    imported = Imported(entry, {}, source)
    if kind == "package":
        imported.config = _package(chosen, imported)
    else:
        imported.config = _remote(chosen, entry, imported)
    description = _text(doc.get("description"))
    if description:
        imported.source += f": {description}"
    imported.variables.sort(key=lambda v: (not v.required, v.kind, v.name))
    return imported


def _package(package: dict[str, Any], imported: Imported) -> dict[str, Any]:
    registry = _text(package.get("registryType"))
    identifier = _text(package.get("identifier"))
    if not identifier:
        raise ServerJsonError("a package has no 'identifier'")
    version = _text(package.get("version"))
    transport = _dict(package.get("transport"))
    if _text(transport.get("type")) not in ("", "stdio"):
        url = _text(transport.get("url"))
        raise ServerJsonError(
            f"package '{identifier[:128]}' serves {transport.get('type')} at {url or 'a local URL'} once started: "
            "start it yourself and import its URL as an http server, or pick another package"
        )
    env_vars = _list(package.get("environmentVariables"))
    runtime = [_argument(a, imported) for a in _list(package.get("runtimeArguments"))]
    arguments = [_argument(a, imported) for a in _list(package.get("packageArguments"))]
    command = _text(package.get("runtimeHint")) or LAUNCHERS[registry]
    if registry == "npm":
        spec = f"{identifier}@{version}" if version else identifier
        args = [*_flat(runtime), *([] if "-y" in _flat(runtime) or command != "npx" else ["-y"]), spec]
    elif registry == "pypi":
        args = [*_flat(runtime), f"{identifier}=={version}" if version else identifier]
    else:
        image = f"{identifier}:{version}" if version and ":" not in identifier.rsplit("/", 1)[-1] else identifier
        passed = [part for v in env_vars if _text(v.get("name")) for part in ("-e", _text(v.get("name")))]
        docker = ["run", "-i", "--rm", *passed] if command == "docker" else []
        args = [*docker, *_flat(runtime), image]
    config: dict[str, Any] = {"transport": "stdio", "command": command, "args": [*args, *_flat(arguments)]}
    env: dict[str, str] = {}
    for variable in env_vars:
        var = _text(variable.get("name"))
        if not var:
            continue
        env[var] = f"env:{var}"
        imported.variables.append(
            Variable(
                var,
                _text(variable.get("description")),
                bool(variable.get("isRequired")),
                bool(variable.get("isSecret")),
            )
        )
    if env:
        config["env"] = env
    return config


def _argument(argument: dict[str, Any], imported: Imported) -> list[str]:
    """One runtime or package argument as command-line words; placeholders without a value are listed."""
    value = _text(argument.get("value")) or _text(argument.get("default"))
    hint = _text(argument.get("valueHint"))
    name = _text(argument.get("name"))
    variables = _dict(argument.get("variables"))
    for placeholder in PLACEHOLDER.findall(value):
        spec = _dict(variables.get(placeholder))
        default = _text(spec.get("default"))
        if default:
            value = value.replace(f"{{{placeholder}}}", default)
        else:
            imported.variables.append(
                Variable(
                    placeholder,
                    _text(spec.get("description")) or f"in argument {name or value}",
                    bool(spec.get("isRequired")),
                    bool(spec.get("isSecret")),
                    "argument",
                )
            )
    if _text(argument.get("type")) == "named":
        if not name:
            return []
        return [name, value] if value else [name]
    if not value:
        label = hint or name or "value"
        value = f"{{{label}}}"
        imported.variables.append(
            Variable(
                label,
                _text(argument.get("description")) or "a positional argument",
                bool(argument.get("isRequired")),
                bool(argument.get("isSecret")),
                "argument",
            )
        )
    return [value]


def _flat(parts: list[list[str]]) -> list[str]:
    return [word for part in parts for word in part]


def _remote(remote: dict[str, Any], entry: str, imported: Imported) -> dict[str, Any]:
    url = _text(remote.get("url"))
    if not url.startswith(("http://", "https://")):
        raise ServerJsonError(f"remote URL {url[:200]!r} is not an http(s) URL")
    variables = _dict(remote.get("variables"))
    for placeholder in PLACEHOLDER.findall(url):
        spec = _dict(variables.get(placeholder))
        default = _text(spec.get("default"))
        if default:
            url = url.replace(f"{{{placeholder}}}", default)
        else:
            imported.variables.append(
                Variable(placeholder, _text(spec.get("description")) or "in the URL", True, False, "argument")
            )
    transport = "http" if _text(remote.get("type")) == "streamable-http" else "sse"
    config: dict[str, Any] = {"transport": transport, "url": url}
    headers: dict[str, str] = {}
    prefix = NAME.sub("_", entry).upper().replace("-", "_")
    for header in _list(remote.get("headers")):
        header_name = _text(header.get("name"))
        if not header_name:
            continue
        var = f"{prefix}_{NAME.sub('_', header_name).upper().replace('-', '_')}"
        headers[header_name] = f"env:{var}"
        shape = _text(header.get("value"))
        what = _text(header.get("description")) or f"the {header_name} header"
        imported.variables.append(
            Variable(
                var,
                f"{what} (the header's whole value{', e.g. ' + shape if shape else ''})",
                bool(header.get("isRequired")),
                bool(header.get("isSecret")),
            )
        )
    if headers:
        config["headers"] = headers
    return config


def _toml_value(value: Any) -> str:
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in cast(list[Any], value)) + "]"
    if isinstance(value, dict):
        items = cast(dict[str, Any], value)
        return "{ " + ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in items.items()) + " }"
    return json.dumps(value)


def _toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key, ensure_ascii=False)


def to_toml(imported: Imported) -> str:
    """The entry as a `[servers.NAME]` table, with what is left to fill as comments above it."""
    lines = [f"# Imported from server.json: {imported.source}"[:300]]
    env = [v for v in imported.variables if v.kind == "env"]
    placeholders = [v for v in imported.variables if v.kind == "argument"]
    if env:
        lines.append("# Set in the hub's environment before it starts:")
        lines += [f"#   {v.name}{_flags(v)}{' - ' + v.description if v.description else ''}" for v in env]
    if placeholders:
        lines.append("# Replace these {placeholders} in the entry:")
        lines += [f"#   {{{v.name}}}{_flags(v)}{' - ' + v.description if v.description else ''}" for v in placeholders]
    lines.append(f"[servers.{_toml_key(imported.name)}]")
    lines += [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in imported.config.items()]
    return "\n".join(line.replace("\n", " ") for line in lines) + "\n"


def _flags(variable: Variable) -> str:
    flags = [f for f, on in (("required", variable.required), ("secret", variable.secret)) if on]
    return f" ({', '.join(flags)})" if flags else ""
