"""Canned replies: saved answers with a few placeholders, written by agents and therefore untrusted.

A body is parsed by Jinja2's immutable sandbox and its syntax tree is checked against a whitelist
before anything is compiled: only text, the seven placeholders below and a handful of harmless
filters may appear. Rendering then sees nothing but plain strings and ints, so even a template that
slipped past the check would have nothing to reach.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, fields
from functools import lru_cache
from typing import Any

from jinja2 import Template, TemplateSyntaxError, Undefined, nodes
from jinja2.exceptions import TemplateError
from jinja2.filters import do_capitalize, do_default, do_lower, do_title, do_trim, do_upper
from jinja2.sandbox import ImmutableSandboxedEnvironment

from helpdesk.errors import ValidationError

#: Longest body an agent may save; generous next to the platform's limit on what is sent.
MAX_BODY_CHARS = 4000
#: The platform refuses a DM whose text is longer than this, in UTF-8 bytes.
MAX_RENDERED_BYTES = 1000
#: Longest fallback text allowed in ``|default('...')``.
MAX_DEFAULT_CHARS = 200
#: Deepest chain of filters on one placeholder, e.g. ``contact.first_name|default('')|title``.
MAX_FILTER_CHAIN = 4

#: Every placeholder a canned reply may use, by namespace, in the order they are documented.
ALLOWED_PLACEHOLDERS: dict[str, tuple[str, ...]] = {
    "contact": ("first_name", "username", "name"),
    "agent": ("first_name", "name"),
    "brand": ("name",),
    "ticket": ("id",),
}
ALLOWED_NAMES: tuple[str, ...] = tuple(
    f"{ns}.{attr}" for ns, attrs in ALLOWED_PLACEHOLDERS.items() for attr in attrs
)

_REFUSED = "this template uses something canned replies cannot reach"
_ALLOWED_HINT = "the placeholders are " + ", ".join(ALLOWED_NAMES)

# Statement nodes, named by the tag an agent would have typed, for a readable refusal.
_STATEMENT_TAGS: dict[type[nodes.Node], str] = {
    nodes.For: "for",
    nodes.If: "if",
    nodes.Macro: "macro",
    nodes.CallBlock: "call",
    nodes.FilterBlock: "filter",
    nodes.With: "with",
    nodes.Assign: "set",
    nodes.AssignBlock: "set",
    nodes.Include: "include",
    nodes.Import: "import",
    nodes.FromImport: "from ... import",
    nodes.Extends: "extends",
    nodes.Block: "block",
    nodes.ExprStmt: "do",
    nodes.Continue: "continue",
    nodes.Break: "break",
    nodes.Scope: "scope",
}


@dataclass(frozen=True)
class CannedContext:
    """The only values a canned reply can see; plain strings and ints so no ORM object leaks in."""

    contact_first_name: str | None = None
    contact_username: str | None = None
    contact_name: str | None = None
    agent_first_name: str | None = None
    agent_name: str | None = None
    brand_name: str | None = None
    ticket_id: int | None = None

    def __post_init__(self) -> None:
        # Refuse anything richer than str/int up front, so rendering never calls a foreign __str__.
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None:
                continue
            expected = int if f.name == "ticket_id" else str
            if type(value) is not expected:
                raise TypeError(
                    f"CannedContext.{f.name} must be {expected.__name__} or None, "
                    f"not {type(value).__name__}"
                )


@dataclass(frozen=True)
class RenderResult:
    """Rendered text plus the placeholders left unfilled, so the console can flag them."""

    text: str
    missing: list[str] = field(default_factory=list)

    @property
    def too_long(self) -> bool:
        """Whether the platform would refuse this text as a DM."""
        return len(self.text.encode("utf-8")) > MAX_RENDERED_BYTES


def marker(name: str) -> str:
    """The visible text left in place of a placeholder that has no value."""
    return "{{ " + name + " }}"


class _Values(dict):
    """One namespace of values (``contact``, ``agent``...): a dict that knows its name.

    Its own attributes start with an underscore, so they can never shadow an allowed placeholder.
    """

    def __init__(self, namespace: str, values: dict[str, str | int], missing: list[str]):
        super().__init__(values)
        self._namespace = namespace
        self._missing = missing


class _MissingValue(Undefined):
    """Renders as the placeholder's own marker and records it, instead of an empty string."""

    __slots__ = ()

    def _placeholder(self) -> str | None:
        obj = self._undefined_obj
        if isinstance(obj, _Values) and isinstance(self._undefined_name, str):
            return f"{obj._namespace}.{self._undefined_name}"
        return None

    def __str__(self) -> str:
        name = self._placeholder()
        if name is None:  # unreachable past the whitelist; never render something unexplained
            self._fail_with_undefined_error()
        missing = self._undefined_obj._missing
        if name not in missing:
            missing.append(name)
        return marker(name)


def _keep_missing(fn: Callable[[str], str]) -> Callable[[Any], Any]:
    """Let a missing value pass through a text filter untouched, so its marker stays readable."""

    def wrapper(value: Any) -> Any:
        if isinstance(value, Undefined):
            return value
        return fn(str(value))

    wrapper.__name__ = fn.__name__
    return wrapper


_TEXT_FILTERS: dict[str, Callable[[Any], Any]] = {
    "upper": _keep_missing(do_upper),
    "lower": _keep_missing(do_lower),
    "title": _keep_missing(do_title),
    "capitalize": _keep_missing(do_capitalize),
    "trim": _keep_missing(do_trim),
}
ALLOWED_FILTERS: tuple[str, ...] = ("default", *_TEXT_FILTERS)


def _environment() -> ImmutableSandboxedEnvironment:
    """A sandbox with no globals, no tests and only the whitelisted filters: nothing to call."""
    env = ImmutableSandboxedEnvironment(
        autoescape=False,  # plain text for a DM; the console escapes it when displaying
        undefined=_MissingValue,
        keep_trailing_newline=True,
        auto_reload=False,
        cache_size=0,
    )
    env.globals.clear()
    env.tests.clear()
    env.filters.clear()
    env.filters.update(_TEXT_FILTERS)
    env.filters["default"] = do_default
    return env


_ENV = _environment()


# --- validation -----------------------------------------------------------------------------------


def _refuse(what: str, node: nodes.Node | None = None, hint: str = "") -> ValidationError:
    where = f" on line {node.lineno}" if node is not None and getattr(node, "lineno", None) else ""
    return ValidationError(f"{_REFUSED}: {what}{where}" + (f"; {hint}" if hint else ""))


def _describe(expr: nodes.Node) -> str:
    """A short, source-like description of a refused expression."""
    if isinstance(expr, nodes.Name):
        return f"`{expr.name}`"
    if isinstance(expr, nodes.Getattr):
        inner = _describe(expr.node)
        if inner.startswith("`"):
            return f"`{inner.strip('`')}.{expr.attr}`"
        return f"the attribute `.{expr.attr}` of {inner}"
    if isinstance(expr, nodes.Getitem):
        return f"`{_describe(expr.node).strip('`')}[...]` (write placeholders with a dot)"
    if isinstance(expr, nodes.Filter):
        return f"the filter `{expr.name}`" if expr.name else "a filter"
    if isinstance(expr, nodes.Call):
        return "a function call"
    if isinstance(expr, nodes.Const):
        return "a literal value inside {{ }}"
    if isinstance(expr, nodes.Test):
        return f"the test `is {expr.name}`"
    if isinstance(expr, nodes.BinExpr | nodes.UnaryExpr | nodes.Compare | nodes.Concat):
        return "an operator or arithmetic"
    return f"a {type(expr).__name__.lower()} expression"


def _placeholder_name(expr: nodes.Node) -> str:
    """The dotted name of a whitelisted placeholder, or a refusal naming what was found."""
    if not (
        isinstance(expr, nodes.Getattr)
        and isinstance(expr.node, nodes.Name)
        and expr.node.ctx == "load"
        and expr.ctx == "load"
    ):
        raise _refuse(_describe(expr), expr, _ALLOWED_HINT)
    namespace, attr = expr.node.name, expr.attr
    if attr not in ALLOWED_PLACEHOLDERS.get(namespace, ()):
        raise _refuse(f"`{namespace}.{attr}`", expr, _ALLOWED_HINT)
    return f"{namespace}.{attr}"


def _check_filter(expr: nodes.Filter) -> None:
    if expr.name not in ALLOWED_FILTERS:
        raise _refuse(
            f"the filter `{expr.name}`", expr, "the filters are " + ", ".join(ALLOWED_FILTERS)
        )
    if expr.kwargs or expr.dyn_args is not None or expr.dyn_kwargs is not None:
        raise _refuse(f"keyword or unpacked arguments to `{expr.name}`", expr)
    if expr.name == "default":
        texts = [a.value for a in expr.args if isinstance(a, nodes.Const) and type(a.value) is str]
        if len(expr.args) > 1 or len(texts) != len(expr.args):
            raise _refuse("`default` takes one quoted text, e.g. default('there')", expr)
        if texts and len(texts[0]) > MAX_DEFAULT_CHARS:
            raise _refuse(f"a default text longer than {MAX_DEFAULT_CHARS} characters", expr)
    elif expr.args:
        raise _refuse(f"arguments to the filter `{expr.name}`", expr)


def _expression_placeholder(expr: nodes.Node) -> str:
    """Check one ``{{ ... }}``: a placeholder, optionally through a short chain of safe filters."""
    depth = 0
    while isinstance(expr, nodes.Filter):
        depth += 1
        if depth > MAX_FILTER_CHAIN:
            raise _refuse(f"more than {MAX_FILTER_CHAIN} filters on one placeholder", expr)
        _check_filter(expr)
        if expr.node is None:  # only inside {% filter %} blocks, which are refused anyway
            raise _refuse("a filter block", expr)
        expr = expr.node
    return _placeholder_name(expr)


def _walk(template: nodes.Template) -> Iterator[str]:
    """Yield each placeholder in order; raise on any node outside the whitelist."""
    for stmt in template.body:
        if not isinstance(stmt, nodes.Output):
            tag = _STATEMENT_TAGS.get(type(stmt), type(stmt).__name__.lower())
            raise _refuse(f"a {{% {tag} %}} tag", stmt, "canned replies take no tags")
        for child in stmt.nodes:
            if isinstance(child, nodes.TemplateData):
                continue
            yield _expression_placeholder(child)


def _parse(body: str) -> tuple[nodes.Template, list[str]]:
    """Parse and check a body; never compiles or runs anything."""
    if not isinstance(body, str):
        raise ValidationError("a canned reply must be text")
    if len(body) > MAX_BODY_CHARS:
        raise ValidationError(
            f"a canned reply is at most {MAX_BODY_CHARS} characters (this one has {len(body)})"
        )
    try:
        tree = _ENV.parse(body)
    except TemplateSyntaxError as exc:
        raise ValidationError(
            f"this canned reply has a template syntax error on line {exc.lineno}: {exc.message}"
        ) from None
    except RecursionError:
        raise ValidationError("this canned reply is nested too deeply to read") from None
    names: list[str] = []
    for name in _walk(tree):
        if name not in names:
            names.append(name)
    return tree, names


@lru_cache(maxsize=256)
def _compile(body: str) -> Template:
    """Compile a checked body once; the same replies are used over and over."""
    tree, _ = _parse(body)
    return _ENV.from_string(tree)


# --- public API -----------------------------------------------------------------------------------


def validate_canned(body: str) -> None:
    """Refuse, when a reply is saved, any body that could not be rendered safely."""
    if not isinstance(body, str) or not body.strip():
        raise ValidationError("a canned reply cannot be empty")
    _parse(body)


def placeholders(body: str) -> list[str]:
    """The distinct placeholders a (valid) body uses, in order, e.g. ``["contact.first_name"]``."""
    return _parse(body)[1]


def _namespaces(values: CannedContext, missing: list[str]) -> dict[str, _Values]:
    """Build the render context: per namespace, only the values that are set and non-blank."""
    raw: dict[str, dict[str, str | int | None]] = {
        "contact": {
            "first_name": values.contact_first_name,
            "username": values.contact_username,
            "name": values.contact_name,
        },
        "agent": {"first_name": values.agent_first_name, "name": values.agent_name},
        "brand": {"name": values.brand_name},
        "ticket": {"id": values.ticket_id},
    }
    context: dict[str, _Values] = {}
    for namespace, attrs in raw.items():
        present = {
            attr: value
            for attr, value in attrs.items()
            if value is not None and not (isinstance(value, str) and not value.strip())
        }
        context[namespace] = _Values(namespace, present, missing)
    return context


def render_canned(body: str, values: CannedContext) -> RenderResult:
    """Fill a reply's placeholders; unfilled ones stay visible and are listed in ``missing``."""
    template = _compile(body)
    missing: list[str] = []
    try:
        text = template.render(_namespaces(values, missing))
    except TemplateError as exc:  # not expected past the whitelist; never leak a traceback
        raise ValidationError(f"{_REFUSED}: {exc}") from None
    return RenderResult(text=text, missing=missing)
