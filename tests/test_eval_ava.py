"""AVA frame-mAP: the official numbers on shared data, and hand-derived small cases."""

from __future__ import annotations

import json
import math
import time

import numpy as np
import pytest
from conftest import shared_path

from vidact.cli.main import main
from vidact.data.ava_csv import AvaRows, read_ava_csv, read_excluded_timestamps, write_ava_csv
from vidact.data.labels import LabelMap, read_label_map
from vidact.errors import VidactError
from vidact.evaluation.ava import AvaEvaluator, evaluate_ava

LABELS = LabelMap({1: "one", 2: "two", 3: "three"})
BOX_A = (0.1, 0.1, 0.4, 0.9)
BOX_B = (0.6, 0.1, 0.9, 0.9)  # disjoint from BOX_A


def write_rows(path, rows):
    path.write_text("".join(",".join(str(cell) for cell in row) + "\n" for row in rows))
    return path


def gt_row(video, second, box, action, person=0):
    return (video, f"{second:04d}", *box, action, person)


def det_row(video, second, box, action, score):
    return (video, f"{second:04d}", *box, action, score)


def ap_of(tmp_path, gt, det, labelmap=LABELS, **kwargs):
    return evaluate_ava(write_rows(tmp_path / "gt.csv", gt), write_rows(tmp_path / "det.csv", det), labelmap, **kwargs)


# --- the official evaluator's numbers -------------------------------------------------


def test_reproduces_official_map_on_mmaction2_case():
    folder = shared_path("data", "ava", "mmaction2_eval_detection")
    expected = json.loads((folder / "expected_official_map.json").read_text())["metrics"]
    result = evaluate_ava(folder / "gt.csv", folder / "pred.csv", folder / "action_list.txt")
    metrics = result.metrics()
    assert set(metrics) == set(expected)
    for key, value in expected.items():
        assert metrics[key] == pytest.approx(value, abs=1e-9), key
    assert result.map == pytest.approx(0.09385521885521886, abs=1e-9)


def test_real_groundtruth_scored_against_itself_is_perfect_and_fast(tmp_path):
    folder = shared_path("data", "ava", "real_v2.1")
    gt_csv = folder / "ava_val_v2.1_head27163.csv"
    gt = read_ava_csv(gt_csv, eighth_column="person_id")
    assert len(gt) == 27163 and gt.person_ids is not None
    # The prediction: every annotation row with a random score in place of the person id.
    scores = np.random.default_rng(0).uniform(0.01, 1.0, len(gt))
    pred_csv = tmp_path / "pred.csv"
    write_ava_csv(pred_csv, AvaRows(gt.video_ids, gt.timestamps, gt.boxes, gt.action_ids, scores=scores))
    labelmap = shared_path("data", "labels", "ava_action_list_v2.1_for_activitynet_2018.pbtxt")
    exclusions = folder / "ava_val_excluded_timestamps_v2.1.csv"

    start = time.perf_counter()
    result = evaluate_ava(gt_csv, pred_csv, labelmap, exclusions)
    elapsed = time.perf_counter() - start

    assert elapsed < 10, f"evaluation took {elapsed:.1f} s"
    assert len(result.per_class) == 60
    evaluated = {class_id: ap for class_id, (_, ap) in result.per_class.items() if not math.isnan(ap)}
    # 3 of the 60 classes (swim, sail boat, turn) have no box in the first 27,163 rows.
    assert len(evaluated) == 57 and {13, 51, 60}.isdisjoint(evaluated)
    assert all(ap == pytest.approx(1.0, abs=1e-12) for ap in evaluated.values())
    assert result.map == pytest.approx(1.0, abs=1e-12)
    # Rows of the 20 classes outside the label map are not counted.
    in_map = np.isin(gt.action_ids, list(result.per_class))
    assert sum(result.num_groundtruth.values()) <= in_map.sum() < len(gt)


# --- hand-derived cases -----------------------------------------------------------------


def test_precision_envelope_and_missing_classes(tmp_path):
    # Class 1: two boxes; detections TP (0.9), FP (0.8), TP (0.7): precisions 1, 1/2, 2/3,
    # envelope 1, 2/3, 2/3 -> AP = 1/2 * 1 + 1/2 * 2/3 = 5/6.
    # Class 2: a box but no detection -> AP 0. Class 3: no box -> no AP, not in the mean.
    gt = [gt_row("v", 902, BOX_A, 1), gt_row("v", 903, BOX_A, 1), gt_row("v", 902, BOX_B, 2)]
    det = [det_row("v", 902, BOX_A, 1, 0.9), det_row("v", 902, BOX_B, 1, 0.8), det_row("v", 903, BOX_A, 1, 0.7)]
    det.append(det_row("v", 902, BOX_A, 3, 0.5))
    result = ap_of(tmp_path, gt, det)
    assert result.per_class[1] == ("one", pytest.approx(5 / 6))
    assert result.per_class[2] == ("two", 0.0)
    assert math.isnan(result.per_class[3][1])
    assert result.map == pytest.approx((5 / 6 + 0) / 2)
    assert result.to_dict()["classes"][2]["ap"] is None


def test_iou_of_exactly_half_matches():
    gt = AvaRows(np.array(["v"]), np.array([902]), np.array([[0.0, 0.0, 0.5, 1.0]]), np.array([1]))
    evaluator = AvaEvaluator(LABELS, gt)
    evaluator.process(["v"], [902], [[0.0, 0.0, 0.25, 1.0]], [1], [0.9])  # IoU 0.25 / 0.5 exactly
    assert evaluator.evaluate().per_class[1][1] == 1.0
    evaluator.reset()
    evaluator.process(["v"], [902], [[0.0, 0.0, 0.2499, 1.0]], [1], [0.9])
    assert evaluator.evaluate().per_class[1][1] == 0.0


def test_detection_matches_only_its_best_overlapping_box(tmp_path):
    # Two boxes of class 1. Both detections overlap box 1 best; the second also has
    # IoU 0.54 with box 2, but the official rule does not fall back to it: TP, FP -> AP 1/2.
    box1, box2 = (0.0, 0.0, 0.5, 1.0), (0.2, 0.0, 0.7, 1.0)
    second = (0.05, 0.0, 0.55, 1.0)  # IoU 0.818 with box1, 0.538 with box2
    gt = [gt_row("v", 902, box1, 1, 0), gt_row("v", 902, box2, 1, 1)]
    det = [det_row("v", 902, box1, 1, 0.9), det_row("v", 902, second, 1, 0.8)]
    assert ap_of(tmp_path, gt, det).per_class[1][1] == pytest.approx(0.5)


def test_capacity_keeps_the_50_best_label_map_detections_per_keyframe(tmp_path):
    gt = [gt_row("v", 902, BOX_A, 1)]
    false_positives = [det_row("v", 902, BOX_B, 2, 0.9 - i * 0.001) for i in range(49)]
    true_positive = det_row("v", 902, BOX_A, 1, 0.1)
    outside_map = [det_row("v", 902, BOX_B, 7, 0.99) for _ in range(20)]  # not in the label map: not counted
    # 49 better detections: the true positive is the 50th and stays; class 2 has no box.
    assert ap_of(tmp_path, gt, [true_positive, *false_positives, *outside_map]).per_class[1][1] == 1.0
    # A 50th better one pushes it out.
    pushed = [true_positive, *false_positives, det_row("v", 902, BOX_B, 1, 0.95)]
    assert ap_of(tmp_path, gt, pushed).per_class[1][1] == 0.0
    # Without a capacity it is ranked second among class-1 detections: precision 1/2.
    assert ap_of(tmp_path, gt, pushed, capacity=0).per_class[1][1] == pytest.approx(0.5)
    # The capacity is per keyframe: the same detections spread over two keyframes all count.
    spread = [true_positive, *false_positives, det_row("v", 903, BOX_B, 1, 0.95)]
    assert ap_of(tmp_path, gt, spread).per_class[1][1] == pytest.approx(0.5)


def test_excluded_keyframes_are_dropped_from_both_files(tmp_path):
    gt = [gt_row("v", 902, BOX_A, 1), gt_row("v", 903, BOX_A, 1)]
    det = [det_row("v", 902, BOX_A, 1, 0.9), det_row("v", 903, BOX_B, 1, 0.95)]
    # FP (0.95) then TP (0.9) with two boxes: AP = 1/2 * 1/2.
    assert ap_of(tmp_path, gt, det).per_class[1][1] == pytest.approx(0.25)
    exclusions = write_rows(tmp_path / "excluded.csv", [("v", "0903"), ("other", "0902")])
    assert read_excluded_timestamps(exclusions) == {("v", 903), ("other", 902)}
    result = ap_of(tmp_path, gt, det, exclusions=exclusions)
    assert result.per_class[1][1] == 1.0 and result.num_groundtruth[1] == 1


def test_detections_on_keyframes_without_groundtruth(tmp_path):
    gt = [gt_row("v", 902, BOX_A, 1), gt_row("v", 904, BOX_A, 2)]
    det = [
        det_row("v", 902, BOX_A, 1, 0.5),  # TP
        det_row("v", 903, BOX_A, 1, 0.9),  # keyframe without any annotation
        det_row("v", 904, BOX_A, 1, 0.8),  # annotated keyframe, other class: always FP
        det_row("v", 902, BOX_A, 9, 0.99),  # class outside the label map: ignored
    ]
    # Official: FP, FP, TP -> AP 1/3. Ignoring unannotated keyframes: FP, TP -> AP 1/2.
    assert ap_of(tmp_path, gt, det).per_class[1][1] == pytest.approx(1 / 3)
    assert ap_of(tmp_path, gt, det, ignore_unlabeled_keyframes=True).per_class[1][1] == pytest.approx(1 / 2)


def test_in_memory_evaluator_matches_the_csv_path_over_batches():
    folder = shared_path("data", "ava", "mmaction2_eval_detection")
    pred = read_ava_csv(folder / "pred.csv", eighth_column="score")
    evaluator = AvaEvaluator(folder / "action_list.txt", folder / "gt.csv")
    for part in np.array_split(np.arange(len(pred)), 3):
        evaluator.process(
            pred.video_ids[part], pred.timestamps[part], pred.boxes[part], pred.action_ids[part], pred.scores[part]
        )
    assert evaluator.evaluate().map == pytest.approx(0.09385521885521886, abs=1e-9)
    evaluator.reset()
    empty = evaluator.evaluate()
    assert empty.map == 0.0 and all(ap == 0.0 for _, ap in empty.per_class.values())


def test_process_class_scores_expands_one_row_per_class():
    gt = AvaRows(np.array(["v", "v"]), np.array([902, 902]), np.array([BOX_A, BOX_B]), np.array([1, 3]))
    evaluator = AvaEvaluator(LABELS, gt)
    # Box A is best for class 1, box B for class 3; class 2 has no box.
    evaluator.process_class_scores(["v", "v"], [902, 902], [BOX_A, BOX_B], [[0.9, 0.2, 0.1], [0.3, 0.2, 0.8]])
    result = evaluator.evaluate()
    assert result.per_class[1][1] == 1.0 and result.per_class[3][1] == 1.0 and result.map == 1.0
    assert result.num_detections == {1: 2, 2: 2, 3: 2}


def test_cli_prints_table_and_writes_json(tmp_path, capsys):
    folder = shared_path("data", "ava", "mmaction2_eval_detection")
    out = tmp_path / "out" / "map.json"
    status = main(
        ["eval-ava", "--gt", str(folder / "gt.csv"), "--pred", str(folder / "pred.csv"),
         "--labelmap", str(folder / "action_list.txt"), "--json", str(out)]
    )
    assert status == 0
    printed = capsys.readouterr().out
    assert "action1" in printed and "mAP@0.5IOU = 0.0939" in printed
    report = json.loads(out.read_text())
    assert report["mAP"] == pytest.approx(0.09385521885521886, abs=1e-9)
    assert [c["id"] for c in report["classes"]] == [1, 2, 3]
    official = report["official_metrics"]
    assert official["PascalBoxes_PerformanceByCategory/AP@0.5IOU/action1"] == pytest.approx(0.17045454545454547)
    assert report["inputs"]["exclusions"] is None


@pytest.mark.parametrize(
    "content, fragment",
    [("v,0902,0.1,0.1,0.5\n", "expected 7 or 8"), ("v,09x2,0.1,0.1,0.5,0.5,1,0.9\n", "must be integers"),
     # vidact detect --rate 2's actions.csv: what to rerun, not only what is wrong
     ("v,0000.000,0.1,0.1,0.5,0.5,1,0.9\n", "make the file with vidact detect --rate 1")],
)
def test_cli_bad_prediction_file_is_one_line_error(tmp_path, capsys, content, fragment):
    folder = shared_path("data", "ava", "mmaction2_eval_detection")
    pred = tmp_path / "bad.csv"
    pred.write_text(content)
    out = tmp_path / "map.json"
    status = main(["eval-ava", "--gt", str(folder / "gt.csv"), "--pred", str(pred),
                   "--labelmap", str(folder / "action_list.txt"), "--json", str(out)])
    err = capsys.readouterr().err
    assert status == 2 and not out.exists()
    assert err.count("\n") == 1 and f"{pred}:1:" in err and fragment in err


def test_labelmap_without_matching_groundtruth_is_an_error(tmp_path):
    gt = write_rows(tmp_path / "gt.csv", [gt_row("v", 902, BOX_A, 5)])
    det = write_rows(tmp_path / "det.csv", [det_row("v", 902, BOX_A, 5, 0.5)])
    with pytest.raises(VidactError, match="gt.csv: no ground-truth box"):
        evaluate_ava(gt, det, LABELS)
    with pytest.raises(VidactError, match="missing.csv"):
        evaluate_ava(tmp_path / "missing.csv", det, LABELS)


def test_csv_round_trip(tmp_path):
    rows = AvaRows(
        np.array(["-5KQ66BBWC4", "abc"]), np.array([902, 1798]), np.array([[0.1, 0.2, 0.3, 0.4], [0.0, 0.5, 1.0, 1.0]]),
        np.array([12, 80]), person_ids=np.array([3, 0]),
    )
    path = tmp_path / "rows.csv"
    write_ava_csv(path, rows)
    assert path.read_text().splitlines()[0] == "-5KQ66BBWC4,0902,0.100,0.200,0.300,0.400,12,3"
    back = read_ava_csv(path, eighth_column="person_id")
    assert back.video_ids.tolist() == rows.video_ids.tolist() and back.scores is None
    np.testing.assert_array_equal(back.timestamps, rows.timestamps)
    np.testing.assert_allclose(back.boxes, rows.boxes)
    np.testing.assert_array_equal(back.person_ids, rows.person_ids)


def test_files_saved_with_a_bom_or_mixed_columns_read_as_the_official_reader_does(tmp_path):
    """A BOM stuck to the first video id moved its row (mAP 0.0939 -> 0.0642); 7-column rows among
    8-column ones are read row by row (score 1.0), not refused."""
    folder = shared_path("data", "ava", "mmaction2_eval_detection")
    bom_gt = tmp_path / "gt.csv"
    bom_gt.write_bytes(b"\xef\xbb\xbf" + (folder / "gt.csv").read_bytes())
    assert evaluate_ava(bom_gt, folder / "pred.csv", folder / "action_list.txt").map == pytest.approx(
        0.09385521885521886, abs=1e-9)
    mixed = tmp_path / "mixed.csv"
    mixed.write_text("v,0902,0.1,0.1,0.5,0.5,1,0.25\nv,0903,0.1,0.1,0.5,0.5,2\n")
    rows = read_ava_csv(mixed, eighth_column="score")
    assert rows.scores.tolist() == [0.25, 1.0]
    assert read_ava_csv(mixed, eighth_column="person_id").person_ids.tolist() == [0, -1]


# --- label maps numbered from 0, capacity ties, unlabeled keyframes ---------------------


def test_zero_based_label_maps_name_ava_action_ids_from_one(tmp_path):
    """PySlowFast's ava_classids.json numbers the 80 classes 0..79 and AVA action ids are 1..80
    (index = id - 1): every name was shifted by one and class 80 never scored."""
    gt_csv = shared_path("data", "ava", "real_v2.1") / "ava_val_v2.1_head27163.csv"
    pbtxt = shared_path("data", "labels", "ava_action_list_v2.1.pbtxt")
    expected = evaluate_ava(gt_csv, gt_csv, pbtxt)
    from_json = evaluate_ava(gt_csv, gt_csv, shared_path("configs", "pyslowfast", "fork", "ava_classids.json"))
    assert from_json.format_table() == expected.format_table()
    assert from_json.per_class[80] == ("watch (a person)", pytest.approx(1.0)) and 0 not in from_json.per_class

    # The evaluator used in training, with one name per line (also numbered from 0): score column k is id k + 1.
    names = tmp_path / "ava80.txt"
    names.write_text("\n".join(read_label_map(pbtxt).as_list()) + "\n")
    gt = AvaRows(np.array(["v", "v"]), np.array([902, 902]), np.array([BOX_A, BOX_B]), np.array([1, 80]))
    evaluator = AvaEvaluator(names, gt)
    class_scores = np.full((2, 80), 0.1)
    class_scores[0, 0] = class_scores[1, 79] = 0.9
    evaluator.process_class_scores(["v", "v"], [902, 902], [BOX_A, BOX_B], class_scores)
    result = evaluator.evaluate()
    assert result.per_class[1] == ("bend/bow (at the waist)", 1.0)
    assert result.per_class[80] == ("watch (a person)", 1.0)
    assert result.map == 1.0


def test_capacity_breaks_score_ties_like_the_official_heap(tmp_path):
    """The official reader keeps a min-heap of (score, action id, y1, x1, y2, x2) per keyframe: a row
    scoring above the smallest score replaces the smallest tuple, so of two rows tied at the cut the
    lower action id goes, whatever the row order."""
    gt = [gt_row("v", 902, BOX_A, 1), gt_row("v", 902, BOX_A, 2), gt_row("v", 902, BOX_B, 2, 1)]
    tied = [det_row("v", 902, BOX_A, 1, 0.5), det_row("v", 902, BOX_A, 2, 0.5)]
    better = [det_row("v", 902, (0.01 * i, 0.0, 0.01 * i + 0.01, 0.05), 3, 0.9 + i / 1000) for i in range(49)]
    for det in ([*tied, *better], [*better, *tied[::-1]]):
        result = ap_of(tmp_path, gt, det)
        assert result.num_detections == {1: 0, 2: 1, 3: 49}
        assert result.per_class[1][1] == 0.0 and result.per_class[2][1] == 0.5
        assert result.map == pytest.approx(0.25)
    # A row tied with the smallest kept score does not get in, even with a larger tuple.
    late = [det_row("v", 902, BOX_A, 1, 0.5), *better, det_row("v", 902, BOX_A, 2, 0.5)]
    assert ap_of(tmp_path, gt, late).num_detections == {1: 1, 2: 0, 3: 49}
    # Rows below the cut never decide between the rows tied at it, whatever the order.
    below = [*tied, *better, det_row("v", 902, BOX_B, 2, 0.4), det_row("v", 902, BOX_B, 2, 0.4)]
    assert ap_of(tmp_path, gt, below[::-1]).num_detections == {1: 0, 2: 1, 3: 49}


def test_ignore_unlabeled_keyframes_counts_keyframes_annotated_outside_the_label_map(tmp_path):
    """A keyframe annotated only with classes outside the label map is still annotated: its false
    alarms count. Excluded keyframes stay unlabeled."""
    gt = [gt_row("v", 902, BOX_A, 1), gt_row("v", 903, BOX_A, 9), gt_row("v", 904, BOX_A, 9)]
    det = [det_row("v", 902, BOX_A, 1, 0.5), det_row("v", 903, BOX_A, 1, 0.9), det_row("v", 904, BOX_A, 1, 0.8)]
    exclusions = write_rows(tmp_path / "excluded.csv", [("v", "0904")])
    result = ap_of(tmp_path, gt, det, exclusions=exclusions, ignore_unlabeled_keyframes=True)
    # FP (0.9 on 0903), TP (0.5): AP 1/2; the 0.8 on the excluded 0904 is dropped either way.
    assert result.num_detections[1] == 2 and result.per_class[1][1] == pytest.approx(0.5)
