"""JSON Schema (2020-12) compiled to Python for the per-message hot path (spec/README.md §Validation).

Theory of operation: :func:`compile_schema` walks a schema fragment once and writes Python source
for one predicate ``valid(instance) -> bool`` that answers exactly what
``Draft202012Validator(schema, format_checker=FORMAT_CHECKER).is_valid(instance)`` answers (the
reference implementation; tests/foundation/test_compiled_schema.py holds the two equal). Every
keyword becomes straight-line statements that ``return False`` on the first failed test;
``$ref`` targets (local or in another schema of the :class:`SchemaRegistry`) are inlined, and
only sub-schemas that must be tried rather than required (``anyOf``, ``oneOf``, ``not``, ``if``,
``contains``, ``propertyNames``) or that recurse become functions of their own. Keywords apply
only to instances of their type, as the specification says; a ``type`` keyword that already pins
the type drops the per-keyword guards. Any keyword not listed in ``_APPLICATORS``/``_ASSERTIONS``
or ``_ANNOTATIONS`` makes compilation fail: nothing is ignored silently.

The predicate says only *whether* an instance is valid. Callers that reject fall back to
jsonschema's ``iter_errors`` + ``best_match`` for the message and JSON path, so errors read as
before; the predicate is therefore only on the path of valid messages, where it is ~20-50x faster.
"""

from __future__ import annotations

import functools
import itertools
import math
import numbers
import re
from collections.abc import Callable, Mapping, Sequence
from fractions import Fraction
from typing import Any, NamedTuple
from urllib.parse import unquote, urldefrag, urljoin

from jsonschema import Draft202012Validator

from infernet_ref.errors import LocalProtocolError
from infernet_ref.specs.registry import SchemaRegistry, default_registry, schema_id

Predicate = Callable[[Any], bool]

_ANNOTATIONS = frozenset(
    {
        "$schema",
        "$comment",
        "$defs",
        "title",
        "description",
        "examples",
        "default",
        "deprecated",
        "readOnly",
        "writeOnly",
        "contentMediaType",
        "contentEncoding",
        "contentSchema",
        "then",
        "else",
        "minContains",
        "maxContains",
    }
)  # then/else/min-/maxContains act only through if/contains, as in jsonschema
_OBJECT = (
    "properties",
    "required",
    "additionalProperties",
    "patternProperties",
    "propertyNames",
    "minProperties",
    "maxProperties",
    "dependentRequired",
    "dependentSchemas",
)
_ARRAY = ("prefixItems", "items", "contains", "minItems", "maxItems", "uniqueItems")
_STRING = ("minLength", "maxLength", "pattern")
_NUMBER = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf")
_ANY = ("type", "enum", "const", "format", "$ref", "allOf", "anyOf", "oneOf", "not", "if")
_SUPPORTED = frozenset(_OBJECT + _ARRAY + _STRING + _NUMBER + _ANY)
_GUARDS = {
    "object": "isinstance({x}, dict)",
    "array": "isinstance({x}, list)",
    "string": "isinstance({x}, str)",
    "number": "(type({x}) is int or type({x}) is float or "
    "(isinstance({x}, _Number) and not isinstance({x}, bool)))",
}
_TYPES = {
    **_GUARDS,
    "null": "{x} is None",
    "boolean": "isinstance({x}, bool)",
    "integer": "(type({x}) is int or (isinstance({x}, int) and not isinstance({x}, bool)) or "
    "(isinstance({x}, float) and {x}.is_integer()))",
}
_FORMATS = Draft202012Validator.FORMAT_CHECKER


class SchemaCompileError(LocalProtocolError):
    """The schema uses something the compiler does not implement (a spec or compiler gap)."""


def _unbool(value: Any, true: object = object(), false: object = object()) -> Any:
    """True and False as values distinct from 1 and 0 (JSON Schema's equality)."""
    if value is True:
        return true
    if value is False:
        return false
    return value


def _equal(one: Any, two: Any) -> bool:
    """JSON Schema equality: numbers by value but booleans apart, containers recursively."""
    if one is two:
        return True
    if isinstance(one, str) or isinstance(two, str):
        return bool(one == two)
    if isinstance(one, Sequence) and isinstance(two, Sequence):
        return len(one) == len(two) and all(_equal(a, b) for a, b in zip(one, two, strict=True))
    if isinstance(one, Mapping) and isinstance(two, Mapping):
        return len(one) == len(two) and all(k in two and _equal(v, two[k]) for k, v in one.items())
    return bool(_unbool(one) == _unbool(two))


def _unique(items: list[Any]) -> bool:
    """``uniqueItems``: sort when the items allow it, else compare pairwise (same verdicts)."""
    try:
        ordered = sorted(_unbool(i) for i in items)
        return not any(_equal(a, b) for a, b in itertools.pairwise(ordered))
    except (NotImplementedError, TypeError):
        seen: list[Any] = []
        for item in map(_unbool, items):
            if any(_equal(s, item) for s in seen):
                return False
            seen.append(item)
        return True


def _multiple_of(value: Any, divisor: Any) -> bool:
    if isinstance(divisor, float):
        quotient = value / divisor
        try:
            return bool(int(quotient) == quotient)
        except OverflowError:
            return (Fraction(value) / Fraction(divisor)).denominator == 1
    return not value % divisor


def _enum_ok(value: Any, options: list[Any]) -> bool:
    return any(_equal(option, value) for option in options)


class _At(NamedTuple):
    """Where code is being written: the schema's location, the instance variable and indent."""

    base: str
    ptr: str
    x: str
    d: int
    ind: str


def _join(pointer: str, key: str | int) -> str:
    return f"{pointer}/{str(key).replace('~', '~0').replace('/', '~1')}"


class _Compiler:
    """Writes the source of one module of predicates; ``self.ns`` holds its constants."""

    def __init__(self, registry: SchemaRegistry) -> None:
        self.registry = registry
        self.ns: dict[str, Any] = {
            "_Number": numbers.Number,
            "_equal": _equal,
            "_unique": _unique,
            "_multiple_of": _multiple_of,
            "_enum_ok": _enum_ok,
            "_fc": _FORMATS,
            # builtins as module globals: one dictionary lookup each instead of two
            **{f.__name__: f for f in (isinstance, type, len, int, float, str, dict, list, bool)},
        }
        self.functions: list[str] = []
        self.names: dict[tuple[str, str], str] = {}
        self.inlining: list[tuple[str, str]] = []

    def const(self, value: Any, hint: str = "c") -> str:
        name = f"_{hint}{len(self.ns)}"
        self.ns[name] = value
        return name

    def resolve(self, base: str, ref: str) -> tuple[Any, str, str]:
        uri, fragment = urldefrag(urljoin(base, ref))
        if uri not in self.registry.schemas:
            raise SchemaCompileError(f"$ref {ref!r} names no schema in the registry ({uri})")
        if fragment and not fragment.startswith("/"):
            raise SchemaCompileError(f"$ref {ref!r}: only JSON-pointer fragments are supported")
        node: Any = self.registry.schemas[uri]
        for raw in fragment.split("/")[1:]:
            part = unquote(raw).replace("~1", "/").replace("~0", "~")
            try:
                node = node[int(part)] if isinstance(node, list) else node[part]
            except (KeyError, IndexError, ValueError):
                raise SchemaCompileError(f"$ref {ref!r} points at nothing") from None
        return node, uri, unquote(fragment)

    def function(self, node: Any, base: str, pointer: str) -> str:
        """The name of a module-level predicate for ``node`` (made once per location)."""
        key = (base, pointer)
        if key not in self.names:
            name = self.names[key] = f"_v{len(self.names)}"
            body: list[str] = []
            self.emit(node, _At(base, pointer, "x0", 0, "    "), body)
            self.functions.append("\n".join([f"def {name}(x0):", *body, "    return True"]))
        return self.names[key]

    def emit(self, node: Any, at: _At, out: list[str]) -> None:
        """Append statements that ``return False`` unless ``at.x`` satisfies ``node``."""
        base, pointer, x, _, ind = at
        if node is True:
            return
        if node is False:
            out.append(f"{ind}return False")
            return
        if not isinstance(node, dict):
            raise SchemaCompileError(f"{base}#{pointer}: a schema must be an object or a boolean")
        unknown = set(node) - _SUPPORTED - _ANNOTATIONS - {"$id"}
        if unknown:
            raise SchemaCompileError(f"{base}#{pointer}: unsupported keyword(s) {sorted(unknown)}")
        if "$id" in node and urljoin(base, node["$id"]) != base:
            raise SchemaCompileError(f"{base}#{pointer}: nested $id is not supported")
        types = self.emit_type(node, x, out, ind)
        for keys, kind, method in (
            (_OBJECT, "object", self.emit_object),
            (_ARRAY, "array", self.emit_array),
            (_STRING, "string", self.emit_string),
            (_NUMBER, "number", self.emit_number),
        ):
            if not any(k in node for k in keys):
                continue
            covered = types is not None and all(
                t == kind or (kind == "number" and t == "integer") for t in types
            )
            if (
                types is not None
                and not covered
                and not any(t == kind or (kind == "number" and t == "integer") for t in types)
            ):
                continue  # the type keyword already rejects every instance these apply to
            inner = ind
            if not covered:
                out.append(f"{ind}if {_GUARDS[kind].format(x=x)}:")
                inner = ind + "    "
            before = len(out)
            method(node, at._replace(ind=inner), out)
            if len(out) == before and not covered:
                out.append(f"{inner}pass")
        self.emit_any(node, at, out)

    def emit_type(self, node: dict[str, Any], x: str, out: list[str], ind: str) -> list[str] | None:
        if "type" not in node:
            return None
        types = node["type"] if isinstance(node["type"], list) else [node["type"]]
        unknown = [t for t in types if t not in _TYPES]
        if unknown or not types:
            raise SchemaCompileError(f"unknown type(s) {unknown or types!r}")
        test = " or ".join(_TYPES[t].format(x=x) for t in types)
        out.append(f"{ind}if not ({test}): return False")
        return list(types)

    def emit_object(self, node: dict[str, Any], at: _At, out: list[str]) -> None:
        base, ptr, x, d, ind = at
        required = list(node.get("required", []))
        if required:
            test = " or ".join(f"{k!r} not in {x}" for k in required)
            out.append(f"{ind}if {test}: return False")
        for key in ("minProperties", "maxProperties"):
            if key in node:
                op = "<" if key == "minProperties" else ">"
                out.append(f"{ind}if len({x}) {op} {node[key]!r}: return False")
        for prop, dependency in node.get("dependentRequired", {}).items():
            test = " or ".join(f"{k!r} not in {x}" for k in dependency) or "False"
            out.append(f"{ind}if {prop!r} in {x} and ({test}): return False")
        y = f"x{d + 1}"
        props: dict[str, Any] = node.get("properties", {})
        for prop, sub in props.items():
            child: list[str] = []
            self.emit(
                sub, _At(base, _join(_join(ptr, "properties"), prop), y, d + 1, ind + "    "), child
            )
            if not child:
                continue
            if prop in required:
                out.append(f"{ind}{y} = {x}[{prop!r}]")
                out.extend(line[4:] for line in child)
            else:
                out.append(f"{ind}if {prop!r} in {x}:")
                out.append(f"{ind}    {y} = {x}[{prop!r}]")
                out.extend(child)
        patterns: dict[str, Any] = node.get("patternProperties", {})
        for pattern, sub in patterns.items():
            search = self.const(re.compile(pattern).search, "re")
            out.append(f"{ind}for k{d}, {y} in {x}.items():")
            out.append(f"{ind}    if {search}(k{d}):")
            sub_ptr = _join(_join(ptr, "patternProperties"), pattern)
            self.emit(sub, _At(base, sub_ptr, y, d + 1, ind + "        "), out)
            out.append(f"{ind}        pass")
        if "additionalProperties" in node:
            self.emit_additional(node, at, out)
        for prop, sub in node.get("dependentSchemas", {}).items():
            out.append(f"{ind}if {prop!r} in {x}:")
            self.emit(
                sub, _At(base, _join(_join(ptr, "dependentSchemas"), prop), x, d, ind + "    "), out
            )
            out.append(f"{ind}    pass")
        if "propertyNames" in node:
            fn = self.function(node["propertyNames"], base, _join(ptr, "propertyNames"))
            out.append(f"{ind}for k{d} in {x}:")
            out.append(f"{ind}    if not {fn}(k{d}): return False")

    def emit_additional(self, node: dict[str, Any], at: _At, out: list[str]) -> None:
        base, ptr, x, d, ind = at
        extra = node["additionalProperties"]
        known = self.const(frozenset(node.get("properties", {})), "keys")
        joined = "|".join(node.get("patternProperties", {}))
        match = f" and not {self.const(re.compile(joined).search, 're')}(k{d})" if joined else ""
        if extra is True or extra == {}:
            return
        if not isinstance(extra, dict) and not match:
            out.append(f"{ind}if not ({x}.keys() <= {known}): return False")
            return
        y = f"x{d + 1}"
        out.append(f"{ind}for k{d}, {y} in {x}.items():")
        out.append(f"{ind}    if k{d} not in {known}{match}:")
        self.emit(
            extra, _At(base, _join(ptr, "additionalProperties"), y, d + 1, ind + "        "), out
        )
        out.append(f"{ind}        pass")

    def emit_array(self, node: dict[str, Any], at: _At, out: list[str]) -> None:
        base, ptr, x, d, ind = at
        for key, op in (("minItems", "<"), ("maxItems", ">")):
            if key in node:
                out.append(f"{ind}if len({x}) {op} {node[key]!r}: return False")
        y = f"x{d + 1}"
        prefix: list[Any] = node.get("prefixItems", [])
        for i, sub in enumerate(prefix):
            child: list[str] = []
            self.emit(
                sub, _At(base, _join(_join(ptr, "prefixItems"), i), y, d + 1, ind + "    "), child
            )
            if child:
                out.append(f"{ind}if len({x}) > {i}:")
                out.append(f"{ind}    {y} = {x}[{i}]")
                out.extend(child)
        if "items" in node and node["items"] is not True:
            if node["items"] is False:
                out.append(f"{ind}if len({x}) > {len(prefix)}: return False")
            else:
                rest = f"itertools_islice({x}, {len(prefix)}, None)" if prefix else x
                self.ns["itertools_islice"] = itertools.islice
                out.append(f"{ind}for {y} in {rest}:")
                before = len(out)
                self.emit(
                    node["items"], _At(base, _join(ptr, "items"), y, d + 1, ind + "    "), out
                )
                if len(out) == before:
                    out.pop()
        if node.get("uniqueItems"):
            out.append(f"{ind}if not _unique({x}): return False")
        if "contains" in node:
            fn = self.function(node["contains"], base, _join(ptr, "contains"))
            n = f"n{d}"
            most = node.get("maxContains")
            out.append(f"{ind}{n} = 0")
            out.append(f"{ind}for {y} in {x}:")
            out.append(f"{ind}    if {fn}({y}):")
            out.append(f"{ind}        {n} += 1")
            if most is not None:
                out.append(f"{ind}        if {n} > {most!r}: return False")
            out.append(f"{ind}if {n} < {node.get('minContains', 1)!r}: return False")

    def emit_string(self, node: dict[str, Any], at: _At, out: list[str]) -> None:
        x, ind = at.x, at.ind
        for key, op in (("minLength", "<"), ("maxLength", ">")):
            if key in node:
                out.append(f"{ind}if len({x}) {op} {node[key]!r}: return False")
        if "pattern" in node:
            search = self.const(re.compile(node["pattern"]).search, "re")
            out.append(f"{ind}if not {search}({x}): return False")

    def emit_number(self, node: dict[str, Any], at: _At, out: list[str]) -> None:
        x, ind = at.x, at.ind
        # The failing comparison exactly as jsonschema writes it (NaN compares false both ways).
        for key, op in (
            ("minimum", "<"),
            ("maximum", ">"),
            ("exclusiveMinimum", "<="),
            ("exclusiveMaximum", ">="),
        ):
            if key in node:
                out.append(f"{ind}if {x} {op} {self.literal(node[key])}: return False")
        if "multipleOf" in node:
            out.append(
                f"{ind}if not _multiple_of({x}, {self.literal(node['multipleOf'])}): return False"
            )

    def literal(self, value: Any) -> str:
        """Source text for a number in a comparison (a named constant when repr cannot be)."""
        if (
            type(value) is int
            or isinstance(value, bool)
            or (type(value) is float and math.isfinite(value))
        ):
            return repr(value)
        return self.const(value)

    def emit_any(self, node: dict[str, Any], at: _At, out: list[str]) -> None:
        base, ptr, x, d, ind = at
        if "const" in node:
            out.append(f"{ind}if not ({self.const_test(node['const'], x)}): return False")
        if "enum" in node:
            options = list(node["enum"])
            if options and all(type(o) is str for o in options):
                names = self.const(frozenset(options), "enum")
                out.append(f"{ind}if not (isinstance({x}, str) and {x} in {names}): return False")
            else:
                out.append(
                    f"{ind}if not _enum_ok({x}, {self.const(options, 'enum')}): return False"
                )
        if "format" in node:
            fmt = node["format"]
            if fmt not in _FORMATS.checkers:
                raise SchemaCompileError(f"{base}#{ptr}: format {fmt!r} cannot be checked here")
            out.append(f"{ind}if not _fc.conforms({x}, {fmt!r}): return False")
        if "$ref" in node:
            target, uri, fragment = self.resolve(base, node["$ref"])
            if (uri, fragment) in self.inlining:  # a cycle: call the target's own function
                out.append(f"{ind}if not {self.function(target, uri, fragment)}({x}): return False")
            else:
                self.inlining.append((uri, fragment))
                self.emit(target, _At(uri, fragment, x, d, ind), out)
                self.inlining.pop()
        for i, sub in enumerate(node.get("allOf", [])):
            self.emit(sub, _At(base, _join(_join(ptr, "allOf"), i), x, d, ind), out)
        for key, joiner, fmt in (("anyOf", " or ", "not ({})"), ("oneOf", " + ", "({}) != 1")):
            if key in node:
                calls = [
                    f"{self.function(sub, base, _join(_join(ptr, key), i))}({x})"
                    for i, sub in enumerate(node[key])
                ]
                out.append(f"{ind}if {fmt.format(joiner.join(calls) or 'False')}: return False")
        if "not" in node:
            out.append(f"{ind}if {self.function(node['not'], base, _join(ptr, 'not'))}({x}):")
            out.append(f"{ind}    return False")
        if "if" in node and ("then" in node or "else" in node):
            out.append(f"{ind}if {self.function(node['if'], base, _join(ptr, 'if'))}({x}):")
            self.emit(
                node.get("then", True), _At(base, _join(ptr, "then"), x, d, ind + "    "), out
            )
            out.append(f"{ind}    pass")
            out.append(f"{ind}else:")
            self.emit(
                node.get("else", True), _At(base, _join(ptr, "else"), x, d, ind + "    "), out
            )
            out.append(f"{ind}    pass")

    def const_test(self, value: Any, x: str) -> str:
        """An expression equal to ``_equal(x, value)`` (the ``const`` keyword), inlined."""
        if isinstance(value, str):
            return f"{x} == {value!r}"
        if value is None or isinstance(value, bool):
            return f"{x} is {value!r}"
        if type(value) is int or (type(value) is float and not math.isnan(value)):
            return f"{x} is not True and {x} is not False and {x} == {self.literal(value)}"
        return f"_equal({x}, {self.const(value)})"


class CompiledSchema:
    """A compiled predicate with its generated source (``print(c.source)`` to read it)."""

    __slots__ = ("is_valid", "source")

    def __init__(self, is_valid: Predicate, source: str) -> None:
        self.is_valid = is_valid
        self.source = source

    def __call__(self, instance: Any) -> bool:
        return self.is_valid(instance)


def compile_schema(
    schema: Any, *, base_uri: str = "", registry: SchemaRegistry | None = None, pointer: str = ""
) -> CompiledSchema:
    """Compile ``schema`` (found at ``base_uri#pointer``) to a predicate equal to jsonschema's
    ``Draft202012Validator(schema, format_checker=FORMAT_CHECKER).is_valid``.

    ``$ref`` resolves against ``base_uri`` and the schemas of ``registry`` (the default
    registry when omitted). Raises :class:`SchemaCompileError` for any keyword it does not
    implement.
    """
    compiler = _Compiler(registry or default_registry())
    root = compiler.function(schema, base_uri, pointer)
    source = "\n\n".join(compiler.functions) + "\n"
    code = compile(source, f"<compiled schema {base_uri}#{pointer}>", "exec")
    exec(code, compiler.ns)  # the source was generated above from the schema
    predicate: Predicate = compiler.ns[root]
    return CompiledSchema(predicate, source)


@functools.lru_cache(maxsize=512)
def compiled(
    name: str, pointer: str = "", registry: SchemaRegistry | None = None
) -> CompiledSchema:
    """The compiled predicate for schema ``name`` (or its subschema at JSON pointer ``pointer``)."""
    reg = registry or default_registry()
    sid = schema_id(name)
    schema, uri, fragment = _Compiler(reg).resolve(sid, "#" + pointer)
    return compile_schema(schema, base_uri=uri, registry=reg, pointer=fragment)
