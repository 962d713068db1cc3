"""Every gitleaks rule: it compiles on RE2, finds a generated secret, and rejects a near miss."""

from __future__ import annotations

import tomllib
from functools import cache
from importlib import resources

import pytest
from rulegen import Generator, with_keyword

from hub.guardrails.gitleaks import GitleaksRuleset, RuleError, default_ruleset, load_ruleset, translate_go_regex
from hub.guardrails.secrets import SecretScanner
from hub.guardrails.text import Hit

RULESET = default_ruleset()
RULES = {rule.id: rule for rule in RULESET.rules}
SEEDS = range(30)


@cache
def scanner() -> SecretScanner:
    return SecretScanner(RULESET, path_scoped_rules=True)


@cache
def positive(rule_id: str) -> tuple[str, Hit]:
    """The first generated sample (over fixed seeds) that gitleaks semantics report for the rule."""
    rule = RULES[rule_id]
    for seed in SEEDS:
        sample = with_keyword(Generator(seed).generate(rule.pattern), rule.keywords)
        if rule.regex.search(sample.encode()) is None:
            continue  # the generator's approximation of the pattern missed; draw again
        hits = [h for h in scanner().scan(sample) if h.rule == rule_id]
        if hits:
            return sample, hits[0]
    raise AssertionError(f"no generated sample is reported for {rule_id}")


def test_bundled_rules_all_compile_on_re2_and_match_the_toml() -> None:
    text = resources.files("hub.guardrails").joinpath("data/gitleaks.toml").read_text("utf-8")
    raw = tomllib.loads(text)
    assert len(raw["rules"]) == 222
    assert len(RULESET.rules) == 221
    assert RULESET.path_only == ("pkcs12-file",)
    assert all(translate_go_regex(r.pattern) == r.pattern for r in RULESET.rules)
    (global_list,) = RULESET.allowlists
    assert len(global_list.regexes) == 13
    assert global_list.stopwords.words == ("014df517-39d1-4453-b7b3-9930c563627c", "abcdefghijklmnopqrstuvwxyz")
    assert RULES["sonar-api-token"].secret_group == 2
    assert sum(1 for r in RULESET.rules if r.entropy) == 130
    assert len(RULES["generic-api-key"].allowlists) == 4


def test_license_and_source_ship_with_the_rules() -> None:
    data = resources.files("hub.guardrails").joinpath("data")
    assert "MIT License" in data.joinpath("gitleaks.LICENSE.txt").read_text("utf-8")
    assert "b58d3f102cf3a2c84cb7f923d05c25c9b1aed84b" in data.joinpath("gitleaks.SOURCE.txt").read_text("utf-8")


@pytest.mark.parametrize("rule_id", sorted(RULES))
def test_rule_finds_a_generated_secret(rule_id: str) -> None:
    sample, hit = positive(rule_id)
    secret = sample[hit.start : hit.end]
    assert secret and secret in sample
    if RULES[rule_id].entropy:
        assert hit.detail["entropy"] > RULES[rule_id].entropy


@pytest.mark.parametrize("rule_id", sorted(RULES))
def test_rule_rejects_a_near_miss(rule_id: str) -> None:
    """Entropy rules: the secret with one repeated character. Others: the secret cut in half."""
    sample, hit = positive(rule_id)
    secret = sample[hit.start : hit.end]
    changed = secret[0] * len(secret) if RULES[rule_id].entropy else secret[: len(secret) // 2]
    near_miss = sample[: hit.start] + changed + sample[hit.end :]
    assert rule_id not in {h.rule for h in scanner().scan(near_miss)}


@pytest.mark.parametrize("rule_id", sorted(r.id for r in RULESET.rules if r.path_scoped))
def test_path_scoped_rules_stay_off_by_default(rule_id: str) -> None:
    sample, _hit = positive(rule_id)
    assert rule_id not in {h.rule for h in SecretScanner(RULESET).scan(sample)}


def test_keyword_prefilter_gates_a_rule() -> None:
    sample, _ = positive("airtable-personnal-access-token")
    without_keyword = sample.split("\n", 1)[1]
    assert "airtable-personnal-access-token" not in {h.rule for h in scanner().scan(without_keyword)}


def test_secret_group_is_what_gets_reported() -> None:
    text = 'sonar_token = "0123456789abcdef0123456789abcdefa1b2c3d4"'
    (hit,) = [h for h in scanner().scan(text) if h.rule == "sonar-api-token"]
    assert text[hit.start : hit.end] == "0123456789abcdef0123456789abcdefa1b2c3d4"


def test_global_allowlist_drops_template_placeholders() -> None:
    assert scanner().scan('api_key = "${API_KEY_FROM_ENV}"') == []
    assert [h.rule for h in scanner().scan('api_key = "k8Fq2LmQ9xTz7Wp3Rv6N"')] == ["generic-api-key"]


def test_rule_stopwords_drop_generic_matches() -> None:
    assert scanner().scan('secret_key = "example_k8Fq2LmQ9xTz7Wp3Rv6N"') == []


def test_line_target_allowlist_applies_to_the_whole_line() -> None:
    rule = RULES["generic-api-key"]
    line_lists = [a for a in rule.allowlists if a.target == "line" and a.condition == "OR"]
    assert line_lists and all(a.regexes for a in line_lists)


def test_allow_comment_is_honoured_only_when_configured() -> None:
    text = "aws = AKIAZ3MSJVNQ2LZ4XGTB  # gitleaks:allow"
    assert [h.rule for h in SecretScanner(RULESET).scan(text)] == ["aws-access-token"]
    assert SecretScanner(RULESET, honor_allow_comment=True).scan(text) == []


def test_and_allowlist_with_paths_never_applies_without_a_path() -> None:
    doc = """
[[rules]]
id = "t"
regex = '''tok_[a-z]{8}'''
keywords = ["tok_"]
[[rules.allowlists]]
condition = "AND"
paths = ['''\\.md$''']
regexes = ['''tok_''']
"""
    assert [h.rule for h in SecretScanner(load_ruleset(doc)).scan("x tok_abcdefgh")] == ["t"]


def test_ruleset_changes_disable_override_and_add() -> None:
    from hub.guardrails.gitleaks import build_rule

    extra = build_rule({"id": "acme-token", "regex": r"acme_[0-9a-f]{16}", "keywords": ["acme_"]})
    changed = RULESET.with_changes(disable=["aws-access-token"], override={"github-pat": {"entropy": 6.5}}, add=[extra])
    found = {h.rule for h in SecretScanner(changed).scan("AKIAZ3MSJVNQ2LZ4XGTB acme_0123456789abcdef")}
    assert found == {"acme-token"}
    assert changed.by_id()["github-pat"].entropy == 6.5
    with pytest.raises(RuleError, match="unknown secret rule"):
        RULESET.with_changes(disable=["no-such-rule"])
    with pytest.raises(RuleError, match="already exists"):
        RULESET.with_changes(add=[build_rule({"id": "github-pat", "regex": "x"})])


def test_invalid_rules_are_refused() -> None:
    with pytest.raises(RuleError, match="not valid|missing|error"):
        load_ruleset('[[rules]]\nid = "bad"\nregex = "(?<=x)y"\n')
    with pytest.raises(RuleError, match="secretGroup"):
        load_ruleset('[[rules]]\nid = "bad"\nregex = "(a)"\nsecretGroup = 3\n')
    assert isinstance(load_ruleset(""), GitleaksRuleset)
