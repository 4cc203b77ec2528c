"""Canned replies render only their seven placeholders, keep unfilled ones visible, and refuse
anything that would reach past them before it is compiled."""

from __future__ import annotations

import pytest

from helpdesk.canned import render as canned
from helpdesk.canned.render import (
    MAX_BODY_CHARS,
    MAX_RENDERED_BYTES,
    CannedContext,
    RenderResult,
    placeholders,
    render_canned,
    validate_canned,
)
from helpdesk.errors import ValidationError

FULL = CannedContext(
    contact_first_name="Maya",
    contact_username="maya.codes",
    contact_name="Maya Lind",
    agent_first_name="Sam",
    agent_name="Sam Ortiz",
    brand_name="Acme Coffee",
    ticket_id=42,
)


def test_every_placeholder_is_filled_from_the_context():
    body = (
        "Hi {{ contact.first_name }} (@{{ contact.username }}, {{ contact.name }}), "
        "{{ agent.first_name }} / {{ agent.name }} at {{ brand.name }}, ticket #{{ ticket.id }}"
    )
    result = render_canned(body, FULL)
    assert result == RenderResult(
        text="Hi Maya (@maya.codes, Maya Lind), Sam / Sam Ortiz at Acme Coffee, ticket #42",
        missing=[],
    )


def test_text_around_placeholders_is_kept_verbatim_and_not_html_escaped():
    body = "Tom & Jerry's <b>deal</b> for {{ contact.first_name }}!\n"
    assert render_canned(body, FULL).text == "Tom & Jerry's <b>deal</b> for Maya!\n"


def test_values_are_not_html_escaped_either():
    ctx = CannedContext(brand_name="Ben & <Jerry>")
    assert render_canned("{{ brand.name }}", ctx).text == "Ben & <Jerry>"


def test_a_value_is_never_re_rendered_as_a_template():
    ctx = CannedContext(contact_first_name="{{ brand.name }}", brand_name="Acme")
    assert render_canned("Hi {{ contact.first_name }}", ctx).text == "Hi {{ brand.name }}"


def test_missing_value_is_left_visible_and_listed():
    ctx = CannedContext(agent_first_name="Sam")
    result = render_canned("Hi {{contact.first_name}}, it's {{ agent.first_name }}", ctx)
    assert result.text == "Hi {{ contact.first_name }}, it's Sam"
    assert result.missing == ["contact.first_name"]


def test_blank_value_counts_as_missing():
    ctx = CannedContext(contact_first_name="   ")
    result = render_canned("Hi {{ contact.first_name }}", ctx)
    assert result.text == "Hi {{ contact.first_name }}"
    assert result.missing == ["contact.first_name"]


def test_missing_placeholders_are_listed_once_in_order_of_appearance():
    body = "{{ ticket.id }} {{ brand.name }} {{ ticket.id }} {{ contact.username }}"
    result = render_canned(body, CannedContext())
    assert result.missing == ["ticket.id", "brand.name", "contact.username"]
    assert result.text == "{{ ticket.id }} {{ brand.name }} {{ ticket.id }} {{ contact.username }}"


def test_missing_value_marker_survives_text_filters():
    result = render_canned("Hi {{ contact.first_name | upper | trim }}", CannedContext())
    assert result.text == "Hi {{ contact.first_name }}"
    assert result.missing == ["contact.first_name"]


def test_default_filter_fills_a_missing_value_and_it_is_not_flagged():
    result = render_canned("Hi {{ contact.first_name | default('there') }}!", CannedContext())
    assert result == RenderResult(text="Hi there!", missing=[])


def test_default_filter_keeps_a_present_value():
    assert render_canned("{{ contact.first_name|default('there') }}", FULL).text == "Maya"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("{{ brand.name|upper }}", "ACME COFFEE"),
        ("{{ brand.name|lower }}", "acme coffee"),
        ("{{ contact.name|lower|title }}", "Maya Lind"),
        ("{{ contact.username|capitalize }}", "Maya.codes"),
        ("{{ contact.first_name|default('x')|lower }}", "maya"),
    ],
)
def test_safe_text_filters_apply_to_placeholders(body: str, expected: str):
    assert render_canned(body, FULL).text == expected


def test_trim_filter_strips_a_value():
    ctx = CannedContext(brand_name="  Acme  ")
    assert render_canned("[{{ brand.name|trim }}]", ctx).text == "[Acme]"


def test_placeholders_lists_distinct_names_in_order():
    body = "{{ brand.name }} {{ contact.first_name|default('there') }} {{ brand.name|upper }}"
    assert placeholders(body) == ["brand.name", "contact.first_name"]


def test_placeholders_of_plain_text_is_empty():
    assert placeholders("Thanks for reaching out!") == []


def test_validate_accepts_a_normal_reply():
    validate_canned(
        "Hi {{ contact.first_name|default('there') }}, thanks! — {{ agent.first_name }}"
    )


def test_comments_and_raw_blocks_are_harmless_text():
    body = "{# note to self #}Use {% raw %}{{ code }}{% endraw %} at checkout"
    validate_canned(body)
    assert render_canned(body, FULL).text == "Use {{ code }} at checkout"


HOSTILE = {
    "class_access": "{{ ''.__class__ }}",
    "mro_walk": "{{ contact.__class__.__mro__ }}",
    "subclasses": "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "config": "{{ config }}",
    "self": "{{ self }}",
    "cycler_globals": "{{ cycler.__init__.__globals__ }}",
    "lipsum_globals": "{{ lipsum.__globals__ }}",
    "namespace_global": "{{ namespace }}",
    "huge_loop": "{% for x in range(10**9) %}x{% endfor %}",
    "string_bomb": "{{ 'a' * 100000000 }}",
    "power_bomb": "{{ 9 ** 9 ** 9 }}",
    "attr_filter": "{{ contact|attr('__class__') }}",
    "attr_filter_on_placeholder": "{{ contact.first_name|attr('__class__') }}",
    "format_filter": "{{ '%s'|format(contact) }}",
    "map_filter": "{{ contact.first_name|map('upper') }}",
    "unknown_attribute": "{{ contact.email }}",
    "dict_method": "{{ contact.items() }}",
    "dict_method_reference": "{{ contact.keys }}",
    "subscript": "{{ contact['first_name'] }}",
    "whole_namespace": "{{ contact }}",
    "call": "{{ contact.first_name() }}",
    "str_format_method": "{{ contact.first_name.format }}",
    "literal": "{{ 'hello' }}",
    "concat": "{{ contact.first_name ~ brand.name }}",
    "conditional_expression": "{{ contact.first_name if brand.name else 'x' }}",
    "or_operator": "{{ contact.first_name or 'there' }}",
    "test_expression": "{{ contact.first_name is defined }}",
    "include": "{% include 'base.html' %}",
    "import": "{% import 'macros.html' as m %}",
    "from_import": "{% from 'macros.html' import m %}",
    "extends": "{% extends 'base.html' %}",
    "set": "{% set x = 1 %}",
    "if": "{% if contact.first_name %}Hi{% endif %}",
    "macro": "{% macro m() %}x{% endmacro %}",
    "filter_block": "{% filter upper %}x{% endfilter %}",
    "with": "{% with x = 1 %}{{ x }}{% endwith %}",
    "block": "{% block b %}x{% endblock %}",
    "default_with_expression": "{{ contact.first_name|default(brand.__class__) }}",
    "default_with_keyword": "{{ contact.first_name|default('x', boolean=true) }}",
    "default_too_long": "{{ contact.first_name|default('" + "a" * 500 + "') }}",
    "filter_with_arguments": "{{ contact.first_name|trim('x') }}",
    "long_filter_chain": "{{ brand.name" + "|upper" * 10 + " }}",
}


@pytest.mark.parametrize("body", HOSTILE.values(), ids=HOSTILE.keys())
def test_sandbox_refuses_anything_but_placeholders(body: str):
    with pytest.raises(ValidationError, match="canned replies cannot reach"):
        validate_canned(body)
    with pytest.raises(ValidationError):
        render_canned(body, FULL)
    with pytest.raises(ValidationError):
        placeholders(body)


def test_sandbox_refuses_class_access():
    with pytest.raises(ValidationError) as err:
        validate_canned("Hi {{ contact.__class__.__mro__ }}")
    message = err.value.message
    assert message.startswith("this template uses something canned replies cannot reach:")
    assert "contact.__class__.__mro__" in message
    assert "contact.first_name" in message  # tells the agent what is allowed


def test_sandbox_refusal_names_the_tag_and_line():
    with pytest.raises(ValidationError, match=r"\{% include %\} tag on line 3"):
        validate_canned("Hi\nthere\n{% include 'x' %}")


def test_sandbox_refusal_names_the_filter():
    with pytest.raises(ValidationError, match="the filter `attr`"):
        validate_canned("{{ contact|attr('__class__') }}")


def test_refused_template_is_never_rendered(monkeypatch: pytest.MonkeyPatch):
    compiled: list[object] = []
    monkeypatch.setattr(canned._ENV, "from_string", lambda *a, **k: compiled.append(a))
    canned._compile.cache_clear()
    with pytest.raises(ValidationError):
        render_canned("{{ cycler.__init__.__globals__ }}", FULL)
    assert compiled == []
    canned._compile.cache_clear()


@pytest.mark.parametrize(
    ("body", "line"),
    [
        ("Hi {{ contact.first_name", 1),
        ("Hi\n{{ contact. }}", 2),
        ("a\nb\n{% endfor %}", 3),
        ("{% trans %}hi{% endtrans %}", 1),
    ],
)
def test_syntax_error_is_refused_with_its_line(body: str, line: int):
    with pytest.raises(ValidationError, match=f"syntax error on line {line}"):
        validate_canned(body)


def test_deep_nesting_is_refused_not_crashed():
    with pytest.raises(ValidationError):
        validate_canned("{{ " + "(" * 3000 + " }}")


def test_body_over_the_length_limit_is_refused():
    validate_canned("a" * MAX_BODY_CHARS)
    with pytest.raises(ValidationError, match=str(MAX_BODY_CHARS)):
        validate_canned("a" * (MAX_BODY_CHARS + 1))


@pytest.mark.parametrize("body", ["", "   \n"])
def test_empty_body_is_refused_at_validation(body: str):
    with pytest.raises(ValidationError, match="empty"):
        validate_canned(body)


def test_result_says_when_the_text_is_over_the_platform_limit():
    assert not render_canned("a" * MAX_RENDERED_BYTES, FULL).too_long
    assert render_canned("é" * (MAX_RENDERED_BYTES // 2 + 1), FULL).too_long  # bytes, not chars


def test_context_holds_only_plain_strings_and_ints():
    context = canned._namespaces(FULL, [])
    assert set(context) == {"contact", "agent", "brand", "ticket"}
    for namespace, values in context.items():
        assert isinstance(values, dict)
        assert set(values) == set(canned.ALLOWED_PLACEHOLDERS[namespace])
        for value in values.values():
            assert type(value) in (str, int)


def test_context_refuses_rich_objects_so_rendering_never_calls_them():
    class Exploding:
        def __str__(self) -> str:
            raise AssertionError("rendering must never call __str__ on a foreign object")

    with pytest.raises(TypeError, match="contact_first_name"):
        CannedContext(contact_first_name=Exploding())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="ticket_id"):
        CannedContext(ticket_id="42")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="ticket_id"):
        CannedContext(ticket_id=True)


def test_sandbox_has_no_globals_tests_or_extra_filters():
    assert dict(canned._ENV.globals) == {}
    assert dict(canned._ENV.tests) == {}
    assert sorted(canned._ENV.filters) == sorted(canned.ALLOWED_FILTERS)
    assert canned._ENV.autoescape is False
