"""JSON at process boundaries: `check_json` says where a bad value is; `loads` is strict."""

from __future__ import annotations

import pytest

from orchestrator.jsonutil import MAX_DEPTH, JSONValueError, check_json, dumps, loads


def nested_lists(depth: int) -> object:
    value: object = 1
    for _ in range(depth):
        value = [value]
    return value


def test_plain_json_values_pass() -> None:
    check_json({"s": "x", "i": -3, "f": 1.5, "b": True, "n": None, "l": [1, "two", {"three": 3}]})


def test_tuples_count_as_arrays() -> None:
    check_json({"pair": (1, "a")})


def test_the_message_gives_the_path_to_a_bad_value() -> None:
    with pytest.raises(JSONValueError) as caught:
        check_json({"order": {"lines": [{"qty": 1}, {"qty": float("nan")}]}})

    assert caught.value.path == "order.lines[1].qty"
    assert str(caught.value) == "order.lines[1].qty: nan is not valid JSON (only finite numbers are)"


def test_a_path_prefix_is_kept_in_front() -> None:
    with pytest.raises(JSONValueError, match=r"^data\[0\]: inf is not valid JSON"):
        check_json([float("inf")], "data")


def test_integers_must_fit_in_64_bits() -> None:
    check_json([-(2**63), 2**64 - 1])

    with pytest.raises(JSONValueError, match=r"^\[0\]: integer out of the 64-bit range$"):
        check_json([2**64])
    with pytest.raises(JSONValueError, match="integer out of the 64-bit range"):
        check_json({"low": -(2**63) - 1})


def test_object_keys_must_be_strings() -> None:
    with pytest.raises(JSONValueError, match=r"^a: object key 1 is not a string$"):
        check_json({"a": {1: "one"}})


def test_other_python_objects_are_named_in_the_message() -> None:
    with pytest.raises(JSONValueError, match=r"^tags: set is not JSON \(use dict, list"):
        check_json({"tags": {"a"}})
    with pytest.raises(JSONValueError, match="bytes is not JSON"):
        check_json(b"raw")


def test_nesting_is_bounded() -> None:
    check_json(nested_lists(MAX_DEPTH))

    with pytest.raises(JSONValueError, match=f"nested deeper than {MAX_DEPTH} levels"):
        check_json(nested_lists(MAX_DEPTH + 1))


def test_loads_rejects_nan_and_infinity() -> None:
    for text in (b'{"x": NaN}', b"[Infinity]", b"-Infinity"):
        with pytest.raises(ValueError):
            loads(text)


def test_loads_rejects_a_byte_order_mark() -> None:
    with pytest.raises(ValueError):
        loads(b'\xef\xbb\xbf{"x": 1}')


def test_loads_rejects_invalid_utf8() -> None:
    with pytest.raises(ValueError):
        loads(b'"\xff"')


def test_dumps_and_loads_round_trip() -> None:
    value = {"text": "héllo", "n": [1, 2.5, None, True], "nested": {"k": "v"}}

    assert loads(dumps(value)) == value
    assert loads(dumps(value).decode()) == value
