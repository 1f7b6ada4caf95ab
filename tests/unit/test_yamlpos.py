"""YAML with line numbers: plain data, a line for every path, and duplicate keys refused."""

from __future__ import annotations

import pytest

from orchestrator.yamlpos import YamlError, line_of, load_with_lines


def test_every_path_has_its_1_based_line() -> None:
    text = "rules:\n  - name: a\n    params:\n      x: 1\n  - name: b\n"

    data, lines = load_with_lines(text)

    assert data == {"rules": [{"name": "a", "params": {"x": 1}}, {"name": "b"}]}
    assert lines[("rules", 0, "name")] == 2
    assert lines[("rules", 0, "params", "x")] == 4
    assert lines[("rules", 1)] == 5


def test_empty_text_is_no_document() -> None:
    assert load_with_lines("") == (None, {})
    assert load_with_lines("# only a comment\n") == (None, {})


def test_a_duplicate_key_is_an_error_on_its_line() -> None:
    with pytest.raises(YamlError) as caught:
        load_with_lines("rules:\n  - name: a\n    type: x\n    type: y\n")

    assert caught.value.line == 4
    assert str(caught.value) == "duplicate key 'type'"


def test_keys_that_are_not_strings_are_refused_on_their_line() -> None:
    # YAML's integer 1 and boolean true are different keys that a Python dict would merge; orch's
    # files only ever need string keys, so anything else is refused rather than silently merged.
    with pytest.raises(YamlError) as caught:
        load_with_lines("one: 1\ntrue: yes\n")

    assert caught.value.line == 2
    assert str(caught.value) == "mapping keys must be strings, got True (quote it: 'True')"


def test_collection_tags_are_refused() -> None:
    with pytest.raises(YamlError, match="unsupported YAML tag 'tag:yaml.org,2002:python/object/apply:os.system'"):
        load_with_lines("x: !!python/object/apply:os.system ['true']\n")


def test_invalid_yaml_names_its_line() -> None:
    with pytest.raises(YamlError) as caught:
        load_with_lines("rules:\n  - name: a\n    type: b: c\n")

    assert caught.value.line == 3
    assert str(caught.value) == "invalid YAML: mapping values are not allowed here"


def test_a_complex_key_is_refused() -> None:
    with pytest.raises(YamlError, match="mapping keys must be strings") as caught:
        load_with_lines("ok: 1\n? [1, 2]\n: x\n")

    assert caught.value.line == 2


def test_python_tags_on_scalars_are_not_constructed() -> None:
    with pytest.raises(YamlError, match="invalid YAML"):
        load_with_lines("x: !!python/name:os.system\n")


def test_merge_keys_are_resolved() -> None:
    data, lines = load_with_lines("base: &b {x: 1}\nd:\n  <<: *b\n  y: 2\n")

    assert data["d"] == {"x": 1, "y": 2}
    assert lines[("d", "y")] == 4


def test_line_of_falls_back_to_the_nearest_ancestor() -> None:
    _, lines = load_with_lines("rules:\n  - name: a\n    params:\n      x: 1\n")

    assert line_of(lines, ("rules", 0, "params", "x")) == 4
    assert line_of(lines, ("rules", 0, "params", "missing")) == 3
    assert line_of(lines, ("rules", 0, "workflow")) == 2
    assert line_of({}, ("anything",)) is None
