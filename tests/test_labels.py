"""Label maps: every shared label file, each style detected from content."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from conftest import shared_path

import vidact
from vidact.data.labels import LabelMap, parse_label_map, read_label_map
from vidact.errors import VidactError
from vidact.pipeline.classify import class_names_for
from vidact.pipeline.detect import ActionModel, default_class_names, load_action_model
from vidact.pipeline.kinetics_demo import _class_names


def labels(name: str) -> LabelMap:
    return read_label_map(shared_path("data", "labels", name))


def test_every_shared_label_file_reads(shared):
    counts = {}
    for path in sorted((shared / "data" / "labels").iterdir()):
        counts[path.name] = len(read_label_map(path))
    assert counts == {
        "ava_action_list_v2.1.pbtxt": 80,
        "ava_action_list_v2.1_for_activitynet_2018.pbtxt": 60,
        "kinetics400_label_map.txt": 400,
        "kinetics600_label_map.txt": 600,
        "kinetics700_label_map.txt": 700,
        "mmaction2_ava_label_map_60.txt": 60,
    }


def test_ava_80_pbtxt_with_label_types():
    ava = labels("ava_action_list_v2.1.pbtxt")
    assert ava.ids == list(range(1, 81)) and ava.is_dense and ava.first_id == 1
    assert ava[1] == "bend/bow (at the waist)" and ava[80] == "watch (a person)"
    assert ava.label_types[1] == "PERSON_MOVEMENT" and ava.label_types[80] == "PERSON_INTERACTION"
    assert ava.as_list()[11] == ava[12]
    assert ava.id_of("stand") == 12


def test_ava_60_pbtxt_and_id_name_lines_agree():
    official = labels("ava_action_list_v2.1_for_activitynet_2018.pbtxt")
    mmaction = labels("mmaction2_ava_label_map_60.txt")
    assert dict(official.names) == dict(mmaction.names)
    assert official.ids[:3] == [1, 3, 4] and 2 not in official and official[3] == "crouch/kneel"
    assert not official.is_dense and official.label_types == {}
    with pytest.raises(ValueError, match="gaps"):
        official.as_list()
    # The 60 evaluated classes are a subset of the 80, under the same names.
    ava = labels("ava_action_list_v2.1.pbtxt")
    assert all(ava[class_id] == name for class_id, name in official.names.items())


@pytest.mark.parametrize("count, index, name", [(400, 6, "arm wrestling"), (600, 0, "abseiling"), (700, 699, "zumba")])
def test_kinetics_one_name_per_line(count, index, name):
    kinetics = labels(f"kinetics{count}_label_map.txt")
    assert len(kinetics) == count and kinetics.first_id == 0 and kinetics.is_dense
    assert kinetics[index] == name and kinetics.as_list()[index] == name


def test_pyslowfast_json_label_files():
    fork = shared_path("configs", "pyslowfast", "fork")
    ava = read_label_map(fork / "ava_classids.json")
    assert len(ava) == 80 and ava.ids == list(range(80))
    # 0-based: JSON id = AVA label_id - 1.
    assert ava.as_list() == labels("ava_action_list_v2.1.pbtxt").as_list()
    kinetics = read_label_map(fork / "class_ids.json")
    assert len(kinetics) == 400 and kinetics.id_of("sharpening knives") == 290
    assert kinetics.as_list() == labels("kinetics400_label_map.txt").as_list()


def test_duplicate_names_are_kept_but_not_looked_up():
    sample = read_label_map(shared_path("data", "ava", "mmaction2_ava_dataset_sample", "action_list.txt"))
    assert sample.names == {12: "action1", 17: "action2", 79: "action3", 80: "action3"}
    assert sample.name_to_id == {"action1": 12, "action2": 17}
    with pytest.raises(KeyError):
        sample.id_of("action3")


def test_styles_are_detected_from_content():
    assert parse_label_map('label {\n name: "a"\n label_id: 4\n label_type: X\n}').names == {4: "a"}
    assert parse_label_map('item { name: "b" id: 2 } item { name: "c" id: 1 }').names == {2: "b", 1: "c"}
    assert parse_label_map('{"c": 1, "b": 0}').as_list() == ["b", "c"]
    assert parse_label_map("3: run/jog\n5: sit\n").names == {3: "run/jog", 5: "sit"}
    assert parse_label_map("riding a bike\nyoga\n\n").names == {0: "riding a bike", 1: "yoga"}
    assert parse_label_map("riding a bike, slowly\nyoga\n").names == {0: "riding a bike, slowly", 1: "yoga"}


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "empty; give a file with the class names"),
        ("a\n\nb\n", "line 2 is blank"),
        ("1: a\n1: b\n", "class id 1 appears twice"),
        ('item { name: "a" }', "lacks a name or an id"),
        ('{"a": "zero"}', "JSON label map must be"),
        ("{not json", "invalid JSON"),
        ("v,0902,0.1,0.2,0.3,0.4,12,0\nv,0902,0.1,0.2,0.3,0.4,17,0\n", "looks like a CSV file"),
    ],
)
def test_bad_label_maps_name_the_file(tmp_path, text, message):
    path = tmp_path / "map.txt"
    path.write_text(text)
    with pytest.raises(VidactError, match=message) as err:
        read_label_map(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_missing_label_map_is_a_user_error(tmp_path):
    with pytest.raises(VidactError, match="nope.pbtxt"):
        read_label_map(tmp_path / "nope.pbtxt")


def test_a_byte_order_mark_is_no_part_of_the_names(tmp_path):
    """Windows editors save UTF-8 with a BOM: the file must read as without it."""
    (tmp_path / "map.json").write_text('\ufeff{\n  "crawl": 0,\n  "walk": 1\n}\n', encoding="utf-8")
    (tmp_path / "classes.txt").write_text("\ufeffabseiling\nair drumming\n", encoding="utf-8")
    assert read_label_map(tmp_path / "map.json").names == {0: "crawl", 1: "walk"}
    assert read_label_map(tmp_path / "classes.txt").names == {0: "abseiling", 1: "air drumming"}


@pytest.mark.parametrize("header", ["", "id,name\n"])
def test_id_name_csv_with_an_optional_header(tmp_path, header):
    """Kinetics label CSVs (kinetics_400_labels.csv) hold 'id,name' rows under an 'id,name' header."""
    kinetics = labels("kinetics400_label_map.txt").as_list()
    rows = [f"{index},{name}" for index, name in enumerate(kinetics)]
    path = tmp_path / "kinetics_400_labels.csv"
    path.write_text(header + "\r\n".join(rows) + "\r\n")
    read = read_label_map(path)
    assert read.first_id == 0 and read.as_list() == kinetics
    assert parse_label_map("id,name\n3,run/jog\n5,sit\n").names == {3: "run/jog", 5: "sit"}


# --------------------------------------------------------------------------- names that cannot be drawn


@pytest.mark.parametrize("name", ["line one\nline two", "carriage\rreturn", "tab\there", "bell\x07", "next\x85line"])
def test_a_control_character_in_a_name_is_refused(tmp_path, name):
    """A line break in a name crashed the label drawing (raqm) after the whole video was scored."""
    path = tmp_path / "map.json"
    path.write_text(json.dumps({"walk": 0, name: 1}), encoding="utf-8")
    with pytest.raises(VidactError, match="class 1 .*control character.*fix that name") as err:
        read_label_map(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_control_characters_are_refused_in_every_style(tmp_path):
    for file_name, text in [
        ("map.pbtxt", 'label { name: "a\\nb" label_id: 3 }'),
        ("map.txt", "0: walk\n1: run\tfast\n"),
        ("lines.txt", "walk\nrun\tfast\n"),
        ("map.csv", "id,name\n0,walk\n1,run\x01fast\n"),
    ]:
        (tmp_path / file_name).write_text(text, encoding="utf-8")
        with pytest.raises(VidactError, match="control character"):
            read_label_map(tmp_path / file_name)
    with pytest.raises(ValueError, match="class 0 .*control character"):
        LabelMap({0: "a\nb"})


# --------------------------------------------------------------------------- pbtxt names


def test_pbtxt_escapes_are_decoded():
    text = (
        'label { name: "back\\\\slash" label_id: 1 }\n'
        'label { name: "caf\\303\\251" label_id: 2 }\n'
        'label { name: "it\\x27s" label_id: 3 }\n'
        "label { name: \"say \\\"hi\\\" it\\'s\" label_id: 4 }\n"
        'label { name: "\\u00e0 la" label_id: 5 }\n'
    )
    assert parse_label_map(text).names == {1: "back\\slash", 2: "café", 3: "it's", 4: "say \"hi\" it's", 5: "à la"}
    with pytest.raises(ValueError, match="block 1.*escape"):
        parse_label_map('label { name: "bad \\q" label_id: 1 }')


def test_pbtxt_prefers_display_name_whatever_the_field_order():
    """Object-detection label maps give a machine id as name and the readable name as display_name."""
    text = (
        'item { name: "/m/01g317" id: 1 display_name: "person" }\n'
        'item { display_name: "bicycle" name: "/m/0199g" id: 2 }\n'
        'item { name: "car" id: 3 }\n'
        'item { name: "/m/0004" id: 4 display_name: "name: colon" }\n'
    )
    assert parse_label_map(text).names == {1: "person", 2: "bicycle", 3: "car", 4: "name: colon"}
    assert parse_label_map('item { display_name: "id: 7" id: 2 name: "x" }').names == {2: "id: 7"}



@pytest.mark.parametrize(
    "text, name",
    [
        # protobuf takes ' and " alike, with the same escapes
        ("label { name: 'stand' label_id: 7 }", "stand"),
        ("label { name: 'it\\'s \"so\"' label_id: 7 }", 'it\'s "so"'),
        # adjacent literals are one string, whatever their quotes, across line breaks
        ('label { name: "bend/bow " "(at the waist)" label_id: 7 }', "bend/bow (at the waist)"),
        ("label { name: \"bend/bow \"\n  '(at the waist)'\n  label_id: 7 }", "bend/bow (at the waist)"),
        ('label { name: "caf\\303" "\\251" label_id: 7 }', "café"),  # the bytes are joined, then decoded
        # braces and '#' in a string are text; a comment, braces and all, is nothing
        ('label { name: "look {at}" label_id: 7 }', "look {at}"),
        ('item { name: "/m/01" id: 7 display_name: "a}b" }', "a}b"),
        ('label { name: "#1 fan" label_id: 7 }  # the }', "#1 fan"),
        ("label { name: 'no. #1' label_id: 7 }", "no. #1"),
        ('# map {v2}\nlabel { # id {7}\n  name: "x" # was "y" }\n  label_id: 7\n}\n', "x"),
    ],
)
def test_pbtxt_strings_are_read_as_protobuf_text_format_reads_them(text, name):
    assert parse_label_map(text).names == {7: name}


@pytest.mark.parametrize(
    "text, message",
    [
        ('item { name: "a" id: 1 keypoints { id: 0 } }', "unexpected nesting"),
        ('label { name: "a" label_id: 1 }\nlabel { name: "b" label_id: 2', "last block .line 2. is not closed"),
        ('label { name: "a label_id: 1 }', "line 1: cannot read '\"a label_id"),
        ('label { name: "a" label_id: 1 }\njunk', "line 2: expected item { or label {, found 'junk'"),
    ],
)
def test_broken_pbtxt_says_where(text, message):
    with pytest.raises(ValueError, match=message):
        parse_label_map(text)


# --------------------------------------------------------------------------- messages


@pytest.mark.parametrize("encoding", ["utf-16", "latin-1"])
def test_a_label_map_not_in_utf8_says_so(tmp_path, encoding):
    path = tmp_path / "classes.txt"
    path.write_text("café\nthé\n", encoding=encoding)
    with pytest.raises(VidactError, match="must be UTF-8 text.*save it as UTF-8") as err:
        read_label_map(path)
    assert str(path) in str(err.value) and "check the path" not in str(err.value)


def test_kinetics_demo_label_ids_must_start_at_zero(tmp_path):
    path = tmp_path / "classes.txt"
    path.write_text("".join(f"{i}: class {i}\n" for i in range(1, 11)))
    with pytest.raises(VidactError, match=r"ids must run 0\.\.9 .*found 1\.\.10"):
        _class_names(SimpleNamespace(label_file=str(path)), 10)
    path.write_text("".join(f"{i}: class {i}\n" for i in range(10)))
    assert _class_names(SimpleNamespace(label_file=str(path)), 10)[9] == "class 9"


def test_a_missing_ava_label_file_names_where_it_was_looked_for(tmp_path, monkeypatch, ava_model):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(VidactError, match="label file not found") as err:
        default_class_names(ava_model, "./ava_classids.json")
    assert "./ava_classids.json" in str(err.value) and str(tmp_path / "ava_classids.json") in str(err.value)


# --------------------------------------------------------------------------- labels given to the Python API


@pytest.fixture(scope="module")
def kinetics_model():
    return vidact.create_model(shared_path("fixtures", "parity", "tiny_k400_slowfast", "config.yaml"))


@pytest.fixture(scope="module")
def ava_model():
    return vidact.create_model(shared_path("fixtures", "parity", "tiny_ava_slowfast_r101_nln", "config.yaml"))


def test_classify_takes_a_label_map_or_a_name_to_id_dict(kinetics_model):
    names = [f"action {i}" for i in range(10)]
    shuffled = {name: i for i, name in reversed(list(enumerate(names)))}  # dict order is not id order
    assert class_names_for(kinetics_model, shuffled) == tuple(names)
    assert class_names_for(kinetics_model, parse_label_map(json.dumps(shuffled))) == tuple(names)
    assert class_names_for(kinetics_model, names) == tuple(names)
    with pytest.raises(VidactError, match=r"ids must run 0\.\.N-1"):
        class_names_for(kinetics_model, {name: i + 1 for i, name in enumerate(names)})
    with pytest.raises(VidactError, match=r"ids must run 0\.\.N-1"):
        class_names_for(kinetics_model, LabelMap({i + 1: name for i, name in enumerate(names)}))


@pytest.mark.parametrize("labels", [list(range(10)), {i: f"a{i}" for i in range(10)}, {"a": "0"}, 7])
def test_labels_that_are_not_names_are_refused(kinetics_model, labels):
    with pytest.raises(VidactError, match="LabelMap.*name: id") as err:
        class_names_for(kinetics_model, labels)
    assert "\n" not in str(err.value)


def test_detect_takes_a_label_map_or_a_name_to_id_dict(ava_model):
    ava = labels("ava_action_list_v2.1.pbtxt")  # ids 1..80, as a label file may give them
    by_name = {name: class_id for class_id, name in reversed(list(ava.names.items()))}
    for given in (ava, by_name):
        assert ActionModel(ava_model, given).class_names == tuple(ava.as_list())
        loaded = load_action_model(ava_model, class_names=given, device="cpu", precision="eager")
        assert loaded.class_names == tuple(ava.as_list())
    with pytest.raises(VidactError, match="LabelMap.*name: id"):
        ActionModel(ava_model, {i: name for i, name in enumerate(ava.as_list())})
    with pytest.raises(VidactError, match="gaps"):
        ActionModel(ava_model, labels("ava_action_list_v2.1_for_activitynet_2018.pbtxt"))
