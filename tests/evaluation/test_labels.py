"""Folder labels for plots and contact sheets: what differs between the folders, always distinct; `--labels`."""
import pytest

from evaluation import report
from evaluation.labels import folder_labels
from tests.support.evaluation_helpers import TINY_CLIP, assert_one_line_error, make_folder, tiny_clip_checkpoint

COMMON = "DATE_CLIP_scheduler_DDIM_steps_50_w_8.0_seed_6"


@pytest.mark.parametrize("names, expected", [
    ([f"{COMMON}_name_A", f"{COMMON}_x0_taesd_name_A"], ["DATE_CLIP", "DATE_CLIP x0=taesd"]),
    ([f"{COMMON}_name_A", f"{COMMON}_name_B"], ["DATE_CLIP name=A", "DATE_CLIP name=B"]),
    (["FIXED_scheduler_DDIM_steps_50_w_8.0_seed_6_name_T", f"{COMMON}_name_T",
      "FIXED_scheduler_DDIM_steps_70_w_8.0_seed_6_name_T"], ["FIXED steps=50", "DATE_CLIP steps=50", "FIXED steps=70"]),
    ([f"{COMMON}_model_xl_name_A", f"{COMMON}_name_A"], ["DATE_CLIP model=xl", "DATE_CLIP"]),
    (["sweep_rho_0.25_long_tail", "sweep_rho_0.5_long_tail"], ["…0.25_long_tail", "…0.5_long_tail"]),
    ([f"{COMMON}_name_A"], ["DATE_CLIP"]),
])
def test_labels_name_what_differs(names, expected):
    assert folder_labels([f"runs/{name}" for name in names]) == expected


def test_labels_are_always_distinct():
    assert folder_labels(["a/run", "b/run/", "b/run"]) == ["a/run", "b/run #2", "b/run #3"]
    assert folder_labels([f"a/{COMMON}", f"b/{COMMON}"]) == ["a/DATE_CLIP", "b/DATE_CLIP"]


def _two_folders(tmp_path):
    names = [f"{COMMON}_name_A", f"{COMMON}_x0_taesd_name_A"]
    for seed, name in enumerate(names):
        make_folder(str(tmp_path / name), 3, seed=seed)
    return [str(tmp_path / name) for name in names]


def _argv(tmp_path, folders, *extra):
    return [*folders, "--metrics", "clip", "--num_eval", "3", "--clip_model", TINY_CLIP, "--clip_pretrained",
            tiny_clip_checkpoint(), "--num_workers", "0", "--resamples", "100", "--out", str(tmp_path / "t.md"), *extra]


def test_report_labels_grid_columns_and_bars(tmp_path, monkeypatch):
    """The contact sheet's columns and the plot's bars carry the labels (default or --labels); the table keeps the
    folder names."""
    seen = {}
    sheet, panels = report.contact_sheet, report.report_panels

    def contact_sheet(rows, captions, columns, **kwargs):
        seen["columns"] = list(columns)
        return sheet(rows, captions, columns, **kwargs)

    def report_panels(rows, metrics, labels):
        seen["bars"] = list(labels)
        return panels(rows, metrics, labels)

    monkeypatch.setattr(report, "contact_sheet", contact_sheet)
    monkeypatch.setattr(report, "report_panels", report_panels)
    folders = _two_folders(tmp_path)
    rows = report.main(_argv(tmp_path, folders, "--grid", "2"))
    assert seen == {"columns": ["DATE_CLIP", "DATE_CLIP x0=taesd"], "bars": ["DATE_CLIP", "DATE_CLIP x0=taesd"]}
    assert [row["method"] for row in rows] == [f"{COMMON}_name_A", f"{COMMON}_x0_taesd_name_A"]
    seen.clear()
    report.main(_argv(tmp_path, folders, "--grid", "2", "--labels", "exact, fast"))
    assert seen == {"columns": ["exact", "fast"], "bars": ["exact", "fast"]}


@pytest.mark.parametrize("labels, fragment", [("a,b,c", "--labels gives 3 names for 2 folders"),
                                              ("a", "--labels gives 1 names for 2 folders"),
                                              ("a,a", "distinct non-empty names"), ("a,", "distinct non-empty names")])
def test_report_labels_must_match_the_folders(tmp_path, capsys, labels, fragment):
    folders = _two_folders(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        report.main(_argv(tmp_path, folders, "--labels", labels))
    assert_one_line_error(capsys, exit_info, fragment)
    assert not (tmp_path / "t.md").exists()
