"""Tests for gojob.codec: plain JSON encoding, annotation-guided decoding, call plans."""

from __future__ import annotations

import dataclasses
import enum
import functools
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Any, Literal, NamedTuple, NewType, TypedDict
from uuid import UUID

import pytest

from gojob.codec import (
    JSON,
    CallPlan,
    Limits,
    check_size,
    coerce_call,
    decode,
    decode_call,
    dumps,
    encode,
    encode_call,
    encode_result,
    loads,
    plan_call,
)
from gojob.errors import ArgumentError, DecodeError, EncodeError, PayloadTooLarge

# --------------------------------------------------------------------------- fixtures


class Color(enum.Enum):
    RED = "red"
    GREEN = "green"


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


class Mode(enum.StrEnum):
    FAST = "fast"
    SAFE = "safe"


@dataclass(frozen=True)
class Item:
    sku: str
    qty: int
    price: Decimal


@dataclass
class Order:
    id: UUID
    items: list[Item]
    placed: datetime
    note: str | None = None
    tags: set[str] = field(default_factory=set)


@dataclass
class Tree:
    value: int
    children: list[Tree] = field(default_factory=list)


@dataclass
class Box:
    items: list[Any]


@dataclass
class Derived:
    base: int
    doubled: int = field(init=False)

    def __post_init__(self) -> None:
        self.doubled = self.base * 2


@dataclass
class Positive:
    n: int

    def __post_init__(self) -> None:
        if self.n <= 0:
            raise ValueError("n must be positive")


class Movie(TypedDict, total=False):
    title: str
    year: int


class Point(NamedTuple):
    x: int
    y: int = 0


UserId = NewType("UserId", str)


class Instance:
    """Stands in for gojob's Instance: the type plan_call is told to inject."""


INSTANCE = Instance()
NOW = datetime(2024, 3, 1, 12, 30, 15, 123456, tzinfo=timezone(timedelta(hours=5, minutes=30)))


def roundtrip(value: Any, annotation: Any) -> Any:
    return decode(loads(dumps(encode(value))), annotation)


# --------------------------------------------------------------------------- encode


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        (True, True),
        (7, 7),
        (2.5, 2.5),
        ("héllo", "héllo"),
        ((1, "a"), [1, "a"]),
        ({3, 1, 2}, [1, 2, 3]),
        (frozenset({"b", "a"}), ["a", "b"]),
        ({"k": [1, {"n": None}]}, {"k": [1, {"n": None}]}),
        (NOW, "2024-03-01T12:30:15.123456+05:30"),
        (date(2024, 3, 1), "2024-03-01"),
        (time(8, 15), "08:15:00"),
        (timedelta(minutes=1, milliseconds=500), 60.5),
        (UUID(int=1), "00000000-0000-0000-0000-000000000001"),
        (Decimal("1.10"), "1.10"),
        (b"\x00\xffhi", "AP9oaQ=="),
        (bytearray(b"hi"), "aGk="),
        (Color.RED, "red"),
        (Level.HIGH, 2),
        (Mode.FAST, "fast"),
        ({Mode.FAST: 1}, {"fast": 1}),
        (Item("a", 2, Decimal("9.99")), {"sku": "a", "qty": 2, "price": "9.99"}),
        (Derived(3), {"base": 3}),
        (Point(1, 2), [1, 2]),
    ],
)
def test_encode(value: Any, expected: JSON) -> None:
    encoded = encode(value)
    assert encoded == expected
    assert type(encoded) is type(expected)


def test_encode_unsortable_set_keeps_iteration_order() -> None:
    assert sorted(map(str, encode({1, "a"}))) == ["1", "a"]  # type: ignore[arg-type]


def test_encode_naive_datetime_is_refused() -> None:
    with pytest.raises(EncodeError, match=r"^value: datetime 2024-01-01T00:00:00 is naive"):
        encode(datetime(2024, 1, 1))


@pytest.mark.parametrize("number", [math.nan, math.inf, -math.inf])
def test_encode_non_finite_float_is_refused(number: float) -> None:
    with pytest.raises(EncodeError, match=r"^value\[0\]: float .* is not finite"):
        encode([number])


def test_encode_non_str_dict_key_is_refused() -> None:
    with pytest.raises(
        EncodeError, match=r"^value\['a'\]: dict key 1 is of type int; JSON object keys must be str"
    ):
        encode({"a": {1: "x"}})


def test_encode_unsupported_type_names_type_and_path() -> None:
    value = [None, Box([1, 2, 3, object()])]
    with pytest.raises(EncodeError) as info:
        encode(value, path="args")
    assert str(info.value).startswith(
        "args[1].items[3]: cannot encode a value of type object as JSON: <object object at"
    )


def test_encode_unsupported_type_from_a_module_is_qualified() -> None:
    with pytest.raises(EncodeError, match=r"value: cannot encode a value of type re\.Pattern"):
        encode(re.compile("x"))


def test_encode_reference_cycle() -> None:
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(EncodeError, match="reference cycle"):
        encode(loop)


def test_encode_result() -> None:
    assert encode_result((1, "a", Color.GREEN)) == [1, "a", "green"]
    assert encode_result(Item("a", 1, Decimal(2))) == {"sku": "a", "qty": 1, "price": "2"}
    assert encode_result(None) is None
    with pytest.raises(EncodeError, match=r"^result\[1\]: cannot encode a value of type object"):
        encode_result((1, object()))


# --------------------------------------------------------------------------- decode


ORDER = Order(
    id=UUID(int=7),
    items=[Item("a", 2, Decimal("9.99")), Item("b", 1, Decimal("0.5"))],
    placed=NOW,
    tags={"x", "y"},
)


@pytest.mark.parametrize(
    ("value", "annotation"),
    [
        (1, int),
        (2.5, float),
        ("s", str),
        (False, bool),
        (None, None),
        (None, type(None)),
        (NOW, datetime),
        (datetime(2024, 1, 1, tzinfo=UTC), datetime),
        (date(2024, 2, 29), date),
        (time(23, 59, 59, 1), time),
        (time(1, 2, tzinfo=UTC), time),
        (timedelta(days=2, microseconds=1), timedelta),
        (UUID("12345678-1234-5678-1234-567812345678"), UUID),
        (Decimal("3.14159"), Decimal),
        (b"\x00\x01\xfe", bytes),
        (bytearray(b"ab"), bytearray),
        (Color.GREEN, Color),
        (Level.LOW, Level),
        (Mode.SAFE, Mode),
        ("b", Literal["a", "b"]),
        (2, Literal[1, 2]),
        (Color.RED, Literal[Color.RED]),
        (None, int | None),
        (3, int | None),
        ("x", int | str),
        (Item("a", 1, Decimal(1)), Item | None),
        ([1, 2, 3], list[int]),
        ([[1], []], list[list[int]]),
        ((1, 2, 3), tuple[int, ...]),
        ((1, "a", NOW), tuple[int, str, datetime]),
        ((), tuple[()]),
        ({1, 2}, set[int]),
        (frozenset({"a"}), frozenset[str]),
        ({"a": 1.5, "b": 2.0}, dict[str, float]),
        ({"a": [UUID(int=1)]}, dict[str, list[UUID]]),
        ([1, 2], Sequence[int]),
        ({"a": 1}, Mapping[str, int]),
        ({"k": Color.RED}, dict[str, Color]),
        ([1, "x", None], list[Any]),
        ({"anything": [1, {"x": None}]}, Any),
        ([1, 2], list),
        ({"a": 1}, dict),
        (ORDER, Order),
        (Tree(1, [Tree(2), Tree(3, [Tree(4)])]), Tree),
        ({"title": "Heat"}, Movie),
        (Point(1, 2), Point),
        (UserId("u1"), UserId),
    ],
)
def test_roundtrip(value: Any, annotation: Any) -> None:
    decoded = roundtrip(value, annotation)
    assert decoded == value
    assert type(decoded) is type(value)


def test_roundtrip_keeps_utc_offset() -> None:
    decoded = roundtrip(NOW, datetime)
    assert decoded.utcoffset() == timedelta(hours=5, minutes=30)


def test_decode_accepts_z_suffix_and_int_for_float() -> None:
    assert decode("2024-01-01T00:00:00Z", datetime) == datetime(2024, 1, 1, tzinfo=UTC)
    result = decode(3, float)
    assert result == 3.0
    assert type(result) is float
    assert decode(2.5, Decimal) == Decimal("2.5")
    assert decode(0.1, Decimal) == Decimal("0.1")
    assert decode(5, Decimal) == Decimal(5)


def test_decode_namedtuple_default() -> None:
    assert decode([1], Point) == Point(1, 0)


def test_decode_union_first_success_wins() -> None:
    assert type(decode(1, float | int)) is float
    assert type(decode(1, int | float)) is int
    assert decode("1", int | str) == "1"
    # unions compare equal whatever their order: the decoder cache must still tell them apart
    assert type(decode([1], list[float | int])[0]) is float
    assert type(decode([1], list[int | float])[0]) is int


@pytest.mark.parametrize(
    ("data", "annotation", "message"),
    [
        ("x", int, "value: expected int, got 'x'"),
        (True, int, "value: expected int, got True"),
        (1.0, int, "value: expected int, got 1.0"),
        (False, float, "value: expected float, got False"),
        (1, str, "value: expected str, got 1"),
        (1, bool, "value: expected bool, got 1"),
        (0, None, "value: expected None, got 0"),
        ("a", int | None, "value: expected int | None, got 'a'"),
        (1.5, int | str, "value: expected int | str, got 1.5"),
        ("c", Literal["a", "b"], "value: expected Literal['a', 'b'], got 'c'"),
        (True, Literal[1], "value: expected Literal[1], got True"),
        ("blue", Color, "value: expected Color, got 'blue'"),
        (True, Level, "value: expected Level, got True"),
        ("2024-01-01T00:00:00", datetime, "value: expected datetime, got '2024-01-01T00:00:00' "),
        ("yesterday", date, "value: expected date, got 'yesterday' (not ISO 8601)"),
        (12, time, "value: expected time, got 12 (an ISO 8601 string)"),
        ("1", timedelta, "value: expected timedelta, got '1' (a number of seconds)"),
        ("nope", UUID, "value: expected UUID, got 'nope'"),
        ("x1", Decimal, "value: expected Decimal, got 'x1'"),
        ("!!", bytes, "value: expected bytes, got '!!' (base64 text)"),
        ([1, "2"], list[int], r"value[1]: expected int, got '2'"),
        ({"a": [1, None]}, dict[str, list[int]], "value['a'][1]: expected int, got None"),
        ([1], tuple[int, int], "value: expected tuple[int, int], got [1] (2 items, not 1)"),
        ([1, "a"], tuple[int, int], "value[1]: expected int, got 'a'"),
        ({"a": 1}, list[int], "value: expected list[int], got {'a': 1}"),
        ([[1]], set[list[int]], "value: expected set[list[int]], got [[1]] (unhashable type"),
        ({"x": 1}, Point, "value: expected Point, got {'x': 1}"),
        (["a"], Point, "value.x: expected int, got 'a'"),
        ({"title": 1}, Movie, "value.title: expected str, got 1"),
        ({"rating": 1}, Movie, "value: expected Movie, got {'rating': 1} (unknown field 'rating')"),
        ({"n": -1}, Positive, "value: expected Positive, got {'n': -1} (ValueError: n must be"),
    ],
)
def test_decode_errors(data: Any, annotation: Any, message: str) -> None:
    with pytest.raises(DecodeError) as info:
        decode(data, annotation)
    assert str(info.value).startswith(message)


def test_decode_naive_datetime_is_refused() -> None:
    with pytest.raises(DecodeError, match=r"no UTC offset; naive datetimes are refused"):
        decode("2024-01-01T00:00:00", datetime)


def test_decode_dataclass_missing_and_unknown_fields() -> None:
    with pytest.raises(DecodeError) as missing:
        decode({"sku": "a", "qty": 1}, Item)
    assert str(missing.value) == (
        "value: expected Item, got {'sku': 'a', 'qty': 1} (missing required field 'price')"
    )
    with pytest.raises(DecodeError) as unknown:
        decode({"sku": "a", "qty": 1, "price": "1", "colour": "red"}, Item, path="item")
    assert str(unknown.value).startswith("item: expected Item, got {")
    assert str(unknown.value).endswith("(unknown field 'colour')")


def test_decode_dataclass_init_false_field_is_not_accepted() -> None:
    assert decode({"base": 2}, Derived).doubled == 4
    with pytest.raises(DecodeError, match="unknown field 'doubled'"):
        decode({"base": 2, "doubled": 4}, Derived)


def test_decode_nested_path() -> None:
    data = encode(ORDER)
    assert isinstance(data, dict)
    items = data["items"]
    assert isinstance(items, list)
    assert isinstance(items[1], dict)
    items[1]["qty"] = "2"
    with pytest.raises(DecodeError) as info:
        decode(data, Order, path="order")
    assert str(info.value) == "order.items[1].qty: expected int, got '2'"


def test_decode_optional_dataclass_keeps_inner_path() -> None:
    with pytest.raises(DecodeError, match=r"^value\.qty: expected int, got 'x'"):
        decode({"sku": "a", "qty": "x", "price": "1"}, Item | None)


def test_decode_truncates_long_values() -> None:
    with pytest.raises(DecodeError) as info:
        decode("x" * 500, int)
    text = str(info.value)
    shown = text.removeprefix("value: expected int, got ")
    assert len(shown) <= 80
    assert "..." in shown


def test_decode_unsupported_annotation() -> None:
    with pytest.raises(ArgumentError, match="cannot decode into Instance: unsupported annotation"):
        decode({}, Instance)
    with pytest.raises(ArgumentError, match="unresolved forward reference"):
        decode(1, "int")


def test_decode_returns_fresh_containers() -> None:
    data: list[JSON] = [1, 2]
    result = decode(data, list[int])
    assert result == data
    assert result is not data


# --------------------------------------------------------------------------- coerce_strings


@pytest.mark.parametrize(
    ("text", "annotation", "expected"),
    [
        ("1", int, 1),
        ("-42", int, -42),
        ("2.5", float, 2.5),
        ("3", float, 3.0),
        ("1e3", float, 1000.0),
        ("true", bool, True),
        ("TRUE", bool, True),
        ("t", bool, True),
        ("1", bool, True),
        ("false", bool, False),
        ("0", bool, False),
        ("1.50", Decimal, Decimal("1.50")),
        ("00000000-0000-0000-0000-000000000002", UUID, UUID(int=2)),
        ("2024-01-01T00:00:00+00:00", datetime, datetime(2024, 1, 1, tzinfo=UTC)),
        ("2024-01-01", date, date(2024, 1, 1)),
        ("90", timedelta, timedelta(seconds=90)),
        ("text", str, "text"),
        ("7", int | None, 7),
        ("2", Level, Level.HIGH),
        ("red", Color, Color.RED),
        ("2", Literal[1, 2], 2),
        ("[1, 2]", list[int], [1, 2]),
        ('{"a": 1}', dict[str, int], {"a": 1}),
        ('{"sku": "a", "qty": 3, "price": "1.5"}', Item, Item("a", 3, Decimal("1.5"))),
        ("[4, 5]", Point, Point(4, 5)),
        ("anything", Any, "anything"),
    ],
)
def test_coerce_strings(text: str, annotation: Any, expected: Any) -> None:
    result = decode(text, annotation, coerce_strings=True)
    assert result == expected
    assert type(result) is type(expected)


@pytest.mark.parametrize(
    ("text", "annotation"),
    [
        ("1.5", int),
        ("1_000", int),
        (" 1", int),
        ("nan", float),
        ("inf", float),
        ("yes", bool),
        ("[1,", list[int]),
        ('{"sku": "a"}', Item),
        ('["1"]', list[int]),  # the JSON text is decoded strictly
    ],
)
def test_coerce_strings_refuses(text: str, annotation: Any) -> None:
    with pytest.raises(DecodeError):
        decode(text, annotation, coerce_strings=True)


def test_strings_are_not_coerced_by_default() -> None:
    with pytest.raises(DecodeError, match="expected int, got '1'"):
        decode("1", int)
    with pytest.raises(DecodeError, match="not valid JSON text"):
        decode("[1,", list[int], coerce_strings=True)


# --------------------------------------------------------------------------- call plans


def add(a: int, b: int) -> int:
    return a + b


async def add_async(a: int, b: int) -> int:
    return a + b


def nothing() -> None:
    return None


def with_first(inst: Instance, a: int, b: str = "b") -> tuple[Any, ...]:
    return (inst, a, b)


def with_middle(a: int, inst: Instance, b: str) -> tuple[Any, ...]:
    return (a, inst, b)


def with_last(a: int, b: str = "b", *, inst: Instance) -> tuple[Any, ...]:
    return (a, b, inst)


def only_instance(inst: Instance) -> Instance:
    return inst


def positional_only(a: int = 1, inst: Instance = INSTANCE, /) -> tuple[Any, ...]:
    return (a, inst)


def variadic(first: int, *rest: float, **options: bool) -> tuple[Any, ...]:
    return (first, rest, options)


def keyword_only(a: int, *, flag: bool) -> tuple[Any, ...]:
    return (a, flag)


def ship(order: Order, when: datetime | None = None) -> None:
    return None


def untyped(a, b=2):  # type: ignore[no-untyped-def]
    return (a, b)


def unresolvable(x: NotDefined) -> None:  # type: ignore[name-defined]  # noqa: F821
    return None


def unsupported(x: Instance) -> None:
    return None


class AsyncCallable:
    async def __call__(self, a: int) -> int:
        return a


class SyncCallable:
    def __call__(self, a: int) -> int:
        return a

    async def method(self, a: int) -> int:
        return a


def call(plan: CallPlan, args: list[Any], kwargs: dict[str, Any]) -> Any:
    return plan.func(*args, **kwargs)


def test_plan_call_resolves_string_annotations() -> None:
    plan = plan_call(ship)
    assert plan.name == "ship"
    assert [p.name for p in plan.params] == ["order", "when"]
    assert plan.params[0].annotation is Order
    assert plan.params[1].annotation == datetime | None
    assert plan.params[0].required
    assert not plan.params[1].required
    assert plan.instance_param is None
    assert not plan.is_async


def test_plan_call_is_cached_per_callable_and_inject() -> None:
    assert plan_call(add) is plan_call(add)
    assert plan_call(add, inject=Instance) is not plan_call(add)


def test_plan_call_unresolvable_hints_name_the_function() -> None:
    with pytest.raises(ArgumentError, match=r"cannot resolve the type hints of unresolvable\(\)"):
        plan_call(unresolvable)


def test_plan_call_unsupported_annotation_names_the_parameter() -> None:
    with pytest.raises(ArgumentError, match=r"^unsupported\(\) parameter 'x': cannot decode into"):
        plan_call(unsupported)
    assert plan_call(unsupported, inject=Instance).params == ()


def test_plan_call_unannotated_parameters_take_anything() -> None:
    plan = plan_call(untyped)
    args, kwargs = encode_call(plan, [{"x": [1]}], {})
    assert args == [{"x": [1]}]
    assert call(plan, *decode_call(plan, args, kwargs, None)) == ({"x": [1]}, 2)


@pytest.mark.parametrize(
    ("func", "is_async"),
    [
        (add, False),
        (add_async, True),
        (functools.partial(add_async, 1), True),
        (functools.partial(functools.partial(add_async, 1), 2), True),
        (functools.partial(add, 1), False),
        (AsyncCallable(), True),
        (SyncCallable(), False),
        (SyncCallable().method, True),
        (lambda: None, False),
        (Item, False),
    ],
)
def test_plan_call_detects_async(func: Any, is_async: bool) -> None:
    assert plan_call(func).is_async is is_async


def test_plan_call_partial_takes_the_remaining_parameters() -> None:
    plan = plan_call(functools.partial(add_async, 1))
    assert [p.name for p in plan.params] == ["b"]
    assert plan.name == "add_async"
    assert encode_call(plan, [2], {}) == ([2], {})


def test_plan_call_callable_object() -> None:
    plan = plan_call(AsyncCallable())
    assert [p.name for p in plan.params] == ["a"]
    with pytest.raises(DecodeError, match=r"AsyncCallable\(\) argument 'a': expected int"):
        encode_call(plan, ["x"], {})


@pytest.mark.parametrize(
    ("func", "args", "kwargs", "expected"),
    [
        (with_first, [1], {}, (INSTANCE, 1, "b")),
        (with_first, [1, "x"], {}, (INSTANCE, 1, "x")),
        (with_first, [], {"a": 1}, (INSTANCE, 1, "b")),
        (with_middle, [1, "x"], {}, (1, INSTANCE, "x")),
        (with_middle, [1], {"b": "x"}, (1, INSTANCE, "x")),
        (with_middle, [], {"a": 1, "b": "x"}, (1, INSTANCE, "x")),
        (with_last, [1], {}, (1, "b", INSTANCE)),
        (with_last, [1, "x"], {}, (1, "x", INSTANCE)),
        (only_instance, [], {}, INSTANCE),
        (positional_only, [], {}, (1, INSTANCE)),
        (positional_only, [5], {}, (5, INSTANCE)),
    ],
)
def test_instance_injection(
    func: Any, args: list[Any], kwargs: dict[str, Any], expected: Any
) -> None:
    plan = plan_call(func, inject=Instance)
    assert plan.instance_param is not None
    assert plan.instance_param not in [p.name for p in plan.params]
    enc_args, enc_kwargs = encode_call(plan, args, kwargs)
    dec_args, dec_kwargs = decode_call(plan, enc_args, enc_kwargs, INSTANCE)
    assert call(plan, dec_args, dec_kwargs) == expected


def test_instance_parameter_cannot_be_passed() -> None:
    plan = plan_call(with_middle, inject=Instance)
    with pytest.raises(
        ArgumentError, match=r"with_middle\(\) argument 'inst' receives the Instance"
    ):
        encode_call(plan, [1], {"inst": 2, "b": "x"})


def test_two_instance_parameters_are_refused() -> None:
    def twice(a: Instance, b: Instance) -> None:
        return None

    with pytest.raises(ArgumentError, match="two parameters annotated Instance"):
        plan_call(twice, inject=Instance)


# --------------------------------------------------------------------------- encode_call


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        ([1, 2, 3], {}, "add() takes 2 positional arguments but 3 were given"),
        ([1], {}, "add() missing required argument: 'b'"),
        ([], {}, "add() missing required arguments: 'a', 'b'"),
        ([1, 2], {"c": 3}, "add() got an unexpected keyword argument 'c'"),
        ([1, 2], {"a": 3}, "add() got multiple values for argument 'a'"),
    ],
)
def test_encode_call_arity_errors(args: list[Any], kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ArgumentError) as info:
        encode_call(plan_call(add), args, kwargs)
    assert str(info.value) == message
    assert not isinstance(info.value, DecodeError)


def test_encode_call_validates_types_at_schedule_time() -> None:
    plan = plan_call(add)
    with pytest.raises(DecodeError) as info:
        encode_call(plan, [1, True], {})
    assert str(info.value) == "add() argument 'b': expected int, got True"
    with pytest.raises(DecodeError, match=r"^add\(\) argument 'a': expected int, got 1\.5$"):
        encode_call(plan, [], {"a": 1.5, "b": 2})
    with pytest.raises(EncodeError, match=r"^add\(\) argument 'b': cannot encode a value of type"):
        encode_call(plan, [1, object()], {})


def test_encode_call_nested_error_path() -> None:
    order = dataclasses.replace(ORDER, placed=datetime(2024, 1, 1))
    with pytest.raises(EncodeError, match=r"^ship\(\) argument 'order'\.placed: datetime .* naive"):
        encode_call(plan_call(ship), [order], {})


def test_encode_call_keeps_positional_and_keyword_split() -> None:
    plan = plan_call(ship)
    args, kwargs = encode_call(plan, [ORDER], {"when": NOW})
    assert args == [encode(ORDER)]
    assert kwargs == {"when": "2024-03-01T12:30:15.123456+05:30"}
    dec_args, dec_kwargs = decode_call(plan, loads(dumps(args)), kwargs, None)  # type: ignore[arg-type]
    assert dec_args == [ORDER]
    assert dec_kwargs == {"when": NOW}


def test_encode_call_variadic() -> None:
    plan = plan_call(variadic)
    args, kwargs = encode_call(plan, [1, 2.5, 3], {"dry": True})
    assert (args, kwargs) == ([1, 2.5, 3], {"dry": True})
    assert call(plan, *decode_call(plan, args, kwargs, None)) == (1, (2.5, 3.0), {"dry": True})
    with pytest.raises(DecodeError, match=r"^variadic\(\) argument 'rest'\[1\]: expected float"):
        encode_call(plan, [1, 2.5, "x"], {})
    with pytest.raises(DecodeError, match=r"^variadic\(\) argument 'dry': expected bool, got 1"):
        encode_call(plan, [1], {"dry": 1})


def test_encode_call_keyword_only_required() -> None:
    plan = plan_call(keyword_only)
    with pytest.raises(ArgumentError, match=r"keyword_only\(\) missing required argument: 'flag'"):
        encode_call(plan, [1], {})
    assert call(plan, *decode_call(plan, [1], {"flag": True}, None)) == (1, True)


# --------------------------------------------------------------------------- coerce_call


def test_coerce_call_go_job_strings() -> None:
    assert coerce_call(plan_call(add), ["1", "2"]) == ([1, 2], {})
    args, _ = coerce_call(plan_call(ship), [dumps(encode(ORDER)), "2024-03-01T12:30:15+05:30"])
    assert args == [encode(ORDER), "2024-03-01T12:30:15+05:30"]


def test_coerce_call_errors() -> None:
    plan = plan_call(add)
    with pytest.raises(ArgumentError, match=r"add\(\) takes 2 positional arguments but 3 were"):
        coerce_call(plan, ["1", "2", "3"])
    with pytest.raises(ArgumentError, match=r"add\(\) missing required argument: 'b'"):
        coerce_call(plan, ["1"])
    with pytest.raises(DecodeError, match=r"^add\(\) argument 'b': expected int, got 'two'$"):
        coerce_call(plan, ["1", "two"])


def test_coerce_call_skips_the_instance() -> None:
    plan = plan_call(with_middle, inject=Instance)
    args, kwargs = coerce_call(plan, ["1", "x"])
    assert call(plan, *decode_call(plan, args, kwargs, INSTANCE)) == (1, INSTANCE, "x")


# --------------------------------------------------------------------------- decode_call


def test_decode_call_returns_the_same_primitive_objects() -> None:
    def typed(a: int, b: str, c: float, d: bool, e: Any, f: object) -> None:
        return None

    values: list[JSON] = [10**30, "text" * 10, 1.25, True, [1], {"x": 1}]
    args, kwargs = decode_call(plan_call(typed), values, {}, None)
    assert kwargs == {}
    assert all(a is v for a, v in zip(args, values, strict=True))


def test_decode_call_no_arguments() -> None:
    assert decode_call(plan_call(nothing), [], {}, INSTANCE) == ([], {})
    assert decode_call(plan_call(only_instance, inject=Instance), [], {}, INSTANCE) == (
        [INSTANCE],
        {},
    )
    assert decode_call(plan_call(with_last, inject=Instance), [1], {}, INSTANCE) == (
        [1],
        {"inst": INSTANCE},
    )


def test_decode_call_type_errors_name_the_argument() -> None:
    plan = plan_call(add)
    with pytest.raises(DecodeError, match=r"^add\(\) argument 'b': expected int, got '2'$"):
        decode_call(plan, [1, "2"], {}, None)
    with pytest.raises(DecodeError, match=r"^ship\(\) argument 'when': expected datetime"):
        decode_call(plan_call(ship), [encode(ORDER)], {"when": "soon"}, None)


def test_decode_call_checks_arity() -> None:
    with pytest.raises(ArgumentError, match=r"nothing\(\) takes 0 positional arguments but 1 was"):
        decode_call(plan_call(nothing), [1], {}, None)
    with pytest.raises(ArgumentError, match=r"add\(\) missing required argument: 'b'"):
        decode_call(plan_call(add), [1], {}, None)


# --------------------------------------------------------------------------- text and size


def test_dumps_is_compact_and_keeps_unicode() -> None:
    assert dumps({"a": [1, 2.5, None, True], "é": "ü"}) == '{"a":[1,2.5,null,true],"é":"ü"}'
    with pytest.raises(EncodeError, match="not plain JSON"):
        dumps([math.nan])


def test_loads() -> None:
    assert loads('{"a":[1,null]}') == {"a": [1, None]}
    with pytest.raises(DecodeError, match="not valid JSON"):
        loads("{")
    with pytest.raises(DecodeError, match="NaN is not JSON"):
        loads("[NaN]")


def test_limits() -> None:
    limits = Limits()
    assert (limits.max_args_bytes, limits.max_result_bytes, limits.max_log_bytes) == (
        1_048_576,
        1_048_576,
        65_536,
    )
    assert Limits(max_log_bytes=10).max_log_bytes == 10
    with pytest.raises(ValueError, match="max_args_bytes must be positive"):
        Limits(max_args_bytes=0)


def test_check_size() -> None:
    assert check_size([1, 2], 5, "arguments") == "[1,2]"
    with pytest.raises(PayloadTooLarge) as info:
        check_size([1, 2], 4, "arguments")
    assert str(info.value) == "arguments is 5 bytes, over the cap of 4 bytes"


def test_check_size_counts_utf8_bytes() -> None:
    text = "é" * 10  # 10 characters, 20 bytes, plus two quotes
    assert check_size(text, 22, "result") == f'"{text}"'
    with pytest.raises(PayloadTooLarge, match=r"^result is 22 bytes, over the cap of 21 bytes$"):
        check_size(text, 21, "result")
    big = "x" * 100
    with pytest.raises(PayloadTooLarge, match=r"^log is 102 bytes, over the cap of 101 bytes$"):
        check_size(big, 101, "log")
