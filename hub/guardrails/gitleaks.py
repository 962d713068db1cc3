"""The gitleaks rule set: load, translate and compile it for RE2.

The rules ship in ``data/gitleaks.toml`` (MIT, see ``data/gitleaks.LICENSE.txt``). They are written in
Go RE2 syntax; :func:`translate_go_regex` adapts the few constructs the Python binding of RE2 spells
differently, and every pattern is compiled on ``google-re2`` so that matching stays linear in the input.

Semantics kept from gitleaks (``detect/detect.go``, ``config/allowlist.go``):

* a rule runs only when one of its keywords occurs in the lower-cased text;
* the secret is ``secretGroup`` when set, else the first non-empty capture group, else the match;
* a finding is dropped when the Shannon entropy of the secret is ``<=`` the rule's threshold;
* allowlists (global first, then the rule's) test the secret, the match or the line with regexes,
  and the secret with case-insensitive stopwords; ``AND`` needs every configured check to hold.
  Path and commit checks never hold here: a gateway payload has no file path and no commit.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cache
from importlib import resources
from typing import Any, Literal

import ahocorasick
import re2

__all__ = [
    "Allowlist",
    "GitleaksRuleset",
    "RuleError",
    "SecretRule",
    "compile_re2",
    "default_ruleset",
    "load_ruleset",
    "translate_go_regex",
]

RE2_MAX_MEM = 64 << 20
_STOPWORD_TRIE_MIN = 16


class RuleError(ValueError):
    """A rule or allowlist could not be parsed or compiled."""


_NAMED_GROUP = re.compile(r"(?<!\\)\(\?<(?=[A-Za-z_])")


def translate_go_regex(pattern: str) -> str:
    """Rewrite Go ``regexp`` syntax into the dialect the Python RE2 binding accepts.

    Go and RE2 C++ share one grammar: every rule of the bundled set compiles unchanged (POSIX
    classes, mid-pattern ``(?i)``, ``\\z`` and ``\\x{..}`` are all RE2). The one spelling rewritten is
    Go 1.22's ``(?<name>...)``, which RE2 releases before 2023 reject, as ``(?P<name>...)``.
    """
    return _NAMED_GROUP.sub("(?P<", pattern)


def compile_re2(pattern: str, *, what: str = "pattern") -> Any:
    """Compile a Go/RE2 ``pattern`` for matching UTF-8 bytes.

    Raises:
        RuleError: the pattern is not valid RE2.
    """
    options = re2.Options()
    options.max_mem = RE2_MAX_MEM
    options.log_errors = False
    try:
        return re2.compile(translate_go_regex(pattern).encode(), options)
    except re2.error as exc:
        reason = exc.args[0] if exc.args else exc
        if isinstance(reason, bytes):
            reason = reason.decode("utf-8", errors="replace")
        raise RuleError(f"{what}: not valid RE2: {reason}") from exc


class _Stopwords:
    """Case-insensitive substring test over many words (an Aho-Corasick trie when large)."""

    def __init__(self, words: Iterable[str]) -> None:
        self.words = tuple(w.lower() for w in words if w)
        self._trie: Any = None
        if len(self.words) >= _STOPWORD_TRIE_MIN:
            trie: Any = ahocorasick.Automaton()
            for word in self.words:
                trie.add_word(word, word)
            trie.make_automaton()
            self._trie = trie

    def __bool__(self) -> bool:
        return bool(self.words)

    def find(self, text: str) -> str | None:
        lowered = text.lower()
        if self._trie is not None:
            for _end, word in self._trie.iter(lowered):
                return str(word)
            return None
        for word in self.words:
            if word in lowered:
                return word
        return None


@dataclass(frozen=True, slots=True)
class Allowlist:
    """One gitleaks allowlist: what it tests (``target``) and how checks combine (``condition``)."""

    description: str = ""
    condition: Literal["OR", "AND"] = "OR"
    target: Literal["secret", "match", "line"] = "secret"
    regexes: tuple[Any, ...] = ()
    stopwords: _Stopwords = field(default_factory=lambda: _Stopwords(()))
    has_paths: bool = False
    has_commits: bool = False

    def allows(self, secret: str, match: str, line: str) -> bool:
        """Whether this allowlist suppresses a finding (no path or commit is ever known)."""
        subject = {"secret": secret, "match": match, "line": line}[self.target]
        if self.condition == "AND":
            if self.has_paths or self.has_commits:
                return False
            checks: list[bool] = []
            if self.regexes:
                checks.append(self._regex_hit(subject))
            if self.stopwords:
                checks.append(self.stopwords.find(secret) is not None)
            return bool(checks) and all(checks)
        return self._regex_hit(subject) or (bool(self.stopwords) and self.stopwords.find(secret) is not None)

    def _regex_hit(self, subject: str) -> bool:
        data = subject.encode()
        return any(rx.search(data) is not None for rx in self.regexes)


@dataclass(frozen=True, slots=True)
class SecretRule:
    """One compiled secret-detection rule."""

    id: str
    description: str
    pattern: str
    regex: Any
    keywords: tuple[str, ...] = ()
    entropy: float = 0.0
    secret_group: int = 0
    path: str | None = None
    allowlists: tuple[Allowlist, ...] = ()

    @property
    def path_scoped(self) -> bool:
        """Gitleaks only applies this rule to files whose path matches ``path``."""
        return self.path is not None


@dataclass(frozen=True, slots=True)
class GitleaksRuleset:
    """Rules plus the global allowlists, as loaded from a gitleaks TOML document."""

    rules: tuple[SecretRule, ...]
    allowlists: tuple[Allowlist, ...]
    path_only: tuple[str, ...] = ()

    def by_id(self) -> dict[str, SecretRule]:
        """Rules keyed by id."""
        return {rule.id: rule for rule in self.rules}

    def with_changes(
        self,
        *,
        disable: Sequence[str] = (),
        add: Sequence[SecretRule] = (),
        override: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> GitleaksRuleset:
        """A copy with rules disabled, overridden (field by field) and added.

        Raises:
            RuleError: an id to disable or override is unknown, or an added id already exists.
        """
        known = self.by_id()
        unknown = [rid for rid in [*disable, *(override or {})] if rid not in known]
        if unknown:
            raise RuleError(f"unknown secret rule id(s): {', '.join(sorted(unknown))}")
        rules: list[SecretRule] = []
        for rule in self.rules:
            if rule.id in disable:
                continue
            changes = (override or {}).get(rule.id)
            rules.append(_override(rule, changes) if changes else rule)
        ids = {rule.id for rule in rules}
        for extra in add:
            if extra.id in ids:
                raise RuleError(f"secret rule {extra.id!r} already exists; override it instead")
            ids.add(extra.id)
            rules.append(extra)
        return replace(self, rules=tuple(rules))


def _override(rule: SecretRule, changes: Mapping[str, Any]) -> SecretRule:
    updated = rule
    if "regex" in changes:
        pattern = str(changes["regex"])
        updated = replace(updated, pattern=pattern, regex=compile_re2(pattern, what=f"rule {rule.id} regex"))
    if "keywords" in changes:
        updated = replace(updated, keywords=tuple(str(k).lower() for k in changes["keywords"]))
    if "entropy" in changes:
        updated = replace(updated, entropy=float(changes["entropy"] or 0.0))
    if "secret_group" in changes:
        updated = replace(updated, secret_group=int(changes["secret_group"] or 0))
    if "description" in changes:
        updated = replace(updated, description=str(changes["description"]))
    if "path" in changes:
        updated = replace(updated, path=changes["path"] or None)
    return updated


def _allowlist(raw: Mapping[str, Any], where: str) -> Allowlist:
    condition = str(raw.get("condition", "OR")).upper()
    target = str(raw.get("regexTarget", "secret") or "secret")
    if condition not in ("OR", "AND"):
        raise RuleError(f"{where}: condition must be OR or AND")
    if target not in ("secret", "match", "line"):
        raise RuleError(f"{where}: regexTarget must be secret, match or line")
    regexes = tuple(compile_re2(p, what=f"{where} regex") for p in raw.get("regexes", ()))
    return Allowlist(
        description=str(raw.get("description", "")),
        condition=condition,
        target=target,
        regexes=regexes,
        stopwords=_Stopwords(str(w) for w in raw.get("stopwords", ())),
        has_paths=bool(raw.get("paths")),
        has_commits=bool(raw.get("commits")),
    )


def build_rule(raw: Mapping[str, Any]) -> SecretRule:
    """Compile one ``[[rules]]`` table (gitleaks field names).

    Raises:
        RuleError: a field is missing or a pattern does not compile.
    """
    rule_id = str(raw.get("id", "")).strip()
    if not rule_id:
        raise RuleError("a secret rule needs an id")
    pattern = raw.get("regex")
    if not pattern:
        raise RuleError(f"rule {rule_id}: a regex is required")
    lists = [_allowlist(a, f"rule {rule_id} allowlist") for a in raw.get("allowlists", ())]
    if "allowlist" in raw:
        lists.append(_allowlist(raw["allowlist"], f"rule {rule_id} allowlist"))
    group = int(raw.get("secretGroup", 0) or 0)
    regex = compile_re2(str(pattern), what=f"rule {rule_id} regex")
    if group > regex.groups:
        raise RuleError(f"rule {rule_id}: secretGroup {group} > {regex.groups} groups")
    return SecretRule(
        id=rule_id,
        description=str(raw.get("description", "")),
        pattern=str(pattern),
        regex=regex,
        keywords=tuple(str(k).lower() for k in raw.get("keywords", ())),
        entropy=float(raw.get("entropy", 0.0) or 0.0),
        secret_group=group,
        path=raw.get("path"),
        allowlists=tuple(lists),
    )


def load_ruleset(document: str | Mapping[str, Any]) -> GitleaksRuleset:
    """Load a gitleaks configuration (TOML text or an already parsed mapping).

    Path-only rules (no regex) are kept by id in ``path_only``: they match file names, never text.

    Raises:
        RuleError: a rule or allowlist is invalid.
    """
    data: Mapping[str, Any] = tomllib.loads(document) if isinstance(document, str) else document
    rules: list[SecretRule] = []
    path_only: list[str] = []
    for raw in data.get("rules", ()):
        if not raw.get("regex") and raw.get("path"):
            path_only.append(str(raw.get("id")))
            continue
        rules.append(build_rule(raw))
    global_lists: list[Allowlist] = []
    if "allowlist" in data:
        global_lists.append(_allowlist(data["allowlist"], "global allowlist"))
    global_lists.extend(_allowlist(a, "global allowlist") for a in data.get("allowlists", ()))
    return GitleaksRuleset(rules=tuple(rules), allowlists=tuple(global_lists), path_only=tuple(path_only))


@cache
def default_ruleset() -> GitleaksRuleset:
    """The bundled gitleaks default rule set, parsed and compiled once per process."""
    text = resources.files("hub.guardrails").joinpath("data/gitleaks.toml").read_text("utf-8")
    return load_ruleset(text)
