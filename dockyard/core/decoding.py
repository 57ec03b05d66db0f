"""Request documents decoded into typed attrs records, strictly, the way Go decodes them.

The daemon decodes every Engine API body (:mod:`dockyard.daemon.containers.config`) and the
registry every pushed manifest (:mod:`dockyard.registry.manifests`) here, at the boundary,
before anything acts on them. A :class:`Decoder` is a cattrs converter with the rules of Go's
``encoding/json``, which every docker and OCI client is written against:

* a value of the wrong JSON type is an error, never coerced (``"false"`` is not a boolean,
  ``[1, 2]`` is not a list of strings, ``1.5`` is not an integer);
* integers must fit the Go type (``int64``; :data:`UInt` for ``uint64``);
* strings must be valid Unicode (a lone ``\\ud800`` escape is refused);
* ``null`` means "not given": the field keeps its default, and a field without one is
  required;
* keys a record does not know are ignored, as Go ignores them (clients send the fields of
  newer API versions too).

A failure is a :class:`DecodeError` (an ``InvalidParameter``, so a 400) that names the field
by its JSON path, ``HostConfig.Privileged`` or ``layers[0].annotations["a"]``. The JSON text
itself is parsed by :func:`parse_json`, which refuses what Python's parser would let through,
or fail on with something other than a 400: ``NaN`` and ``Infinity``, integers of thousands of
digits, nesting deep enough to exhaust the stack, and bytes that are not UTF-8.

Records name their fields in snake_case; the JSON key is the field's name in the decoder's
key style (``HostConfig`` for the Engine API, ``mediaType`` for OCI documents), or
:func:`json_key` where the spelling is irregular (``UTSMode``, ``os.version``).
"""

from __future__ import annotations

import json
import math
import typing
from collections.abc import Callable
from typing import Any, NewType, TypeVar

import attrs
import cattrs
from cattrs.errors import ClassValidationError, IterableValidationError
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override

from dockyard.core.errors import InvalidParameter

T = TypeVar("T")

#: A Go ``uint``/``uint64`` field: an integer from 0 to 2**64 - 1.
UInt = NewType("UInt", int)

INT64 = (-(1 << 63), (1 << 63) - 1)
UINT64 = (0, (1 << 64) - 1)
#: Deeper than any real request; Python's own parser would fail with RecursionError further on.
MAX_NESTING = 200

_JSON_KEY = "dockyard.json_key"
_STR_SLICE = "dockyard.str_slice"


def json_key(name: str, **kwargs: Any) -> Any:
    """An attrs field whose JSON key is ``name`` rather than the CamelCase of its attribute."""
    metadata = {**kwargs.pop("metadata", {}), _JSON_KEY: name}
    return attrs.field(metadata=metadata, **kwargs)


def str_slice() -> Any:
    """An attrs field of docker's ``strslice`` type (``Cmd``, ``Entrypoint``, ``Shell``): an
    array of strings, where one string stands for a one-element array. Absent is ``None``."""
    return attrs.field(default=None, metadata={_STR_SLICE: True})


def camel_case(name: str) -> str:
    """``host_config`` as the Engine API spells it: ``HostConfig``."""
    return "".join(part[:1].upper() + part[1:] for part in name.split("_"))


def lower_camel_case(name: str) -> str:
    """``media_type`` as OCI documents spell it: ``mediaType``."""
    head, *rest = name.split("_")
    return head + camel_case("_".join(rest))


# --------------------------------------------------------------------------------------------
# JSON text
# --------------------------------------------------------------------------------------------


def _refuse_constant(name: str) -> Any:
    raise InvalidParameter(f"invalid JSON: {name} is not a JSON number")


#: dockerd's words for an empty body where a route must have one (exec, volume and network
#: creates): its JSON decoder met the end of the input first.
EMPTY_BODY = "got EOF while reading request body"


def parse_json(raw: bytes, required: bool = False) -> Any:
    """Parse a request body; an empty body is ``{}``, or a 400 where the route ``required``
    one. Bad JSON of any sort is a 400."""
    if not raw.strip():
        if required:
            raise InvalidParameter(EMPTY_BODY)
        return {}
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidParameter(f"invalid JSON: the body is not UTF-8 ({exc.reason})") from None
    if _nesting_of(text) > MAX_NESTING:
        raise InvalidParameter(f"invalid JSON: nested more than {MAX_NESTING} levels deep")
    try:
        return json.loads(text, parse_constant=_refuse_constant)
    except json.JSONDecodeError as exc:
        raise InvalidParameter(f"invalid JSON: {exc}") from None
    except ValueError as exc:  # an integer beyond Python's digit limit
        raise InvalidParameter(f"invalid JSON: {exc}") from None


def _nesting_of(text: str) -> int:
    """The deepest bracket nesting outside strings (a cheap scan before the real parse)."""
    brackets = text.count("[") + text.count("{")
    if brackets <= MAX_NESTING:
        return brackets  # no deeper than that: spare the character-by-character scan
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


# --------------------------------------------------------------------------------------------
# The converter
# --------------------------------------------------------------------------------------------

_JSON_NAMES = {
    bool: "a boolean",
    int: "an integer",
    float: "a number",
    str: "a string",
    list: "an array",
    dict: "an object",
    type(None): "null",
}


class WrongType(TypeError):
    """A JSON value of the wrong type (the message says what was expected and what came)."""


def json_type(value: Any) -> str:
    """How a JSON value's type is named in errors: "a string", "an array", "null"..."""
    return _JSON_NAMES.get(type(value), type(value).__name__)


def _expect(value: Any, kind: type, name: str) -> None:
    # bool is an int subclass in Python, not in JSON.
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise WrongType(f"expected {name}, got {json_type(value)}")


def _structure_str(value: Any, _: type) -> str:
    _expect(value, str, "a string")
    try:
        value.encode()
    except UnicodeEncodeError:  # a lone surrogate escape such as "\ud800"
        raise WrongType("expected valid Unicode text") from None
    return str(value)


def _structure_bool(value: Any, _: type) -> bool:
    _expect(value, bool, "a boolean")
    return bool(value)


def _structure_int(value: Any, _: type) -> int:
    _expect(value, int, "an integer")
    if not INT64[0] <= value <= INT64[1]:
        raise WrongType(f"the integer {_short(value)} does not fit in 64 bits")
    return int(value)


def _structure_uint(value: Any, _: type) -> int:
    _expect(value, int, "an integer")
    if not UINT64[0] <= value <= UINT64[1]:
        raise WrongType(f"expected an integer from 0 to 2**64-1, got {_short(value)}")
    return int(value)


def _structure_float(value: Any, _: type) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise WrongType(f"expected a number, got {json_type(value)}")
    if isinstance(value, int) and not INT64[0] <= value <= INT64[1]:
        raise WrongType(f"the number {_short(value)} is out of range")
    number = float(value)
    if not math.isfinite(number):
        raise WrongType("expected a finite number")
    return number


def _short(value: int) -> str:
    text = str(value) if value.bit_length() < 200 else f"of {len(str(abs(value)))} digits"
    return text


class Decoder(cattrs.Converter):
    """cattrs with Go's rules: strict scalars, objects must be objects, null is the default.

    ``key_style`` turns a field's name into its JSON key. A program registers hooks for types
    of its own (``register_structure_hook``) that raise :class:`WrongType` with a reason.
    """

    def __init__(self, key_style: Callable[[str], str] = camel_case) -> None:
        super().__init__(detailed_validation=True, forbid_extra_keys=False)
        self.key_style = key_style
        self.register_structure_hook(str, _structure_str)
        self.register_structure_hook(bool, _structure_bool)
        self.register_structure_hook(int, _structure_int)
        self.register_structure_hook(UInt, _structure_uint)
        self.register_structure_hook(float, _structure_float)
        self.register_structure_hook_factory(attrs.has, self._record_hook)
        self.register_structure_hook_factory(_is_list, self._list_hook)
        self.register_structure_hook_factory(_is_tuple, self._tuple_hook)
        self.register_structure_hook_factory(_is_dict, self._dict_hook)
        self.register_unstructure_hook_factory(attrs.has, self._record_unstructure_hook)

    def decode(self, raw: Any, cls: type[T]) -> T:
        """Structure parsed JSON ``raw`` into ``cls``; a :class:`DecodeError` naming the field."""
        try:
            return self.structure(raw, cls)
        except (ClassValidationError, IterableValidationError, WrongType) as exc:
            path, leaf = _path_of(self, exc)
            raise DecodeError(path, _reason(leaf)) from None

    def encode(self, record: Any) -> Any:
        """The JSON form of a record (its fields under their JSON keys)."""
        return self.unstructure(record)

    def key_of(self, field: attrs.Attribute[Any]) -> str:
        return str(field.metadata.get(_JSON_KEY) or self.key_style(field.name))

    def _record_hook(self, cls: type) -> Callable[[Any, type], Any]:
        renames: dict[str, Any] = {
            field.name: override(rename=self.key_of(field)) for field in attrs.fields(cls)
        }
        build: Callable[[Any, type], Any] = make_dict_structure_fn(
            cls, self, _cattrs_detailed_validation=True, **renames
        )
        # Docker's strslice (Cmd, Entrypoint, Shell): one string is a one-element array.
        str_slices = {self.key_of(f) for f in attrs.fields(cls) if f.metadata.get(_STR_SLICE)}

        def structure(value: Any, _: type) -> Any:
            _expect(value, dict, "an object")
            # null is Go's "not given": drop it so the field keeps its default.
            given = {
                key: [item] if key in str_slices and isinstance(item, str) else item
                for key, item in value.items()
                if item is not None
            }
            return build(given, cls)

        return structure

    def _record_unstructure_hook(self, cls: type) -> Callable[[Any], Any]:
        renames: dict[str, Any] = {
            field.name: override(rename=self.key_of(field)) for field in attrs.fields(cls)
        }
        unstructure: Callable[[Any], Any] = make_dict_unstructure_fn(cls, self, **renames)
        return unstructure

    def _list_hook(self, cls: Any) -> Callable[[Any, type], Any]:
        (item_type,) = typing.get_args(cls) or (Any,)

        def structure(value: Any, _: type) -> list[Any]:
            _expect(value, list, "an array")
            if item_type is Any:
                return list(value)
            items, errors = [], []
            for index, item in enumerate(value):
                try:
                    items.append(self.structure(item, item_type))
                except Exception as exc:
                    exc.__notes__ = [*getattr(exc, "__notes__", []), f"@index {index}"]
                    errors.append(exc)
            if errors:
                raise IterableValidationError("While structuring a list", errors, cls)
            return items

        return structure

    def _tuple_hook(self, cls: Any) -> Callable[[Any, type], Any]:
        (item_type, *_ellipsis) = typing.get_args(cls) or (Any,)
        as_list = self._list_hook(list[item_type])  # type: ignore[valid-type]

        def structure(value: Any, _: type) -> tuple[Any, ...]:
            return tuple(as_list(value, list))

        return structure

    def _dict_hook(self, cls: Any) -> Callable[[Any, type], Any]:
        args = typing.get_args(cls)
        value_type = args[1] if len(args) == 2 else Any

        def structure(value: Any, _: type) -> dict[str, Any]:
            _expect(value, dict, "an object")
            if value_type is Any:
                return dict(value)
            result, errors = {}, []
            for key, item in value.items():
                try:
                    result[_structure_str(key, str)] = self.structure(item, value_type)
                except Exception as exc:
                    exc.__notes__ = [*getattr(exc, "__notes__", []), f"@key {key}"]
                    errors.append(exc)
            if errors:
                raise IterableValidationError("While structuring an object", errors, cls)
            return result

        return structure


def _is_list(cls: Any) -> bool:
    return typing.get_origin(cls) is list


def _is_tuple(cls: Any) -> bool:
    return typing.get_origin(cls) is tuple


def _is_dict(cls: Any) -> bool:
    return typing.get_origin(cls) is dict


class DecodeError(InvalidParameter):
    """A document that does not fit its record: ``field`` is the JSON path, ``reason`` why."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}" if field else reason)
        self.field = field
        self.reason = reason


def _path_of(decoder: Decoder, exc: BaseException) -> tuple[str, BaseException]:
    """The JSON path of the first leaf error under ``exc`` (``a.b[0]["k"]``), and that leaf."""
    path = ""
    current = exc
    while isinstance(current, ClassValidationError | IterableValidationError):
        inner = current.exceptions[0]
        for note in getattr(inner, "__notes__", []):
            name = getattr(note, "name", None)
            if name is not None and isinstance(current, ClassValidationError):
                field = attrs.fields_dict(current.cl).get(name)
                key = decoder.key_of(field) if field is not None else name
                path += f".{key}" if path else key
            elif isinstance(note, str) and note.startswith("@index "):
                path += f"[{note.removeprefix('@index ')}]"
            elif isinstance(note, str) and note.startswith("@key "):
                path += f"[{json.dumps(note.removeprefix('@key ')[:100])}]"
        current = inner
    return path, current


def _reason(leaf: BaseException) -> str:
    if isinstance(leaf, KeyError):  # cattrs' word for a required field that is absent
        return "is required"
    return str(leaf)
