"""Argument and result encoding: plain JSON, decoded back by the executor's annotations.

Values are stored and sent as plain JSON without type tags, so a client in any language
can produce them. :func:`encode` turns Python values into JSON; :func:`decode` turns JSON
back into the type an annotation names. The scheduler calls :func:`encode_call`, which
round-trips every argument through its parameter's annotation, so an ill-typed value fails
when it is scheduled and never in a worker. The worker calls :func:`decode_call`.

Per executor, :func:`plan_call` builds a :class:`CallPlan` once (cached per callable): the
signature, the parameter that receives the running ``Instance`` and one prebuilt decoder per
parameter. Decoders are closures built once per annotation; the ones for ``int``, ``str``,
``float``, ``bool`` and ``Any`` return the very object they are given when it already has the
right type, so decoding the arguments of a typical job costs well under a microsecond each.

go-job's wire API carries every argument as a string: :func:`coerce_call` decodes each one
with ``coerce_strings=True`` (``"1"`` for an ``int``, ``"true"`` for a ``bool``, JSON text for
a list, dict or dataclass) and re-encodes it as JSON.
"""

from __future__ import annotations

import base64
import binascii
import collections.abc as cabc
import dataclasses
import functools
import inspect
import itertools
import json
import math
import re
import reprlib
import sys
import types
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import Decimal, InvalidOperation
from enum import Enum
from typing import Any, Final, Literal, TypeAlias, Union, get_args, get_origin
from uuid import UUID

from .errors import ArgumentError, DecodeError, EncodeError, PayloadTooLarge

__all__ = [
    "JSON",
    "CallPlan",
    "Limits",
    "ParamPlan",
    "check_size",
    "coerce_call",
    "decode",
    "decode_call",
    "dumps",
    "encode",
    "encode_call",
    "encode_result",
    "loads",
    "plan_call",
]

JSON: TypeAlias = bool | int | float | str | list["JSON"] | dict[str, "JSON"] | None

_Decoder: TypeAlias = Callable[[Any], Any]
_Encoder: TypeAlias = Callable[[Any], JSON]
_NoneType: Final[type] = type(None)
_EMPTY = inspect.Parameter.empty


class _Repr(reprlib.Repr):
    def repr_dict(self, x: dict[Any, Any], level: int) -> str:  # keep key order (no sorting)
        if not x:
            return "{}"
        if level <= 0:
            return "{...}"
        pieces = [
            f"{self.repr1(k, level - 1)}: {self.repr1(v, level - 1)}"
            for k, v in itertools.islice(x.items(), self.maxdict)
        ]
        if len(x) > self.maxdict:
            pieces.append("...")
        return "{" + ", ".join(pieces) + "}"


_REPR = _Repr()
_REPR.maxstring = 80
_REPR.maxother = 80
_REPR.maxlist = _REPR.maxtuple = _REPR.maxset = _REPR.maxdict = 6


def _short(value: object) -> str:
    """A repr for error messages: at most 80 characters, and cheap even for huge values."""
    text = _REPR.repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _tname(cls: type) -> str:
    if cls.__module__ == "builtins":
        return cls.__qualname__
    return f"{cls.__module__}.{cls.__qualname__}"


def _aname(ann: Any) -> str:
    """A readable name for an annotation, for error messages."""
    if ann is None or ann is _NoneType:
        return "None"
    if ann is Any:
        return "Any"
    origin = get_origin(ann)
    args = get_args(ann)
    if origin is Union or origin is types.UnionType:
        return " | ".join(_aname(arg) for arg in args)
    if origin is Literal:
        return f"Literal[{', '.join(repr(arg) for arg in args)}]"
    if origin is typing.Annotated:
        return _aname(args[0])
    if origin is not None:
        base = getattr(origin, "__qualname__", repr(origin))
        inner = ", ".join("..." if arg is Ellipsis else _aname(arg) for arg in args)
        return f"{base}[{inner}]" if args else base
    if isinstance(ann, type):
        return ann.__qualname__
    return repr(ann).removeprefix("typing.")


# --------------------------------------------------------------------------- encoding


class _UnencodableError(Exception):
    """Internal: unwinds to the public entry point, collecting the path on the way."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.where: list[str] = []

    def error(self, path: str) -> EncodeError:
        return EncodeError(f"{path}{''.join(reversed(self.where))}: {self.reason}")


def encode(value: Any, *, path: str = "value") -> JSON:
    """Encode a Python value as plain JSON (see the module docs for the mapping).

    ``path`` names the value in error messages, e.g. ``args[1].items[3]: cannot encode ...``.
    Raises :class:`EncodeError` for NaN or infinite floats, naive datetimes, non-str dict
    keys and values of unsupported types.
    """
    cls = type(value)
    if cls is str or cls is int or cls is bool or value is None:
        return value  # type: ignore[no-any-return]
    try:
        return _enc(value)
    except _UnencodableError as exc:
        raise exc.error(path) from None
    except RecursionError:
        raise EncodeError(f"{path}: nested too deeply, or contains a reference cycle") from None


def encode_result(value: Any) -> JSON:
    """Encode an executor's return value; a returned tuple becomes a list, one entry per value."""
    return encode(value, path="result")


def _enc(value: Any) -> JSON:
    handler = _ENCODERS.get(type(value))
    if handler is None:
        handler = _encoder_for(type(value))
    return handler(value)


def _enc_same(value: Any) -> JSON:
    return value  # type: ignore[no-any-return]


def _enc_float(value: float) -> JSON:
    if math.isfinite(value):
        return value
    raise _UnencodableError(f"float {value!r} is not finite; JSON carries finite numbers only")


def _enc_items(items: Sequence[Any]) -> JSON:
    try:
        return [_enc(item) for item in items]
    except _UnencodableError:
        for index, item in enumerate(items):  # error path: find which item failed
            try:
                _enc(item)
            except _UnencodableError as exc:
                exc.where.append(f"[{index}]")
                raise exc from None
        raise


def _enc_set(value: cabc.Set[Any]) -> JSON:
    try:
        items = sorted(value)
    except TypeError:
        items = list(value)
    return _enc_items(items)


def _enc_dict(value: Mapping[Any, Any]) -> JSON:
    out: dict[str, JSON] = {}
    for key, item in value.items():
        if type(key) is not str:
            if not isinstance(key, str):
                raise _UnencodableError(
                    f"dict key {_short(key)} is of type {_tname(type(key))}; "
                    "JSON object keys must be str"
                )
            key = str.__str__(key)  # a str enum or other subclass: its plain text
        try:
            out[key] = _enc(item)
        except _UnencodableError as exc:
            exc.where.append(f"[{key!r}]")
            raise
    return out


def _enc_datetime(value: datetime) -> JSON:
    if value.tzinfo is None or value.utcoffset() is None:
        raise _UnencodableError(
            f"datetime {value.isoformat()} is naive; pass an aware datetime (with a tzinfo)"
        )
    return value.isoformat()


def _enc_isoformat(value: date | time) -> JSON:
    return value.isoformat()


def _enc_timedelta(value: timedelta) -> JSON:
    return value.total_seconds()


def _enc_str(value: Any) -> JSON:
    return str(value)


def _enc_bytes(value: bytes | bytearray | memoryview) -> JSON:
    return base64.b64encode(value).decode("ascii")


def _enc_enum(value: Enum) -> JSON:
    return _enc(value.value)


def _dataclass_encoder(cls: type) -> _Encoder:
    # Only init fields: those are what the decoder can pass back to the constructor.
    names = tuple(f.name for f in dataclasses.fields(cls) if f.init)

    def encode_dataclass(value: Any) -> JSON:
        out: dict[str, JSON] = {}
        for name in names:
            try:
                out[name] = _enc(getattr(value, name))
            except _UnencodableError as exc:
                exc.where.append(f".{name}")
                raise
        return out

    return encode_dataclass


def _unsupported_encoder(cls: type) -> _Encoder:
    name = _tname(cls)

    def refuse(value: Any) -> JSON:
        raise _UnencodableError(f"cannot encode a value of type {name} as JSON: {_short(value)}")

    return refuse


def _encoder_for(cls: type) -> _Encoder:
    """Resolve (and cache) the encoder for a type that has no exact-type entry yet."""
    handler: _Encoder
    if issubclass(cls, Enum):  # before int/str: IntEnum and StrEnum members
        handler = _enc_enum
    elif issubclass(cls, int):
        handler = int.__index__
    elif issubclass(cls, float):
        handler = lambda value: _enc_float(float(value))  # noqa: E731
    elif issubclass(cls, str):
        handler = str.__str__
    elif dataclasses.is_dataclass(cls):
        handler = _dataclass_encoder(cls)
    elif issubclass(cls, datetime):  # before date: a datetime is a date
        handler = _enc_datetime
    elif issubclass(cls, (date, time)):
        handler = _enc_isoformat
    elif issubclass(cls, timedelta):
        handler = _enc_timedelta
    elif issubclass(cls, (UUID, Decimal)):
        handler = _enc_str
    elif issubclass(cls, (bytes, bytearray, memoryview)):  # before Sequence
        handler = _enc_bytes
    elif issubclass(cls, Mapping):
        handler = _enc_dict
    elif issubclass(cls, cabc.Set):
        handler = _enc_set
    elif issubclass(cls, Sequence):
        handler = _enc_items
    else:
        handler = _unsupported_encoder(cls)
    _ENCODERS[cls] = handler
    return handler


_ENCODERS: dict[type, _Encoder] = {
    str: _enc_same,
    int: _enc_same,
    bool: _enc_same,
    _NoneType: _enc_same,
    float: _enc_float,
    list: _enc_items,
    tuple: _enc_items,
    dict: _enc_dict,
    set: _enc_set,
    frozenset: _enc_set,
    datetime: _enc_datetime,
    date: _enc_isoformat,
    time: _enc_isoformat,
    timedelta: _enc_timedelta,
    UUID: _enc_str,
    Decimal: _enc_str,
    bytes: _enc_bytes,
    bytearray: _enc_bytes,
}


# --------------------------------------------------------------------------- decoding


class _MismatchError(Exception):
    """Internal: a value does not fit; unwinds to the entry point, collecting the path."""

    def __init__(self, expected: str, value: object, detail: str = "") -> None:
        super().__init__(expected)
        self.expected = expected
        self.value = value
        self.detail = detail
        self.where: list[str] = []

    def error(self, path: str) -> DecodeError:
        where = "".join(reversed(self.where))
        text = f"{path}{where}: expected {self.expected}, got {_short(self.value)}"
        return DecodeError(f"{text} ({self.detail})" if self.detail else text)


def decode(
    data: JSON, annotation: Any, *, coerce_strings: bool = False, path: str = "value"
) -> Any:
    """Decode JSON into the type ``annotation`` names (see the module docs for the mapping).

    With ``coerce_strings`` a str is also accepted where a number, bool, list, dict or
    dataclass is expected, as go-job's wire API sends them. Raises :class:`DecodeError`
    naming ``path``, the expected type and the value received, or :class:`ArgumentError`
    when the annotation itself is not supported.
    """
    decoder = _decoder(annotation, coerce_strings)
    try:
        return decoder(data)
    except _MismatchError as exc:
        raise exc.error(path) from exc.__cause__
    except RecursionError:
        raise DecodeError(f"{path}: nested too deeply") from None


_DECODERS: dict[tuple[Any, ...], _Decoder] = {}


def _cache_key(ann: Any, coerce: bool) -> tuple[Any, ...]:
    # `int | float == float | int` (unions compare as sets), but the first member that fits
    # wins, so the key of anything but a class carries the annotation's spelling too.
    if not isinstance(ann, types.GenericAlias) and isinstance(ann, type):
        return (ann, coerce)
    return (ann, coerce, repr(ann))


def _decoder(ann: Any, coerce: bool) -> _Decoder:
    """The decoder for an annotation, built once and cached."""
    key = _cache_key(ann, coerce)
    try:
        found = _DECODERS.get(key)
    except TypeError:  # an unhashable annotation (e.g. a Literal of a list): build, don't cache
        return _build(ann, coerce)
    if found is None:
        found = _build(ann, coerce)
        _DECODERS[key] = found
    return found


def _identity(value: Any) -> Any:
    return value


def _d_none(value: Any) -> Any:
    if value is None:
        return None
    raise _MismatchError("None", value)


def _d_bool(value: Any) -> Any:
    if type(value) is bool:
        return value
    raise _MismatchError("bool", value)


def _d_int(value: Any) -> Any:
    if type(value) is int:
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return int(value)
    raise _MismatchError("int", value)


def _d_float(value: Any) -> Any:
    cls = type(value)
    if cls is float:
        if math.isfinite(value):
            return value
    elif cls is int:
        try:
            return float(value)
        except OverflowError:
            pass
    raise _MismatchError("float", value)


def _d_str(value: Any) -> Any:
    if type(value) is str:
        return value
    raise _MismatchError("str", value)


def _parse_iso(parse: Callable[[str], Any], name: str, value: Any) -> Any:
    if type(value) is not str:
        raise _MismatchError(name, value, "an ISO 8601 string")
    try:
        return parse(value)
    except ValueError:
        raise _MismatchError(name, value, "not ISO 8601") from None


def _d_datetime(value: Any) -> Any:
    result = _parse_iso(datetime.fromisoformat, "datetime", value)
    if result.tzinfo is None or result.utcoffset() is None:
        raise _MismatchError("datetime", value, "no UTC offset; naive datetimes are refused")
    return result


def _d_date(value: Any) -> Any:
    return _parse_iso(date.fromisoformat, "date", value)


def _d_time(value: Any) -> Any:
    return _parse_iso(time.fromisoformat, "time", value)


def _d_timedelta(value: Any) -> Any:
    if type(value) is int or type(value) is float:
        try:
            return timedelta(seconds=value)
        except OverflowError:
            pass
    raise _MismatchError("timedelta", value, "a number of seconds")


def _d_uuid(value: Any) -> Any:
    if type(value) is str:
        try:
            return UUID(value)
        except ValueError:
            pass
    raise _MismatchError("UUID", value)


def _d_decimal(value: Any) -> Any:
    cls = type(value)
    try:
        if cls is str or cls is int:
            return Decimal(value)
        if cls is float:
            return Decimal(repr(value))  # the shortest text that round-trips, not the binary
    except InvalidOperation:
        pass
    raise _MismatchError("Decimal", value)


def _d_bytes(value: Any) -> Any:
    if type(value) is str:
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            pass
    raise _MismatchError("bytes", value, "base64 text")


def _d_bytearray(value: Any) -> Any:
    try:
        return bytearray(_d_bytes(value))
    except _MismatchError as exc:
        exc.expected = "bytearray"
        raise


_INT_TEXT = re.compile(r"[+-]?[0-9]+")
_FLOAT_TEXT = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_TRUE_TEXT = frozenset({"1", "t", "true"})
_FALSE_TEXT = frozenset({"0", "f", "false"})


def _c_int(value: Any) -> Any:
    if type(value) is str:
        if _INT_TEXT.fullmatch(value):
            try:
                return int(value)
            except ValueError:  # more digits than int() converts
                pass
        raise _MismatchError("int", value)
    return _d_int(value)


def _c_float(value: Any) -> Any:
    if type(value) is str:
        if _FLOAT_TEXT.fullmatch(value):
            result = float(value)
            if math.isfinite(result):
                return result
        raise _MismatchError("float", value)
    return _d_float(value)


def _c_bool(value: Any) -> Any:
    if type(value) is str:
        text = value.lower()  # strconv.ParseBool spellings: 1 t T TRUE true True, and false's
        if text in _TRUE_TEXT:
            return True
        if text in _FALSE_TEXT:
            return False
        raise _MismatchError("bool", value)
    return _d_bool(value)


def _c_timedelta(value: Any) -> Any:
    if type(value) is str:
        try:
            return _d_timedelta(_c_float(value))
        except _MismatchError:
            raise _MismatchError("timedelta", value, "a number of seconds") from None
    return _d_timedelta(value)


_STRICT: dict[Any, _Decoder] = {
    bool: _d_bool,
    int: _d_int,
    float: _d_float,
    str: _d_str,
    _NoneType: _d_none,
    datetime: _d_datetime,
    date: _d_date,
    time: _d_time,
    timedelta: _d_timedelta,
    UUID: _d_uuid,
    Decimal: _d_decimal,
    bytes: _d_bytes,
    bytearray: _d_bytearray,
}
_COERCING: dict[Any, _Decoder] = {
    **_STRICT,
    bool: _c_bool,
    int: _c_int,
    float: _c_float,
    timedelta: _c_timedelta,
}
_LIST_ORIGINS = frozenset(
    {list, cabc.Sequence, cabc.MutableSequence, cabc.Iterable, cabc.Collection}
)
_SET_ORIGINS = frozenset({set, cabc.Set, cabc.MutableSet})
_DICT_ORIGINS = frozenset({dict, cabc.Mapping, cabc.MutableMapping})
_BARE: dict[Any, Any] = {
    **dict.fromkeys(_LIST_ORIGINS, list[Any]),
    **dict.fromkeys(_SET_ORIGINS, set[Any]),
    **dict.fromkeys(_DICT_ORIGINS, dict[str, Any]),
    tuple: tuple[Any, ...],
    frozenset: frozenset[Any],
}


def _unsupported(ann: Any, why: str = "unsupported annotation") -> ArgumentError:
    return ArgumentError(f"cannot decode into {_aname(ann)}: {why}")


def _build(ann: Any, coerce: bool) -> _Decoder:
    if ann is Any or ann is object or ann is _EMPTY:
        return _identity
    if ann is None:
        return _d_none
    if isinstance(ann, (str, typing.ForwardRef)):
        raise _unsupported(ann, "unresolved forward reference")
    if isinstance(ann, typing.TypeVar):
        return _identity if ann.__bound__ is None else _decoder(ann.__bound__, coerce)
    if isinstance(ann, typing.NewType):
        return _decoder(ann.__supertype__, coerce)
    origin = get_origin(ann)
    if origin is not None:
        return _build_generic(ann, origin, get_args(ann), coerce)
    if isinstance(ann, type):
        return _build_class(ann, coerce)
    raise _unsupported(ann)


def _build_generic(ann: Any, origin: Any, args: tuple[Any, ...], coerce: bool) -> _Decoder:
    if origin is typing.Annotated:
        return _decoder(args[0], coerce)
    if origin is Literal:
        return _literal_decoder(ann, args, coerce)
    if origin is Union or origin is types.UnionType:
        return _union_decoder(ann, args, coerce)
    if coerce:
        return _json_text(ann, _decoder(ann, False))
    if origin in _LIST_ORIGINS:
        return _items_decoder(ann, args[0] if args else Any, list)
    if origin in _SET_ORIGINS:
        return _items_decoder(ann, args[0] if args else Any, set)
    if origin is frozenset:
        return _items_decoder(ann, args[0] if args else Any, frozenset)
    if origin is tuple:
        if ann is typing.Tuple or (len(args) == 2 and args[1] is Ellipsis):  # noqa: UP006
            return _items_decoder(ann, args[0] if args else Any, tuple)
        return _fixed_tuple_decoder(ann, args)
    if origin in _DICT_ORIGINS:
        return _dict_decoder(ann, *(args or (str, Any)))
    if isinstance(origin, type) and dataclasses.is_dataclass(origin):
        return _decoder(origin, False)  # a generic dataclass: its type variables decode as Any
    raise _unsupported(ann)


def _build_class(cls: type, coerce: bool) -> _Decoder:
    scalar = (_COERCING if coerce else _STRICT).get(cls)
    if scalar is not None:
        return scalar
    if cls in _BARE:
        return _decoder(_BARE[cls], coerce)
    if issubclass(cls, Enum):
        return _enum_decoder(cls, coerce)
    is_record = (
        dataclasses.is_dataclass(cls)
        or typing.is_typeddict(cls)
        or (issubclass(cls, tuple) and hasattr(cls, "_fields"))
    )
    if is_record and coerce:
        return _json_text(cls, _decoder(cls, False))
    if dataclasses.is_dataclass(cls):
        return _dataclass_decoder(cls)
    if typing.is_typeddict(cls):
        return _typeddict_decoder(cls)
    if issubclass(cls, tuple) and hasattr(cls, "_fields"):
        return _namedtuple_decoder(cls)
    for base in (str, int, float, bytes):
        if issubclass(cls, base):  # e.g. class UserId(str): decode the base, then wrap
            return _subclass_decoder(cls, _decoder(base, coerce))
    raise _unsupported(cls)


def _subclass_decoder(cls: type, base: _Decoder) -> _Decoder:
    def decode_subclass(value: Any) -> Any:
        try:
            return cls(base(value))
        except _MismatchError as exc:
            exc.expected = cls.__qualname__
            raise

    return decode_subclass


def _json_text(ann: Any, strict: _Decoder) -> _Decoder:
    """Coercing mode for containers: a str is parsed as JSON text, then decoded strictly."""
    name = _aname(ann)

    def decode_json_text(value: Any) -> Any:
        if type(value) is str:
            try:
                value = json.loads(value)
            except ValueError:
                raise _MismatchError(name, value, "not valid JSON text") from None
        return strict(value)

    return decode_json_text


def _literal_decoder(ann: Any, values: tuple[Any, ...], coerce: bool) -> _Decoder:
    name = _aname(ann)
    fast = {(type(v), v): v for v in values if type(v) in (str, int, bool, _NoneType)}
    tries = [(v, _decoder(type(v), coerce)) for v in values]

    def decode_literal(value: Any) -> Any:
        cls = type(value)
        if cls is str or cls is int or cls is bool or value is None:
            hit = fast.get((cls, value), fast)
            if hit is not fast:
                return hit
        for expected, decoder in tries:
            try:
                result = decoder(value)
            except _MismatchError:
                continue
            if type(result) is type(expected) and result == expected:
                return expected
        raise _MismatchError(name, value)

    return decode_literal


def _union_decoder(ann: Any, members: tuple[Any, ...], coerce: bool) -> _Decoder:
    name = _aname(ann)
    nullable = _NoneType in members
    others = [_decoder(m, coerce) for m in members if m is not _NoneType]
    if len(others) == 1:  # Optional[X]: keep X's own error, with its path
        (only,) = others

        def decode_optional(value: Any) -> Any:
            if value is None and nullable:
                return None
            try:
                return only(value)
            except _MismatchError as exc:
                if not exc.where:
                    exc.expected = name
                raise

        return decode_optional

    def decode_union(value: Any) -> Any:
        if value is None and nullable:
            return None
        for decoder in others:  # first success wins, in declaration order
            try:
                return decoder(value)
            except _MismatchError:
                pass
        raise _MismatchError(name, value)

    return decode_union


def _items_decoder(ann: Any, item_ann: Any, kind: Callable[[Any], Any]) -> _Decoder:
    name = _aname(ann)
    item = _decoder(item_ann, False)

    def decode_items(value: Any) -> Any:
        if type(value) is not list and type(value) is not tuple:
            raise _MismatchError(name, value)
        try:
            if item is _identity:
                return kind(value)
            items = [item(x) for x in value]
            return items if kind is list else kind(items)
        except _MismatchError:
            for index, x in enumerate(value):  # error path: find which item failed
                try:
                    item(x)
                except _MismatchError as exc:
                    exc.where.append(f"[{index}]")
                    raise exc from exc.__cause__
            raise
        except TypeError as exc:  # set of unhashable items
            raise _MismatchError(name, value, str(exc)) from None

    return decode_items


def _fixed_tuple_decoder(ann: Any, item_anns: tuple[Any, ...]) -> _Decoder:
    name = _aname(ann)
    items = [_decoder(a, False) for a in item_anns]
    size = len(items)

    def decode_tuple(value: Any) -> Any:
        if type(value) is not list and type(value) is not tuple:
            raise _MismatchError(name, value)
        if len(value) != size:
            raise _MismatchError(name, value, f"{size} items, not {len(value)}")
        out = []
        for index, (item, x) in enumerate(zip(items, value, strict=True)):
            try:
                out.append(item(x))
            except _MismatchError as exc:
                exc.where.append(f"[{index}]")
                raise
        return tuple(out)

    return decode_tuple


def _dict_decoder(ann: Any, key_ann: Any, value_ann: Any) -> _Decoder:
    name = _aname(ann)
    keys = _decoder(key_ann, False)
    values = _decoder(value_ann, False)

    def decode_dict(value: Any) -> Any:
        if type(value) is not dict:
            raise _MismatchError(name, value)
        out = {}
        for k, v in value.items():
            try:
                out[keys(k)] = values(v)
            except _MismatchError as exc:
                exc.where.append(f"[{k!r}]")
                raise
        return out

    return decode_dict


def _hints(obj: Any) -> dict[str, Any]:
    try:
        return typing.get_type_hints(obj)
    except (NameError, TypeError, AttributeError, SyntaxError) as exc:
        raise ArgumentError(f"cannot resolve the type hints of {_aname(obj)}: {exc}") from exc


def _record_decoder(
    cls: type, fields: dict[str, Any], required: Iterable[str], make: Callable[..., Any]
) -> _Decoder:
    """A JSON object with exactly the given field names (the required ones present)."""
    name = cls.__qualname__
    table: dict[str, _Decoder] = {}
    needed = tuple(required)
    key = _cache_key(cls, False)

    def decode_record(value: Any) -> Any:
        if type(value) is not dict:
            raise _MismatchError(name, value)
        kwargs = {}
        for k, v in value.items():
            decoder = table.get(k)
            if decoder is None:
                raise _MismatchError(name, value, f"unknown field {k!r}")
            try:
                kwargs[k] = decoder(v)
            except _MismatchError as exc:
                exc.where.append(f".{k}")
                raise
        if len(kwargs) < len(table):
            missing = [f for f in needed if f not in kwargs]
            if missing:
                text = ", ".join(map(repr, missing))
                raise _MismatchError(name, value, f"missing required field {text}")
        try:
            return make(**kwargs)
        except (TypeError, ValueError) as exc:  # __post_init__ validation, InitVar, ...
            raise _MismatchError(name, value, f"{type(exc).__name__}: {exc}") from exc

    cached = set(_DECODERS)
    _DECODERS[key] = decode_record  # registered first, so recursive types find it
    field_name = ""
    try:
        for field_name, field_ann in fields.items():
            table[field_name] = _decoder(field_ann, False)
    except ArgumentError as exc:
        # Forget everything built meanwhile: it may hold this half-built decoder.
        for added in set(_DECODERS) - cached:
            del _DECODERS[added]
        raise ArgumentError(f"{name}.{field_name}: {exc}") from exc
    return decode_record


def _dataclass_decoder(cls: type) -> _Decoder:
    hints = _hints(cls)
    fields = [f for f in dataclasses.fields(cls) if f.init]
    required = [
        f.name
        for f in fields
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    return _record_decoder(cls, {f.name: hints.get(f.name, Any) for f in fields}, required, cls)


def _typeddict_decoder(cls: type) -> _Decoder:
    hints = _hints(cls)
    required: frozenset[str] = getattr(cls, "__required_keys__", frozenset(hints))
    return _record_decoder(cls, hints, sorted(required), dict)


def _namedtuple_decoder(cls: type) -> _Decoder:
    name = cls.__qualname__
    names: tuple[str, ...] = getattr(cls, "_fields")  # noqa: B009
    hints = _hints(cls)
    items = [_decoder(hints.get(n, Any), False) for n in names]
    least = len(names) - len(getattr(cls, "_field_defaults", {}))

    def decode_namedtuple(value: Any) -> Any:
        if type(value) is not list and type(value) is not tuple:
            raise _MismatchError(name, value)
        if not least <= len(value) <= len(items):
            raise _MismatchError(name, value, f"{least} to {len(items)} items, not {len(value)}")
        out = []
        for index, (item, x) in enumerate(zip(items, value, strict=False)):
            try:
                out.append(item(x))
            except _MismatchError as exc:
                exc.where.append(f".{names[index]}")
                raise
        return cls(*out)

    return decode_namedtuple


def _enum_decoder(cls: type[Enum], coerce: bool) -> _Decoder:
    name = cls.__qualname__

    def decode_enum(value: Any) -> Any:
        try:
            member = cls(value)
        except (ValueError, TypeError):
            pass
        else:  # True == 1, but a bool is not the int value of a member
            if isinstance(value, bool) == isinstance(member.value, bool):
                return member
        if coerce and type(value) is str:  # "1" for IntEnum members on the wire
            for candidate in cls:
                decoder = _COERCING.get(type(candidate.value))
                if decoder is None:
                    continue
                try:
                    parsed = decoder(value)
                except _MismatchError:
                    continue
                if type(parsed) is type(candidate.value) and parsed == candidate.value:
                    return candidate
        raise _MismatchError(name, value)

    return decode_enum


# --------------------------------------------------------------------------- call plans


@dataclass(frozen=True, slots=True)
class ParamPlan:
    """One parameter that takes an argument, with its decoders prebuilt."""

    name: str
    kind: inspect._ParameterKind
    annotation: Any
    default: Any
    """``inspect.Parameter.empty`` when the parameter has no default."""
    required: bool
    index: int
    """Position among the parameters that take positional arguments, or -1."""
    label: str
    """How errors name it: ``add() argument 'b'``."""
    decode: _Decoder = field(repr=False, compare=False)
    coerce: _Decoder = field(repr=False, compare=False)


@dataclass(frozen=True, slots=True)
class CallPlan:
    """How to call one executor: which parameters take arguments, which one receives the Instance.

    Build it with :func:`plan_call`. The fields after ``params`` are precomputed tables for
    :func:`decode_call` and are not meant for other uses.
    """

    func: Callable[..., Any]
    is_async: bool
    instance_param: str | None
    """The parameter annotated with the injected type, filled at call time; None if none."""
    name: str
    """The executor's name, as error messages spell it."""
    params: tuple[ParamPlan, ...]
    """The parameters that take arguments, in signature order (the injected one excluded)."""
    positional: tuple[ParamPlan, ...] = field(repr=False)
    var_positional: ParamPlan | None = field(repr=False)
    keywords: Mapping[str, ParamPlan] = field(repr=False)
    var_keyword: ParamPlan | None = field(repr=False)
    min_args: int = field(repr=False)
    max_args: int = field(repr=False)
    needs_keywords: bool = field(repr=False)
    """A keyword-only parameter has no default: every call must be checked."""
    decoders: tuple[_Decoder, ...] = field(repr=False)
    instance_index: int = field(repr=False)
    """Position of the injected parameter among the positional ones; -1 if keyword-only."""
    instance_by_keyword: bool = field(repr=False)


_PLANS: dict[tuple[Any, Any], CallPlan] = {}
_MAX_PLANS = 4096  # a guard against callers that build a new partial for every call
_POSITIONAL_KINDS = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)


def plan_call(func: Callable[..., Any], *, inject: type | None = None) -> CallPlan:
    """The :class:`CallPlan` of ``func``, built once and cached per callable.

    A parameter annotated exactly ``inject`` (gojob passes its ``Instance`` class) takes no
    argument; :func:`decode_call` fills it. Raises :class:`ArgumentError` naming the function
    when its signature or type hints cannot be read, or a parameter's annotation is not one
    the codec can decode.
    """
    key = (func, inject)
    try:
        plan = _PLANS.get(key)
    except TypeError:  # an unhashable callable object
        return _make_plan(func, inject)
    if plan is None:
        plan = _make_plan(func, inject)
        if len(_PLANS) >= _MAX_PLANS:
            _PLANS.clear()
        _PLANS[key] = plan
    return plan


def _unwrap_partial(func: Any) -> Any:
    while isinstance(func, functools.partial):
        func = func.func
    return func


def _is_async(func: Any) -> bool:
    target = _unwrap_partial(func)
    if inspect.iscoroutinefunction(target):
        return True
    if isinstance(target, type) or inspect.isfunction(target) or inspect.ismethod(target):
        return False
    return inspect.iscoroutinefunction(type(target).__call__)


def _hints_target(func: Any) -> Any:
    target = _unwrap_partial(func)
    if isinstance(target, type):
        return target.__init__  # type: ignore[misc]
    if inspect.isroutine(target):
        return target
    return type(target).__call__


def _callable_name(func: Any) -> str:
    target = _unwrap_partial(func)
    name = getattr(target, "__name__", None)
    return name if isinstance(name, str) else type(target).__name__


def _make_plan(func: Callable[..., Any], inject: type | None) -> CallPlan:
    name = _callable_name(func)
    try:
        signature = inspect.signature(func)
    except (TypeError, ValueError) as exc:
        raise ArgumentError(f"cannot read the signature of {name}(): {exc}") from exc
    try:
        hints = typing.get_type_hints(_hints_target(func))
    except (NameError, TypeError, AttributeError, SyntaxError) as exc:
        raise ArgumentError(f"cannot resolve the type hints of {name}(): {exc}") from exc

    params: list[ParamPlan] = []
    positional: list[ParamPlan] = []
    instance_param: str | None = None
    instance_index = -1
    instance_by_keyword = False
    for p in signature.parameters.values():
        ann = hints.get(p.name, Any)
        variadic = p.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
        if inject is not None and ann is inject and not variadic:
            if instance_param is not None:
                raise ArgumentError(
                    f"{name}() has two parameters annotated {inject.__qualname__}: "
                    f"'{instance_param}' and '{p.name}'"
                )
            instance_param = p.name
            instance_index = len(positional) if p.kind in _POSITIONAL_KINDS else -1
            instance_by_keyword = p.kind is not inspect.Parameter.POSITIONAL_ONLY
            continue
        try:
            strict, coercing = _decoder(ann, False), _decoder(ann, True)
        except ArgumentError as exc:
            raise ArgumentError(f"{name}() parameter '{p.name}': {exc}") from exc
        plan = ParamPlan(
            name=p.name,
            kind=p.kind,
            annotation=ann,
            default=p.default,
            required=p.default is _EMPTY and not variadic,
            index=len(positional) if p.kind in _POSITIONAL_KINDS else -1,
            label=f"{name}() argument '{p.name}'",
            decode=strict,
            coerce=coercing,
        )
        params.append(plan)
        if p.kind in _POSITIONAL_KINDS:
            positional.append(plan)

    var_positional = next((p for p in params if p.kind is inspect.Parameter.VAR_POSITIONAL), None)
    var_keyword = next((p for p in params if p.kind is inspect.Parameter.VAR_KEYWORD), None)
    return CallPlan(
        func=func,
        is_async=_is_async(func),
        instance_param=instance_param,
        name=name,
        params=tuple(params),
        positional=tuple(positional),
        var_positional=var_positional,
        keywords={
            p.name: p
            for p in params
            if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        },
        var_keyword=var_keyword,
        min_args=sum(p.required for p in positional),
        max_args=sys.maxsize if var_positional is not None else len(positional),
        needs_keywords=any(p.required and p.kind is inspect.Parameter.KEYWORD_ONLY for p in params),
        decoders=tuple(p.decode for p in positional),
        instance_index=instance_index,
        instance_by_keyword=instance_by_keyword,
    )


def _check_arity(plan: CallPlan, nargs: int, names: Iterable[str]) -> None:
    """Raise ArgumentError, as Python would word it, if the call cannot bind."""
    fname = plan.name
    npos = len(plan.positional)
    if nargs > npos and plan.var_positional is None:
        plural = "" if npos == 1 else "s"
        verb = "was" if nargs == 1 else "were"
        raise ArgumentError(
            f"{fname}() takes {npos} positional argument{plural} but {nargs} {verb} given"
        )
    given = set()
    for key in names:
        if key == plan.instance_param:
            raise ArgumentError(f"{fname}() argument '{key}' receives the Instance; do not pass it")
        param = plan.keywords.get(key)
        if param is None:
            if plan.var_keyword is None:
                raise ArgumentError(f"{fname}() got an unexpected keyword argument '{key}'")
        elif 0 <= param.index < nargs:
            raise ArgumentError(f"{fname}() got multiple values for argument '{key}'")
        given.add(key)
    missing = [
        p.name
        for p in plan.params
        if p.required and p.name not in given and not (0 <= p.index < nargs)
    ]
    if missing:
        plural = "" if len(missing) == 1 else "s"
        raise ArgumentError(
            f"{fname}() missing required argument{plural}: {', '.join(map(repr, missing))}"
        )


def _param_at(plan: CallPlan, index: int) -> tuple[ParamPlan, str]:
    if index < len(plan.positional):
        param = plan.positional[index]
        return param, param.label
    assert plan.var_positional is not None  # _check_arity ran
    param = plan.var_positional
    return param, f"{param.label}[{index - len(plan.positional)}]"


def _keyword_at(plan: CallPlan, key: str) -> tuple[ParamPlan, str]:
    param = plan.keywords.get(key)
    if param is not None:
        return param, param.label
    assert plan.var_keyword is not None  # _check_arity ran
    return plan.var_keyword, f"{plan.name}() argument '{key}'"


def _encode_checked(value: Any, param: ParamPlan, label: str) -> JSON:
    encoded = encode(value, path=label)
    try:
        param.decode(encoded)
    except _MismatchError as exc:
        raise exc.error(label) from exc.__cause__
    return encoded


def encode_call(
    plan: CallPlan, args: Sequence[Any], kwargs: Mapping[str, Any]
) -> tuple[list[JSON], dict[str, JSON]]:
    """Validate and encode a call's arguments at schedule time.

    Binds them against the signature without the injected parameter (wrong arity, an unknown
    or duplicate keyword, a missing argument: :class:`ArgumentError` naming the function),
    encodes each value (:class:`EncodeError`) and checks that it decodes back under its
    parameter's annotation (:class:`DecodeError`, e.g. ``add() argument 'b': expected int``).
    Positional arguments stay positional and keywords stay keywords.
    """
    nargs = len(args)
    if kwargs or plan.needs_keywords or not plan.min_args <= nargs <= plan.max_args:
        _check_arity(plan, nargs, kwargs)
    elif nargs == 0:
        return [], {}
    out_args = [_encode_checked(v, *_param_at(plan, i)) for i, v in enumerate(args)]
    out_kwargs = {k: _encode_checked(v, *_keyword_at(plan, k)) for k, v in kwargs.items()}
    return out_args, out_kwargs


def coerce_call(plan: CallPlan, args: Sequence[str]) -> tuple[list[JSON], dict[str, JSON]]:
    """go-job's wire path: decode positional string arguments by annotation, then encode them.

    ``"1"`` becomes ``1`` for an ``int`` parameter, ``"true"`` becomes ``True`` for a
    ``bool``, a JSON text becomes a list, dict or dataclass. Too many or too few arguments
    raise :class:`ArgumentError`; a string that does not coerce raises :class:`DecodeError`.
    """
    _check_arity(plan, len(args), ())
    out: list[JSON] = []
    for index, text in enumerate(args):
        param, label = _param_at(plan, index)
        try:
            value = param.coerce(text)
        except _MismatchError as exc:
            raise exc.error(label) from exc.__cause__
        out.append(encode(value, path=label))
    return out, {}


def decode_call(
    plan: CallPlan, args: Sequence[JSON], kwargs: Mapping[str, JSON], instance: Any
) -> tuple[list[Any], dict[str, Any]]:
    """Decode stored arguments for the call, at worker time, and place ``instance``.

    Each value is decoded strictly by its parameter's annotation; JSON-native values of
    JSON-native annotations are returned as the very same objects. The instance goes in
    positionally when positional arguments reach or pass its parameter, else by keyword.
    """
    nargs = len(args)
    if kwargs or plan.needs_keywords or not plan.min_args <= nargs <= plan.max_args:
        _check_arity(plan, nargs, kwargs)
    elif nargs == 0 and plan.instance_index <= 0:  # the no-argument fast path
        if plan.instance_param is None:
            return [], {}
        if plan.instance_index == 0:
            return [instance], {}
        return [], {plan.instance_param: instance}

    decoders = plan.decoders
    try:
        out = [decoder(v) for decoder, v in zip(decoders, args, strict=False)]
        if nargs > len(decoders):
            assert plan.var_positional is not None
            extra = plan.var_positional.decode
            out.extend([extra(v) for v in args[len(decoders) :]])
    except _MismatchError:
        for index, value in enumerate(args):  # error path: find which argument failed
            param, label = _param_at(plan, index)
            try:
                param.decode(value)
            except _MismatchError as exc:
                raise exc.error(label) from exc.__cause__
        raise

    out_kwargs: dict[str, Any] = {}
    for key, value in kwargs.items():
        param, label = _keyword_at(plan, key)
        try:
            out_kwargs[key] = param.decode(value)
        except _MismatchError as exc:
            raise exc.error(label) from exc.__cause__

    if plan.instance_param is not None:
        at = plan.instance_index
        if at < 0 or (nargs < at and plan.instance_by_keyword):
            out_kwargs[plan.instance_param] = instance
        else:
            # Positional-only and not reached: the parameters before it all have defaults
            # (_check_arity saw to that), so pass those to reach its position.
            out.extend(p.default for p in plan.positional[nargs:at])
            out.insert(at, instance)
    return out, out_kwargs


# --------------------------------------------------------------------------- text and size


@dataclass(frozen=True, slots=True)
class Limits:
    """Size caps, in bytes of compact UTF-8 JSON."""

    max_args_bytes: int = 1_048_576
    max_result_bytes: int = 1_048_576
    max_log_bytes: int = 65_536

    def __post_init__(self) -> None:
        for name in ("max_args_bytes", "max_result_bytes", "max_log_bytes"):
            if getattr(self, name) < 1:
                raise ValueError(f"Limits.{name} must be positive")


_JSON_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def dumps(value: JSON) -> str:
    """Compact JSON text (no spaces, UTF-8 characters kept, NaN refused)."""
    try:
        return _JSON_ENCODER.encode(value)
    except (TypeError, ValueError) as exc:
        raise EncodeError(f"not plain JSON: {exc}") from exc


def loads(text: str | bytes) -> JSON:
    """Parse JSON text (the inverse of :func:`dumps`); NaN and Infinity are refused."""
    try:
        return json.loads(text, parse_constant=_refuse_constant)  # type: ignore[no-any-return]
    except ValueError as exc:
        raise DecodeError(f"not valid JSON: {exc}") from exc


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def check_size(value: JSON, limit: int, what: str) -> str:
    """Return ``dumps(value)``; raise :class:`PayloadTooLarge` if it is over ``limit`` bytes."""
    text = dumps(value)
    if len(text) * 4 <= limit:  # no UTF-8 text is longer than 4 bytes per character
        return text
    try:
        size = len(text) if text.isascii() else len(text.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise EncodeError(f"{what} contains a lone surrogate and is not valid UTF-8") from exc
    if size > limit:
        raise PayloadTooLarge(f"{what} is {size} bytes, over the cap of {limit} bytes")
    return text
