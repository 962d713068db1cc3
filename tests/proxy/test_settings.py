"""Which proxy the environment names for a target: the variables and their precedence, proxy URLs, NO_PROXY
entries, and the CONNECT request that asks for a tunnel."""

from __future__ import annotations

import base64

import pytest

from http1 import Proxy, ProxyConfigError, ProxySettings
from http1.proxy import NoProxy, connect_request

PROXY = Proxy("proxy.corp", 3128)


def settings(**environ: str) -> ProxySettings:
    return ProxySettings.from_environment(environ)


def test_each_scheme_takes_its_own_variable_and_all_proxy_fills_in() -> None:
    s = settings(HTTP_PROXY="http://plain:1", HTTPS_PROXY="http://secure:2")
    assert (s.http, s.https) == (Proxy("plain", 1), Proxy("secure", 2))
    s = settings(ALL_PROXY="http://every:3", HTTPS_PROXY="http://secure:2")
    assert (s.http, s.https) == (Proxy("every", 3), Proxy("secure", 2))
    assert settings() == ProxySettings()


def test_the_lower_case_spelling_wins_and_an_empty_one_unsets_the_variable() -> None:
    s = settings(https_proxy="http://lower:1", HTTPS_PROXY="http://upper:2")
    assert s.https == Proxy("lower", 1)
    assert settings(https_proxy="", HTTPS_PROXY="http://upper:2").https is None
    assert settings(HTTPS_PROXY="   ").https is None
    assert settings(all_proxy="http://lower:1", ALL_PROXY="http://upper:2").http == Proxy("lower", 1)


def test_under_cgi_the_upper_case_http_proxy_is_ignored() -> None:
    s = settings(REQUEST_METHOD="GET", HTTP_PROXY="http://from-a-request-header:1", HTTPS_PROXY="http://secure:2")
    assert s.http is None
    assert s.https == Proxy("secure", 2)
    assert settings(REQUEST_METHOD="GET", http_proxy="http://set:1").http == Proxy("set", 1)


@pytest.mark.parametrize(
    ("url", "proxy"),
    [
        ("proxy.corp:3128", Proxy("proxy.corp", 3128)),
        ("http://proxy.corp", Proxy("proxy.corp", 80)),
        ("HTTP://Proxy.Corp:3128/", Proxy("proxy.corp", 3128)),
        ("http://[fd00::1]:8080", Proxy("fd00::1", 8080)),
        ("  http://10.0.0.1:3128  ", Proxy("10.0.0.1", 3128)),
    ],
)
def test_proxy_urls(url: str, proxy: Proxy) -> None:
    assert Proxy.parse(url) == proxy


def test_credentials_in_the_proxy_url_become_a_basic_proxy_authorization() -> None:
    proxy = Proxy.parse("http://us%40er:p%3Ass%20w@proxy.corp:3128")
    assert proxy.authorization == "Basic " + base64.b64encode(b"us@er:p:ss w").decode()
    assert Proxy.parse("http://token@proxy.corp").authorization == "Basic " + base64.b64encode(b"token:").decode()
    assert str(proxy) == "http://proxy.corp:3128"
    assert "p:ss" not in repr(proxy)
    assert "cDpzcyB3" not in repr(proxy)
    assert str(Proxy.parse("http://[fd00::1]:8080")) == "http://[fd00::1]:8080"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("https://user:secret@proxy.corp:443", r"HTTPS_PROXY: https:// proxies are not supported"),
        ("socks5://user:secret@proxy.corp:1080", r"HTTPS_PROXY: socks5:// proxies are not supported"),
        ("http://user:secret@proxy.corp:99999", r"HTTPS_PROXY: not a valid proxy URL"),
        ("http://user:secret@:3128", r"HTTPS_PROXY: the proxy URL has no host"),
    ],
)
def test_a_proxy_url_the_client_cannot_use_is_refused_without_repeating_its_credentials(url: str, message: str) -> None:
    with pytest.raises(ProxyConfigError, match=message) as caught:
        settings(HTTPS_PROXY=url)
    assert "secret" not in str(caught.value)
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize(
    ("no_proxy", "host", "port", "direct"),
    [
        ("", "api.example.com", 443, False),
        ("*", "api.example.com", 443, True),
        ("internal, *", "api.example.com", 443, True),
        ("example.com", "example.com", 443, True),
        ("example.com", "api.example.com", 443, True),
        ("example.com", "API.Example.COM.", 443, True),
        ("example.com.", "api.example.com", 443, True),
        ("example.com", "badexample.com", 443, False),
        ("example.com", "example.com.evil.net", 443, False),
        (".example.com", "api.example.com", 443, True),
        (".example.com", "example.com", 443, False),
        ("*.example.com", "api.example.com", 443, True),
        ("*.example.com", "example.com", 443, False),
        ("example.com:8443", "example.com", 8443, True),
        ("example.com:8443", "example.com", 443, False),
        ("localhost", "localhost", 80, True),
        ("10.1.2.3", "10.1.2.3", 443, True),
        ("10.1.2.3", "10.1.2.4", 443, False),
        ("10.0.0.0/8", "10.200.3.4", 443, True),
        ("10.0.0.0/8", "11.0.0.1", 443, False),
        ("10.0.0.0/8", "ten.example.com", 443, False),
        ("10.1.2.3:8080", "10.1.2.3", 8080, True),
        ("10.1.2.3:8080", "10.1.2.3", 80, False),
        ("::1", "::1", 443, True),
        ("[::1]", "::1", 443, True),
        ("[::1]:8080", "::1", 8080, True),
        ("[::1]:8080", "::1", 8081, False),
        ("fd00::/8", "fd12::5", 443, True),
        ("[fd00::]/8", "fd12::5", 443, True),
        ("fd00::/8", "fe80::1", 443, False),
        ("10.0.0.0/8", "::ffff:10.0.0.1", 443, False),
        ("example.com other.org", "x.other.org", 443, True),
        ("example.com:http, [::1, 1.2.3.4:99999, *.*.com, a/b", "example.com", 443, False),
    ],
)
def test_no_proxy_entries(no_proxy: str, host: str, port: int, direct: bool) -> None:
    assert NoProxy.parse(no_proxy).bypasses(host, port) is direct


def test_a_target_goes_through_its_schemes_proxy_unless_no_proxy_lists_it() -> None:
    s = settings(HTTPS_PROXY="http://proxy.corp:3128", NO_PROXY="internal.corp")
    assert s.for_url("https://api.example.com/v1") == PROXY
    assert s.for_url("https://auth.internal.corp/token") is None
    assert s.for_url("http://api.example.com/v1") is None
    assert s.for_target("https", "api.example.com", 443) == PROXY
    assert s.for_url("ftp://api.example.com/") is None
    assert s.for_url("https://api.example.com:bad/") is None
    assert s.for_url("/relative") is None
    assert settings(https_proxy="http://proxy.corp:3128", no_proxy="").for_url("https://127.0.0.1/") == PROXY


def test_the_connect_request_names_the_target_and_carries_the_credentials() -> None:
    assert connect_request(PROXY, "api.example.com", 443) == (
        b"CONNECT api.example.com:443 HTTP/1.1\r\nHost: api.example.com:443\r\n\r\n"
    )
    assert connect_request(PROXY, "::1", 8443) == b"CONNECT [::1]:8443 HTTP/1.1\r\nHost: [::1]:8443\r\n\r\n"
    assert connect_request(PROXY, "bücher.example", 443).startswith(b"CONNECT xn--bcher-kva.example:443 HTTP/1.1")
    with_credentials = Proxy.parse("http://alice:pw@proxy.corp:3128")
    assert connect_request(with_credentials, "api.example.com", 443).endswith(
        b"\r\nProxy-Authorization: Basic YWxpY2U6cHc=\r\n\r\n"
    )


@pytest.mark.parametrize("host", ["api.example.com\r\nX-Injected: 1", "a b", "", "user@host"])
def test_a_host_that_cannot_be_written_in_a_connect_request_is_refused(host: str) -> None:
    with pytest.raises(ValueError, match="cannot ask a proxy for a tunnel"):
        connect_request(PROXY, host, 443)
