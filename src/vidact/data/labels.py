"""Label maps: class ids and names, read from any of the usual file styles.

Styles, detected from the content:

* pbtxt, AVA style: ``label { name: "..." label_id: N label_type: ... }``
* pbtxt, object-detection style: ``item { name: "..." id: N }`` (the official
  AVA evaluation label map); an item's ``display_name``, where it has one, is its name
* JSON ``{"name": id, ...}`` (PySlowFast ``DEMO.LABEL_FILE_PATH``; 0-based)
* ``id: name`` lines (mmaction2's AVA label maps)
* ``id,name`` CSV rows, under an optional header line (Kinetics label CSVs)
* one name per line, id = 0-based line number (Kinetics)
"""

from __future__ import annotations

import csv
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Mapping, Union

from vidact.errors import VidactError

_PBTXT_START = re.compile(r"\b(?:item|label)\s*\{")
# One token of protobuf text format, read left to right so that a brace, '#' or field name inside
# a quoted string ("name: colon") is text, and a comment, braces and all, is nothing. Strings take
# either quote; field separators (, ;) are optional and carry nothing, so they count as space.
_PBTXT_TOKEN = re.compile(r"""[\s,;]+|#[^\n]*|("(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')|([-+.\w]+|[{}:])""", re.S)
_PBTXT_ESCAPE = re.compile(r"\\(?:([0-7]{1,3})|[xX]([0-9a-fA-F]{1,2})|u([0-9a-fA-F]{4})|U([0-9a-fA-F]{8})|(.))", re.S)
_PBTXT_SIMPLE_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v",
                         "\\": "\\", "'": "'", '"': '"', "?": "?"}
# Names are drawn on one line: a line break made the text layout (raqm) fail mid-run.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_ID_NAME_LINE = re.compile(r"^\s*(-?\d+)\s*:\s*(.*?)\s*$")
_INTEGER = re.compile(r"\s*-?\d+\s*")


@dataclass(frozen=True)
class LabelMap:
    """Class ids and their names, in file order (JSON files: by id).

    ``label_types`` holds the AVA ``label_type`` of each id where the file gives one.
    """

    names: Mapping[int, str]
    label_types: Mapping[int, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.names:
            raise ValueError("a label map needs at least one class")
        for class_id, name in self.names.items():
            if not isinstance(name, str):
                raise ValueError(f"the name of class {class_id} is {name!r}, not text")
            control = _CONTROL.search(name)
            if control:
                raise ValueError(
                    f"class {class_id} ({name!r}): its name holds the control character {control.group()!r}; "
                    "fix that name (one line of text, no tabs)"
                )

    @property
    def ids(self) -> list[int]:
        """The class ids in file order."""
        return list(self.names)

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, class_id: int) -> str:
        return self.names[class_id]

    def __contains__(self, class_id: object) -> bool:
        return class_id in self.names

    def __iter__(self) -> Iterator[int]:
        return iter(self.names)

    def id_of(self, name: str) -> int:
        """The id of the class called ``name``; KeyError if none or several classes have it."""
        ids = [class_id for class_id, class_name in self.names.items() if class_name == name]
        if len(ids) != 1:
            raise KeyError(f"{name!r} names {'no' if not ids else len(ids)} classes in this label map")
        return ids[0]

    @property
    def name_to_id(self) -> dict[str, int]:
        """Name -> id for the names that belong to exactly one class."""
        counts: dict[str, int] = {}
        for name in self.names.values():
            counts[name] = counts.get(name, 0) + 1
        return {name: class_id for class_id, name in self.names.items() if counts[name] == 1}

    @property
    def first_id(self) -> int:
        return min(self.names)

    @property
    def is_dense(self) -> bool:
        """True when the ids are the consecutive integers ``first_id .. first_id + len - 1``."""
        return max(self.names) - min(self.names) + 1 == len(self.names)

    def as_list(self) -> list[str]:
        """Names ordered by id, ``as_list()[i]`` being the name of id ``first_id + i``.

        Raises ValueError when the ids have gaps (see :attr:`is_dense`).
        """
        if not self.is_dense:
            raise ValueError("the label map's ids have gaps; it has no dense list form")
        return [self.names[class_id] for class_id in range(self.first_id, self.first_id + len(self))]


def read_label_map(path: str | os.PathLike) -> LabelMap:
    """Read a label map file of any supported style (see the module docstring).

    Raises :class:`VidactError` naming the file when it cannot be read or parsed.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")  # a BOM (Windows editors) is no part of the text
    except UnicodeDecodeError as err:
        raise VidactError(
            f"{path}: a label map must be UTF-8 text (byte {err.start} is not: {err.reason}); save it as UTF-8"
        ) from None
    except OSError as err:
        raise VidactError(f"{path}: cannot read the label map ({err}); check the path") from None
    try:
        return parse_label_map(text)
    except ValueError as err:
        raise VidactError(f"{path}: {err}") from None


# What the Python API takes as class names: a label-map file, a LabelMap, a {name: id} mapping
# (PySlowFast's label JSON, loaded) or the names in id order.
Labels = Union[str, os.PathLike, LabelMap, Mapping[str, int], Iterable[str]]
_ACCEPTED = "give a label-map path, a LabelMap, a {name: id} dict or a list of names"


def names_by_id(labels: Labels, *, from_zero: bool = True) -> tuple[str, ...]:
    """The class names of ``labels``, ordered by id: the names of a model's outputs.

    The ids must be consecutive, and start at 0 when ``from_zero`` (AVA's label files number
    the classes from 1). Raises :class:`VidactError` for anything else.
    """
    if isinstance(labels, (str, os.PathLike)):
        label_map, source = read_label_map(labels), str(labels)
    else:
        source = "labels"
        try:
            label_map = _as_label_map(labels)
        except ValueError as err:
            raise VidactError(f"{source}: {err}") from None
    if not label_map.is_dense or (from_zero and label_map.first_id != 0):
        rule = "run 0..N-1" if from_zero else "be consecutive"
        raise VidactError(
            f"{source}: class ids must {rule} without gaps to name a model's outputs "
            f"(found {len(label_map)} ids in {label_map.first_id}..{max(label_map.ids)})"
        )
    return tuple(label_map.as_list())


def _as_label_map(labels: LabelMap | Mapping[str, int] | Iterable[str]) -> LabelMap:
    if isinstance(labels, LabelMap):
        return labels
    if isinstance(labels, Mapping):
        if not all(isinstance(name, str) and isinstance(i, int) and not isinstance(i, bool) for name, i in labels.items()):
            raise ValueError(f"a dict of labels must map names to integer ids; {_ACCEPTED}")
        return _from_name_ids(labels)
    if not isinstance(labels, Iterable):
        raise ValueError(f"a {type(labels).__name__} is no class names; {_ACCEPTED}")
    names = list(labels)
    not_names = [name for name in names if not isinstance(name, str)]
    if not_names:
        raise ValueError(f"class names must be text, not {type(not_names[0]).__name__}; {_ACCEPTED}")
    return LabelMap(dict(enumerate(names)))


def parse_label_map(text: str) -> LabelMap:
    """Parse label-map text of any supported style; ValueError when it is none of them."""
    stripped = text.strip()
    if not stripped:
        raise ValueError("the label map is empty; give a file with the class names (one per line, JSON or pbtxt)")
    if stripped.startswith("{"):
        return _parse_json(stripped)
    if _PBTXT_START.search(stripped):
        return _parse_pbtxt(stripped)
    lines = stripped.splitlines()
    if all(_ID_NAME_LINE.match(line) for line in lines if line.strip()):
        return _parse_id_name_lines(lines)
    csv_rows = _id_name_csv_rows(lines)
    if csv_rows is not None:
        return _parse_id_name_csv(csv_rows)
    return _parse_name_lines(lines)


def _parse_pbtxt(text: str) -> LabelMap:
    names: dict[int, str] = {}
    label_types: dict[int, str] = {}
    for number, (block, strings, scalars) in enumerate(_pbtxt_blocks(text), start=1):
        # display_name is the readable one where an item has both (object-detection maps give a
        # machine id such as /m/01g317 as name); AVA's action lists have name only.
        literals = strings.get("display_name", strings.get("name"))
        class_id = scalars.get("label_id", scalars.get("id"))
        if literals is None or class_id is None or not _INTEGER.fullmatch(class_id):
            raise ValueError(f"pbtxt block {number} lacks a name or an id: {' '.join(block.split())}")
        try:
            # adjacent literals are one string; an escaped UTF-8 character may span two of them
            name = b"".join(_unescape(literal[1:-1]) for literal in literals).decode("utf-8")
        except ValueError as err:
            raise ValueError(f"pbtxt block {number}: bad string escape in {' '.join(literals)} ({err})") from None
        _add(names, int(class_id), name)
        if "label_type" in scalars:
            label_types[int(class_id)] = scalars["label_type"]
    return LabelMap(names, label_types)


def _pbtxt_blocks(text: str) -> Iterator[tuple[str, dict[str, list[str]], dict[str, str]]]:
    """Each flat ``item { ... }`` or ``label { ... }`` block: its text between the braces, its
    string fields (the quoted literals of each) and its other fields (numbers, enum values)."""
    tokens = _pbtxt_tokens(text)
    index = 0
    while tokens[index][0] != "end":
        if tokens[index][1] not in ("item", "label") or tokens[index + 1][0] != "{":
            raise _pbtxt_unexpected(text, tokens[index], "item { or label {")
        opening = tokens[index + 1]
        index += 2
        strings: dict[str, list[str]] = {}
        scalars: dict[str, str] = {}
        while tokens[index][0] != "}":
            if tokens[index][0] == "end":
                line = text.count("\n", 0, opening[2]) + 1
                raise ValueError(f"pbtxt label map: the last block (line {line}) is not closed; end it with }}")
            if "{" in (tokens[index + 1][0], tokens[index + 2][0]):
                raise ValueError(
                    "unexpected nesting in the pbtxt label map; expected flat item { ... } or label { ... } blocks"
                )
            (key_kind, key, _), (colon, _, _), (value_kind, value, _) = tokens[index : index + 3]
            if key_kind != "word" or colon != ":" or value_kind not in ("word", "string"):
                raise _pbtxt_unexpected(text, tokens[index], "a field such as name: \"...\" or id: 1")
            index += 3
            if value_kind == "word":
                scalars[key] = value
                continue
            strings[key] = [value]
            while tokens[index][0] == "string":
                strings[key].append(tokens[index][1])
                index += 1
        yield text[opening[2] + 1 : tokens[index][2]], strings, scalars
        index += 1


def _pbtxt_tokens(text: str) -> list[tuple[str, str, int]]:
    """(kind, text, offset) of each token: kind "string", "word" or the brace or colon itself;
    "end" tokens close the list so that the parser may look two ahead without bounds checks."""
    tokens = []
    position = 0
    while position < len(text):
        match = _PBTXT_TOKEN.match(text, position)
        if match is None:
            line = text.count("\n", 0, position) + 1
            snippet = text[position:].split("\n")[0][:30]
            raise ValueError(f"pbtxt label map, line {line}: cannot read {snippet!r}; close every quoted string")
        string, word = match.groups()
        if string:
            tokens.append(("string", string, position))
        elif word:
            tokens.append((word if word in ("{", "}", ":") else "word", word, position))
        position = match.end()
    return tokens + [("end", "", len(text))] * 3


def _pbtxt_unexpected(text: str, token: tuple[str, str, int], expected: str) -> ValueError:
    found = repr(token[1]) if token[0] != "end" else "the end of the file"
    line = text.count("\n", 0, token[2]) + 1
    return ValueError(f"pbtxt label map, line {line}: expected {expected}, found {found}")


def _unescape(text: str) -> bytes:
    """The bytes of a protobuf text-format string literal: its octal and hex escapes are bytes."""
    value = bytearray()
    position = 0
    for match in _PBTXT_ESCAPE.finditer(text):
        value += text[position : match.start()].encode()
        octal, hex_byte, short_unicode, long_unicode, simple = match.groups()
        if octal or hex_byte:
            value.append(int(octal, 8) if octal else int(hex_byte, 16))
        elif short_unicode or long_unicode:
            value += chr(int(short_unicode or long_unicode, 16)).encode()
        elif simple in _PBTXT_SIMPLE_ESCAPES:
            value += _PBTXT_SIMPLE_ESCAPES[simple].encode()
        else:
            raise ValueError(f"unknown escape \\{simple}")
        position = match.end()
    value += text[position:].encode()
    return bytes(value)


def _parse_json(text: str) -> LabelMap:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"invalid JSON label map ({err})") from None
    if not isinstance(data, dict) or not all(isinstance(v, int) and not isinstance(v, bool) for v in data.values()):
        raise ValueError('a JSON label map must be an object {"class name": integer id, ...}')
    return _from_name_ids(data)


def _from_name_ids(name_ids: Mapping[str, int]) -> LabelMap:
    names: dict[int, str] = {}
    for name, class_id in sorted(name_ids.items(), key=lambda item: item[1]):
        _add(names, class_id, name)
    return LabelMap(names)


def _parse_id_name_lines(lines: list[str]) -> LabelMap:
    names: dict[int, str] = {}
    for line in lines:
        match = _ID_NAME_LINE.match(line)
        if match:
            _add(names, int(match.group(1)), match.group(2))
    return LabelMap(names)


def _id_name_csv_rows(lines: list[str]) -> list[list[str]] | None:
    """The rows of an ``id,name`` CSV without its header, or None when the lines are not one."""
    rows = [next(csv.reader([line])) for line in lines if line.strip()]  # line by line: no quoted newlines
    if len(rows[0]) == 2 and not _INTEGER.fullmatch(rows[0][0]):
        rows = rows[1:]  # a header such as "id,name"
    if rows and all(len(row) == 2 and _INTEGER.fullmatch(row[0]) for row in rows):
        return rows
    return None


def _parse_id_name_csv(rows: list[list[str]]) -> LabelMap:
    names: dict[int, str] = {}
    for class_id, name in rows:
        _add(names, int(class_id), name.strip())
    return LabelMap(names)


def _parse_name_lines(lines: list[str]) -> LabelMap:
    if all(line.count(",") >= 2 for line in lines if line.strip()):
        raise ValueError(
            "this looks like a CSV file, not a label map (pbtxt, JSON, 'id: name', 'id,name' or one name per line)"
        )
    names: dict[int, str] = {}
    for line_no, line in enumerate(lines, start=1):
        name = line.strip()
        if not name:
            raise ValueError(f"line {line_no} is blank; in a one-name-per-line label map the line number is the id")
        names[line_no - 1] = name
    return LabelMap(names)


def _add(names: dict[int, str], class_id: int, name: str) -> None:
    if class_id in names:
        raise ValueError(f"class id {class_id} appears twice ({names[class_id]!r} and {name!r})")
    names[class_id] = name
