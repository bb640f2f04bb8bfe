"""canistry/flags.py: flags built from config fields, including repeatable tuple fields."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from canistry.cli import build_parser
from canistry.flags import add_config_flags, config_values, flag_name


@dataclass(frozen=True)
class _Config:
    cors_origins: tuple[str, ...] = ()
    """Origins that may call."""
    port: int = 8080
    """Port."""


def _parse(*argv: str) -> _Config:
    parser = argparse.ArgumentParser()
    add_config_flags(parser, _Config, ("cors_origins", "port"))
    return _Config(**config_values(parser.parse_args(argv), ("cors_origins", "port")))


def test_a_tuple_field_is_a_repeatable_flag_named_in_the_singular() -> None:
    assert flag_name("cors_origins", repeatable=True) == "--cors-origin"
    assert _parse() == _Config()
    assert _parse("--cors-origin", "http://a:1").cors_origins == ("http://a:1",)
    both = _parse("--cors-origin", "http://a:1", "--port", "1", "--cors-origin", "http://b")
    assert both == _Config(("http://a:1", "http://b"), 1)
    assert _parse().cors_origins == ()  # the default is not shared and changed by a parse


def test_up_and_serve_gateway_take_cors_origins() -> None:
    parser = build_parser()
    up = parser.parse_args(["up", "--cors-origin", "http://a:1", "--cors-origin", "http://b:2"])
    assert up.cors_origins == ("http://a:1", "http://b:2")
    gw = parser.parse_args(
        ["serve", "gateway", "--data-dir", "d", "--insecure", "--registry", "h:1",
         "--content", "h:2", "--hub", "h:3", "--cors-origin", "http://a:1"]
    )  # fmt: skip
    assert gw.cors_origins == ("http://a:1",)
