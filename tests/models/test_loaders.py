from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from ingest.cmapss import CmapssFormatError
from models.data import load_history_files, load_source
from models.errors import DataError, FeedbackError
from models.feedback import load_feedback

SENSORS = ("temp", "rpm")


def _write(
    tmp_path: Path, telemetry: pd.DataFrame | str, events: pd.DataFrame | str
) -> tuple[Path, Path]:
    t, e = tmp_path / "t.csv", tmp_path / "e.csv"
    for path, content in ((t, telemetry), (e, events)):
        if isinstance(content, str):
            path.write_text(content)
        else:
            content.to_csv(path, index=False)
    return t, e


TEL = pd.DataFrame({"equipment_id": ["a", "a"], "ts": [0, 1000], "temp": [1.0, 2.0]})
EV = pd.DataFrame({"equipment_id": ["a"], "ts": [1000], "kind": ["failure"]})


def test_good_files_load(tmp_path: Path) -> None:
    history = load_history_files(*_write(tmp_path, TEL, EV), SENSORS)
    assert len(history.telemetry) == 2
    assert history.events["kind"].tolist() == ["failure"]


@pytest.mark.parametrize(
    ("telemetry", "events", "message"),
    [
        ("", EV, "the telemetry file is empty"),
        (TEL.drop(columns="ts"), EV, "has no column 'ts'"),
        (
            TEL.assign(ts=[0.5, 1.5]),
            EV,
            "'ts' must hold integer epoch milliseconds, got dtype float64",
        ),
        (TEL.rename(columns={"temp": "x"}), EV, "none of the configured sensors"),
        (TEL.assign(temp=["hot", "cold"]), EV, "sensor column 'temp' must be numeric"),
        (TEL, EV.assign(kind=["explosion"]), "value 'explosion' is not valid"),
        (TEL, EV.drop(columns="kind"), "no column 'kind'"),
        (TEL, "equipment_id,ts,kind\n", "the events file has no rows"),
    ],
)
def test_malformed_history_is_refused_clearly(
    tmp_path: Path, telemetry: pd.DataFrame | str, events: pd.DataFrame | str, message: str
) -> None:
    with pytest.raises(DataError, match=message):
        load_history_files(*_write(tmp_path, telemetry, events), SENSORS)


def test_missing_file_and_bad_suffix(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such telemetry file"):
        load_history_files(tmp_path / "nope.csv", tmp_path / "e.csv", SENSORS)
    (tmp_path / "t.json").write_text("{}")
    with pytest.raises(DataError, match=r"must be a \.csv or \.parquet file"):
        load_history_files(tmp_path / "t.json", tmp_path / "e.csv", SENSORS)


def test_source_syntax_and_cmapss_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="expected cmapss:DIR or history:FILE"):
        load_source("s3://bucket", 1000, SENSORS)
    with pytest.raises(DataError, match="not a directory"):
        load_source(f"cmapss:{tmp_path / 'none'}", 1000, SENSORS)
    (tmp_path / "train_FD001.txt").write_text("1 1 0.5\n")
    with pytest.raises(CmapssFormatError, match="line 1: the line has 3 values"):
        load_source(f"cmapss:{tmp_path}", 1000, SENSORS)


def test_feedback_file_checks(tmp_path: Path) -> None:
    path = tmp_path / "fb.csv"
    path.write_text("equipment_id,ts,outcome\na,10,maybe\n")
    with pytest.raises(FeedbackError, match="value 'maybe' is not valid"):
        load_feedback(path)
    path.write_text("equipment_id,when,outcome\na,10,confirmed\n")
    with pytest.raises(FeedbackError, match="no column 'ts'"):
        load_feedback(path)
    path.write_text("")
    with pytest.raises(FeedbackError, match="empty"):
        load_feedback(path)


def _subset(directory: Path, subset: str) -> None:
    """A tiny C-MAPSS subset: two training engines, two test engines and their RUL."""
    directory.mkdir(exist_ok=True)
    line = " ".join(["{u}", "{c}", *(f"{0.001 * i:.4f}" for i in range(24))])
    train = [line.format(u=u, c=c) for u in (1, 2) for c in range(1, 4)]
    (directory / f"train_{subset}.txt").write_text("\n".join(train) + "\n")
    (directory / f"test_{subset}.txt").write_text("\n".join(train[:2] + train[3:5]) + "\n")
    (directory / f"RUL_{subset}.txt").write_text("7\n9\n")


def test_a_cmapss_source_names_its_subset_or_has_only_one(tmp_path: Path) -> None:
    from models.data import cmapss_source

    _subset(tmp_path / "one", "FD002")
    history = load_source(f"cmapss:{tmp_path / 'one'}:FD002", 1000, SENSORS)
    assert [f.name for f in history.files] == ["train_FD002.txt", "test_FD002.txt", "RUL_FD002.txt"]
    assert history.test_rul is not None
    assert history.test_rul.tolist() == [7, 9]
    assert history.events["equipment_id"].tolist() == ["engine-001", "engine-002"]
    # The directory's only subset, unnamed; and the name in any case.
    assert load_source(f"cmapss:{tmp_path / 'one'}", 1000, SENSORS).files == history.files
    assert cmapss_source(f"{tmp_path / 'one'}:fd002") == (tmp_path / "one", "FD002")
    # Several subsets: FD001 when it is there, else one must be named.
    _subset(tmp_path / "one", "FD004")
    with pytest.raises(DataError, match=r"holds the subsets FD002, FD004; name one, e\.g\. "):
        load_source(f"cmapss:{tmp_path / 'one'}", 1000, SENSORS)
    _subset(tmp_path / "one", "FD001")
    assert cmapss_source(str(tmp_path / "one")) == (tmp_path / "one", "FD001")
    with pytest.raises(DataError, match="subset 'FD005' is not one of FD001, FD002, FD003, FD004"):
        load_source(f"cmapss:{tmp_path / 'one'}:FD005", 1000, SENSORS)
    with pytest.raises(DataError, match="not a directory"):
        load_source(f"cmapss:{tmp_path / 'none'}:FD003", 1000, SENSORS)
